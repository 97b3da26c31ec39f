//! A model file truncated or overwritten in place while it is mapped makes the next read of a
//! vanished page raise SIGBUS, which by default kills the process without a word (exit 135).
//! This handler names the file instead: for a fault inside a watched mapping it writes a
//! message prepared in advance and exits with status 1, using only `write(2)` and `_exit(2)`
//! (both async-signal-safe). A SIGBUS anywhere else gets the default action.

use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Mappings watched at once (the model, a `--kl-base` model, ...).
const SLOTS: usize = 4;

/// One watched mapping. `start` is written last and cleared first, so a handler that sees it
/// non-zero sees the rest complete.
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    msg: AtomicPtr<u8>,
    msg_len: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)] // used only to initialise the array below
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    msg: AtomicPtr::new(std::ptr::null_mut()),
    msg_len: AtomicUsize::new(0),
};
static WATCHED: [Slot; SLOTS] = [EMPTY; SLOTS];

/// Installs the handler (once, at start-up).
pub fn install() {
    #[cfg(target_os = "linux")]
    // SAFETY: FFI. `sa` is zero-initialised (a valid `sigaction`: empty mask, no flags) before
    // the handler and flags are set; `on_sigbus` has the three-argument signature SA_SIGINFO
    // calls for and only performs async-signal-safe operations (atomic loads, write, _exit,
    // signal).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigbus as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

/// Watches `data` (a mapping of the file at `path`) until the guard is dropped.
pub fn watch(data: &[u8], path: &Path) -> Watch {
    let msg = format!(
        "quill: error: {}: the model file was truncated or overwritten while in use; replace a model by \
         renaming a new file over it (as quill quantize does), never by writing into it\n",
        path.display()
    );
    let msg: &'static mut [u8] = Box::leak(msg.into_bytes().into_boxed_slice());
    for (i, slot) in WATCHED.iter().enumerate() {
        if slot.start.load(Ordering::Acquire) == 0 && !data.is_empty() {
            slot.msg.store(msg.as_mut_ptr(), Ordering::Relaxed);
            slot.msg_len.store(msg.len(), Ordering::Relaxed);
            slot.len.store(data.len(), Ordering::Relaxed);
            slot.start.store(data.as_ptr() as usize, Ordering::Release);
            return Watch(Some(i));
        }
    }
    Watch(None) // every slot taken: this mapping gets the default SIGBUS
}

/// Stops watching a mapping when dropped (before the mapping goes away).
pub struct Watch(Option<usize>);

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            // The message stays leaked: a handler running now may still be reading it.
            WATCHED[i].start.store(0, Ordering::Release);
        }
    }
}

#[cfg(target_os = "linux")]
extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for a handler installed with SA_SIGINFO, and
    // si_addr is set for SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    for slot in &WATCHED {
        let start = slot.start.load(Ordering::Acquire);
        if start != 0 && addr >= start && addr - start < slot.len.load(Ordering::Relaxed) {
            let (msg, len) = (slot.msg.load(Ordering::Relaxed), slot.msg_len.load(Ordering::Relaxed));
            // SAFETY: FFI, async-signal-safe calls only. `msg` points to `len` bytes leaked in
            // `watch` (never freed), published before `start`.
            unsafe {
                libc::write(libc::STDERR_FILENO, msg as *const libc::c_void, len);
                libc::_exit(1);
            }
        }
    }
    // Not a watched mapping: back to the default action, which the faulting instruction meets
    // again when this handler returns.
    // SAFETY: FFI; signal(2) is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}
