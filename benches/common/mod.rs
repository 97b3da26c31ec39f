//! Shared setup of the kernel benches: a rayon pool of 2 threads (the reference machine's
//! cores), the GPT-2 124M matrix shapes, and weight matrices of any format built directly from
//! random codes with sane scales (the reference quantizers are too slow for 50257-row tables,
//! and the kernels' speed does not depend on the values).

#![allow(dead_code)]

use quill::gguf::GgmlType;
use quill::kernels::Kernels;

/// The process-wide kernels (`QUILL_KERNEL`, else the CPU's best). A bad `QUILL_KERNEL` ends
/// the bench with one line naming it and the backends this CPU has, exit 2, as `quill` does.
pub fn kernels() -> &'static Kernels {
    Kernels::init().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    })
}

/// GPT-2 124M's matrix shapes (rows x cols): attn_qkv, attn_output, ffn_up, ffn_down, output.
pub const SHAPES: [(&str, usize, usize); 5] =
    [("qkv", 2304, 768), ("attn_out", 768, 768), ("ffn_up", 3072, 768), ("ffn_down", 768, 3072), ("vocab", 50257, 768)];

/// The weight formats the benches cover.
pub const TYPES: [GgmlType; 5] = [GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K];

/// Threads of the benches' rayon pool (`QUILL_BENCH_THREADS`, default 2).
pub fn init_threads() -> usize {
    let n = std::env::var("QUILL_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    // A second bench in the same process finds the pool already built: keep it.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    rayon::current_num_threads()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `rows x cols` weights of `ty`: random bytes, with every scale field set to a small normal
/// f16 (and F16 / F32 elements drawn in [-1, 1)), so that no NaN or subnormal slows a path.
pub fn matrix_bytes(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    if ty == GgmlType::Q4_0_8_8 {
        // Q4_0 interleaved by 8 rows: the same codes as the Q4_0 matrix of this seed.
        let q4 = matrix_bytes(GgmlType::Q4_0, rows, cols, seed);
        let mut w = vec![0u8; q4.len()];
        quill::quant::interleave::interleave_q4_0x8(&q4, cols, &mut w).expect("whole groups of 8 rows");
        return w;
    }
    let mut rng = Rng(seed | 1);
    let n = ty.row_bytes(cols as u64).unwrap() as usize * rows;
    let mut w: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
    let small = half::f16::from_f32(0.01).to_le_bytes();
    let unit = |rng: &mut Rng| (rng.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
    match ty {
        GgmlType::F16 => {
            for c in w.chunks_exact_mut(2) {
                c.copy_from_slice(&half::f16::from_f32(unit(&mut rng)).to_le_bytes());
            }
        }
        GgmlType::F32 => {
            for c in w.chunks_exact_mut(4) {
                c.copy_from_slice(&unit(&mut rng).to_le_bytes());
            }
        }
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => {
            for b in w.chunks_exact_mut(ty.block_bytes() as usize) {
                b[..2].copy_from_slice(&small);
            }
        }
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => {
            for b in w.chunks_exact_mut(ty.block_bytes() as usize) {
                b[..2].copy_from_slice(&small);
                b[2..4].copy_from_slice(&small);
            }
        }
        GgmlType::Q6_K => {
            for b in w.chunks_exact_mut(210) {
                b[208..210].copy_from_slice(&small);
            }
        }
        other => panic!("no bench weights for {other}"),
    }
    w
}

/// Activations like GPT-2's layer-norm outputs.
pub fn activations(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed | 1);
    (0..n).map(|_| ((rng.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0) * 2.0).collect()
}
