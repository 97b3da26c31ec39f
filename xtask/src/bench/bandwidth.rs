//! This machine's memory read bandwidth: the rate at which `threads` threads can stream 1 GiB
//! (far larger than any cache), the ceiling for generation, which reads every weight once per
//! token.

use std::time::Instant;

use rayon::prelude::*;

/// Best of `reps` passes, in GB/s (1e9 bytes per second).
pub fn read_gbps(threads: usize, reps: usize) -> anyhow::Result<f64> {
    const BYTES: usize = 1 << 30;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let mut buf = vec![0u64; BYTES / 8];
    pool.install(|| buf.par_iter_mut().enumerate().for_each(|(i, w)| *w = i as u64));
    let mut best = 0.0f64;
    let mut check = 0u64;
    for _ in 0..reps {
        let t = Instant::now();
        let s = pool.install(|| quill_kernels::bandwidth::par_stream_sum(&buf));
        let secs = t.elapsed().as_secs_f64();
        check = check.wrapping_add(s);
        best = best.max(BYTES as f64 / secs / 1e9);
    }
    // Keep the sums observable so the loads are not optimised away.
    std::hint::black_box(check);
    Ok(best)
}
