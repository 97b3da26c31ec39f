//! The memory system's read ceiling: a streaming sum over a buffer much larger than the caches,
//! which every GEMV figure (GB/s of weights) is a fraction of. Used by the benches and by
//! `cargo xtask bench`.

use rayon::prelude::*;

/// Sums 64-byte lines with 8 independent u64 accumulators per line: a loop whose speed is the
/// memory system's once it is vectorised.
#[inline(always)]
fn sum_lines(c: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let lines = c.chunks_exact(8);
    let tail = lines.remainder().iter().fold(0u64, |s, &v| s.wrapping_add(v));
    for line in lines {
        for (a, &v) in acc.iter_mut().zip(line) {
            *a = a.wrapping_add(v);
        }
    }
    acc.iter().fold(tail, |s, &v| s.wrapping_add(v))
}

/// AVX-512: four independent 64-byte accumulators. (Auto-vectorising `sum_lines` under
/// `target_feature` produced a loop 5x slower than the baseline build's: explicit loads here.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sum_avx512(words: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    let blocks = words.chunks_exact(32);
    let tail = sum_lines(blocks.remainder());
    let mut acc = [_mm512_setzero_si512(); 4];
    for b in blocks {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: `b` holds 32 u64s, so 8 of them start at `k * 8` for k < 4; the load is
            // unaligned.
            let v = unsafe { _mm512_loadu_si512(b.as_ptr().add(k * 8).cast()) };
            *a = _mm512_add_epi64(*a, v);
        }
    }
    let sum = _mm512_add_epi64(_mm512_add_epi64(acc[0], acc[1]), _mm512_add_epi64(acc[2], acc[3]));
    (_mm512_reduce_add_epi64(sum) as u64).wrapping_add(tail)
}

/// Wrapping sum of `words`, with the widest loads this CPU has.
pub fn stream_sum(words: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { sum_avx512(words) };
        }
    }
    sum_lines(words)
}

/// [`stream_sum`] split across the current rayon pool in 1 MiB chunks.
pub fn par_stream_sum(words: &[u64]) -> u64 {
    words.par_chunks(1 << 17).map(stream_sum).reduce(|| 0, u64::wrapping_add)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_every_word() {
        for n in [0, 7, 8, 10_001, 300_003] {
            let v: Vec<u64> = (0..n).collect();
            let want = v.iter().sum::<u64>();
            assert_eq!(super::stream_sum(&v), want, "{n}");
            assert_eq!(super::par_stream_sum(&v), want, "{n}");
        }
    }
}
