//! Where the kernels' parallel loops run.
//!
//! Every kernel splits its work with rayon. Called from a thread outside rayon's pool, each
//! call hands its work to the pool and blocks the caller until it is done: a sleep and a
//! wake-up per kernel, 10-20 us on a busy machine, which is more than a whole 768x768 GEMV.
//! Called from a pool thread, the same loops just push tasks that the other threads steal, and
//! the caller works too. A forward pass therefore runs inside [`in_pool`].

/// Runs `f` on a thread of rayon's global pool (directly when already on one), so that the
/// kernels it calls split their work without blocking hand-offs.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}
