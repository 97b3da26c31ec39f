//! The machine's compute ceilings, measured by small loops of independent multiply-adds with
//! every thread busy: the figures the kernels' rates are reported against (`cargo xtask bench`),
//! beside the memory read bandwidth of [`crate::bandwidth`].
//!
//! * int8: the exact byte dot product the backend's integer kernels are built on, with its
//!   widening to i32 counted in: AVX2 `vpmaddubsw` + `vpmaddwd` per 32 products (ggml's and
//!   the definition; Quill's GEMM widens once per up to 8 `vpmaddubsw`, so it can pass
//!   this figure), AVX-512 VNNI `vpdpbusd` (64), AVX-VNNI `vpdpbusd` (32), NEON `sdot` (16).
//! * f32: fused multiply-adds of the backend's vector width.
//!
//! Each figure is multiply-adds per second (a multiply-add is 2 flops).

use std::time::Instant;

use rayon::prelude::*;

use crate::Backend;

/// The rayon pool of the measuring threads could not be built.
pub type PoolError = rayon::ThreadPoolBuildError;

/// Multiply-adds per second of one kind of loop, with `threads` threads, best of `reps` runs of
/// about `millis` each.
fn measure(threads: usize, reps: usize, millis: u64, one: fn(u64) -> (u64, u64)) -> Result<f64, PoolError> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    // Calibrate the iteration count on one thread.
    let mut iters = 1u64 << 16;
    loop {
        let t = Instant::now();
        std::hint::black_box(one(iters));
        if t.elapsed().as_millis() as u64 >= millis / 4 || iters >= 1 << 40 {
            let per_ms = iters as f64 / t.elapsed().as_secs_f64().max(1e-9) / 1000.0;
            iters = ((per_ms * millis as f64) as u64).max(1 << 16);
            break;
        }
        iters *= 4;
    }
    let mut best = 0.0f64;
    for _ in 0..reps {
        let t = Instant::now();
        let macs: u64 = pool.install(|| (0..threads).into_par_iter().map(|_| one(iters).0).sum());
        best = best.max(macs as f64 / t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// A loop of one kind for one backend: `(int8, f32)`, each `None` where the backend has no
/// SIMD kernels of that kind on this CPU.
type Loops = (Option<fn(u64) -> (u64, u64)>, Option<fn(u64) -> (u64, u64)>);

fn loops(backend: Backend) -> Loops {
    if !backend.is_supported() {
        return (None, None);
    }
    // SAFETY (of every call below): is_supported just checked that the CPU has the backend's
    // features, which each loop's #[target_feature] asks for.
    match backend {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => (Some(|n| unsafe { x86::int8_avx2(n) }), Some(|n| unsafe { x86::f32_avx2(n) })),
        #[cfg(target_arch = "x86_64")]
        Backend::AvxVnni => (Some(|n| unsafe { x86::int8_avxvnni(n) }), Some(|n| unsafe { x86::f32_avx2(n) })),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => (Some(|n| unsafe { x86::int8_avx512(n) }), Some(|n| unsafe { x86::f32_avx512(n) })),
        #[cfg(target_arch = "aarch64")]
        Backend::Neon => (Some(|n| unsafe { arm::int8_neon(n) }), Some(|n| unsafe { arm::f32_neon(n) })),
        _ => (None, None),
    }
}

/// The int8 dot-product ceiling of `backend` (multiply-adds per second, best of 3 runs of about
/// `millis` each), if it has integer SIMD kernels on this CPU.
pub fn int8_macs(backend: Backend, threads: usize, millis: u64) -> Result<Option<f64>, PoolError> {
    loops(backend).0.map(|f| measure(threads, 3, millis, f)).transpose()
}

/// The f32 FMA ceiling of `backend` (multiply-adds per second, as [`int8_macs`]), if it is a
/// SIMD backend on this CPU.
pub fn f32_macs(backend: Backend, threads: usize, millis: u64) -> Result<Option<f64>, PoolError> {
    loops(backend).1.map(|f| measure(threads, 3, millis, f)).transpose()
}

/// Twelve independent accumulators per loop, each fed by a register the optimiser cannot see
/// through (`black_box` once per iteration, of constants: an operand carried from one
/// iteration's `black_box` to the next would chain the iterations through a store and a load,
/// which halved the f32 figure here): the loop's speed is the instructions' throughput.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::hint::black_box;

    /// Returns (multiply-adds done, a checksum).
    ///
    /// Unlike `vpdpbusd`, `vpmaddubsw` does not read its accumulator: products of the same two
    /// registers would be computed once per iteration, not twelve times. So each product takes
    /// its own activation register, loaded from a small buffer of varied bytes (loads are not
    /// the limit: three per cycle against one or two multiplies).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn int8_avx2(n: u64) -> (u64, u64) {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_si256(); 12];
        let buf: Vec<u8> = (0..16 * 12 * 32).map(|i| (i * 37 % 251) as u8).collect();
        let w = black_box(_mm256_set1_epi8(3));
        for it in 0..n {
            let row = black_box(&buf[(it as usize % 16) * 12 * 32..][..12 * 32]);
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: 32 bytes at 32 * i lie inside the 384-byte `row`.
                let x = unsafe { _mm256_loadu_si256(row.as_ptr().add(32 * i).cast()) };
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones));
            }
        }
        let s = acc.iter().fold(_mm256_setzero_si256(), |s, &a| _mm256_add_epi32(s, a));
        (n * 12 * 32, _mm256_extract_epi32::<0>(s) as u64)
    }

    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub(super) unsafe fn int8_avxvnni(n: u64) -> (u64, u64) {
        let mut acc = [_mm256_setzero_si256(); 12];
        let (w_0, x_0) = (_mm256_set1_epi8(3), _mm256_set1_epi8(-5));
        for _ in 0..n {
            let (w, x) = black_box((w_0, x_0));
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm256_dpbusd_avx_epi32(*a, w, if i % 2 == 0 { x } else { w });
            }
        }
        let s = acc.iter().fold(_mm256_setzero_si256(), |s, &a| _mm256_add_epi32(s, a));
        (n * 12 * 32, _mm256_extract_epi32::<0>(s) as u64)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn f32_avx2(n: u64) -> (u64, u64) {
        let mut acc = [_mm256_setzero_ps(); 12];
        let (a_0, b_0) = (_mm256_set1_ps(1.000_001), _mm256_set1_ps(0.999_999));
        for _ in 0..n {
            let (a, b) = black_box((a_0, b_0));
            for (i, c) in acc.iter_mut().enumerate() {
                *c = _mm256_fmadd_ps(a, if i % 2 == 0 { b } else { a }, *c);
            }
        }
        let s = acc.iter().fold(_mm256_setzero_ps(), |s, &c| _mm256_add_ps(s, c));
        (n * 12 * 8, _mm256_cvtss_f32(s).to_bits() as u64)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn int8_avx512(n: u64) -> (u64, u64) {
        let mut acc = [_mm512_setzero_si512(); 12];
        let (w_0, x_0) = (_mm512_set1_epi8(3), _mm512_set1_epi8(-5));
        for _ in 0..n {
            let (w, x) = black_box((w_0, x_0));
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm512_dpbusd_epi32(*a, w, if i % 2 == 0 { x } else { w });
            }
        }
        let s = acc.iter().fold(_mm512_setzero_si512(), |s, &a| _mm512_add_epi32(s, a));
        (n * 12 * 64, _mm512_reduce_add_epi32(s) as u64)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn f32_avx512(n: u64) -> (u64, u64) {
        let mut acc = [_mm512_setzero_ps(); 12];
        let (a_0, b_0) = (_mm512_set1_ps(1.000_001), _mm512_set1_ps(0.999_999));
        for _ in 0..n {
            let (a, b) = black_box((a_0, b_0));
            for (i, c) in acc.iter_mut().enumerate() {
                *c = _mm512_fmadd_ps(a, if i % 2 == 0 { b } else { a }, *c);
            }
        }
        let s = acc.iter().fold(_mm512_setzero_ps(), |s, &c| _mm512_add_ps(s, c));
        (n * 12 * 16, _mm512_reduce_add_ps(s).to_bits() as u64)
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::*;
    use std::hint::black_box;

    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn int8_neon(n: u64) -> (u64, u64) {
        let mut acc = [vdupq_n_s32(0); 12];
        let (w_0, x_0) = (vdupq_n_s8(3), vdupq_n_s8(-5));
        for _ in 0..n {
            let (w, x) = black_box((w_0, x_0));
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: this function has the dotprod feature `sdot` needs.
                *a = unsafe { crate::arch::aarch64_neon::sdot(*a, w, if i % 2 == 0 { x } else { w }) };
            }
        }
        let s = acc.iter().fold(vdupq_n_s32(0), |s, &a| vaddq_s32(s, a));
        (n * 12 * 16, vaddvq_s32(s) as u64)
    }

    #[target_feature(enable = "neon")]
    pub(super) unsafe fn f32_neon(n: u64) -> (u64, u64) {
        let mut acc = [vdupq_n_f32(0.0); 12];
        let (a_0, b_0) = (vdupq_n_f32(1.000_001), vdupq_n_f32(0.999_999));
        for _ in 0..n {
            let (a, b) = black_box((a_0, b_0));
            for (i, c) in acc.iter_mut().enumerate() {
                *c = vfmaq_f32(*c, a, if i % 2 == 0 { b } else { a });
            }
        }
        let s = acc.iter().fold(vdupq_n_f32(0.0), |s, &c| vaddq_f32(s, c));
        (n * 12 * 4, vaddvq_f32(s).to_bits() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loops run and report a plausible rate on every backend this CPU has.
    #[test]
    fn ceilings_are_measured_for_supported_backends() {
        for b in Backend::supported() {
            for (kind, r) in [("int8", int8_macs(b, 1, 20).unwrap()), ("f32", f32_macs(b, 1, 20).unwrap())] {
                match (b, r) {
                    (Backend::Scalar, r) => assert!(r.is_none()),
                    // Wide bounds: under an emulator (qemu for NEON) the loops run a thousand times slower.
                    (_, Some(v)) => assert!(v > 1e6 && v < 1e14, "{b} {kind}: {v}"),
                    (_, None) => panic!("{b} {kind}: not measured"),
                }
            }
        }
    }
}
