//! After a first call of each shape, matmuls (GEMV and GEMM), the attention core and the ops
//! allocate nothing: a counting global allocator watches a second round of calls, on the threads
//! that run them (this test's thread and rayon's workers; the test harness's own threads may
//! allocate meanwhile, and did under load).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gguf_file::GgmlType;
use quill_kernels::{in_pool, AttnScratch, Backend, Kernels, KvSlice, MatmulScratch, Matrix};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// The size of the last counted allocation, to tell which buffer it was.
static LAST_SIZE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread runs the kernels under test (const-initialised: reading it never
    /// allocates).
    static WATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// SAFETY: defers every operation to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) && WATCHED.with(|w| w.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            LAST_SIZE.store(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's contract for GlobalAlloc::alloc is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout (alloc above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn warm_calls_do_not_allocate() {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(2).build_global();
    WATCHED.with(|w| w.set(true));
    rayon::broadcast(|_| WATCHED.with(|w| w.set(true)));
    let (rows, cols, n_tok) = (96, 768, 9);
    let types = [GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K];
    let mats: Vec<(GgmlType, Vec<u8>)> = types
        .iter()
        .map(|&ty| {
            let x: Vec<f32> = (0..rows * cols).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
            let mut w = vec![0u8; quill_quant::row_bytes(ty, cols).unwrap() * rows];
            quill_quant::quantize(ty, &x, cols, &mut w).unwrap();
            (ty, w)
        })
        .collect();
    let x: Vec<f32> = (0..n_tok * cols).map(|i| (i as f32 * 0.01).sin()).collect();
    let (n_head, hd) = (12, 64);
    let q: Vec<f32> = (0..n_tok * n_head * hd).map(|i| (i as f32 * 0.03).cos()).collect();
    let kv: Vec<half::f16> = (0..n_tok * n_head * hd).map(|i| half::f16::from_f32((i as f32 * 0.07).sin())).collect();
    for backend in Backend::supported() {
        let k = Kernels::get(backend).unwrap();
        let mut scratch = MatmulScratch::with_capacity(n_tok, cols);
        let mut attn = AttnScratch::new(n_head, n_tok);
        let mut out = vec![0f32; n_tok * rows];
        let mut att = vec![0f32; n_tok * n_head * hd];
        let mut h = vec![0f32; cols];
        let ln = vec![1f32; cols];
        let mut round = || {
            in_pool(|| {
                for (ty, w) in &mats {
                    let m = Matrix::new(*ty, rows, cols, w).unwrap();
                    k.matmul(&m, &x[..cols], 1, &mut out[..rows], &mut scratch);
                    k.matmul(&m, &x, n_tok, &mut out, &mut scratch);
                }
                k.attention(&q, KvSlice::F16(&kv), KvSlice::F16(&kv), 0, n_tok, n_head, hd, &mut att, &mut attn);
                let last = (n_tok - 1) * n_head * hd;
                k.attention(
                    &q[last..],
                    KvSlice::F16(&kv),
                    KvSlice::F16(&kv),
                    n_tok - 1,
                    1,
                    n_head,
                    hd,
                    &mut att[last..],
                    &mut attn,
                );
                k.layer_norm(&x[..cols], &ln, &ln, 1e-5, &mut h);
                k.gelu(&mut h);
                k.softmax(&mut h);
                k.add_bias(&mut out, &h[..rows]);
            })
        };
        round();
        ALLOCS.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        round();
        round();
        COUNTING.store(false, Ordering::Relaxed);
        assert_eq!(
            ALLOCS.load(Ordering::Relaxed),
            0,
            "{backend}: warm calls allocated (the last: {} bytes)",
            LAST_SIZE.load(Ordering::Relaxed)
        );
    }
}
