//! A sequence's own channel back to its client: the engine pushes tokens into a buffer
//! reserved when the sequence is admitted (so pushing allocates nothing), and wakes the
//! receiver, which waits either blocking or as a future. Dropping the receiver cancels the
//! sequence: the engine frees its slot at its next step.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Most alternatives per token that [`TokenOut::top`] holds (`logprobs` in the API).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One token, with log-probabilities under the model (log-softmax of its raw logits) when the
/// request asked for them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenOut {
    pub id: u32,
    /// Log-probability of `id` (0 when not asked for; `NaN` for a prompt's first token, which
    /// nothing predicts).
    pub logprob: f32,
    /// The likeliest tokens and their log-probabilities, likeliest first (`n_top` of them).
    pub top: [(u32, f32); MAX_TOP_LOGPROBS],
    pub n_top: u8,
}

impl TokenOut {
    pub(crate) fn new(id: u32) -> TokenOut {
        TokenOut { id, logprob: 0.0, top: [(0, 0.0); MAX_TOP_LOGPROBS], n_top: 0 }
    }

    /// The alternatives recorded.
    pub fn top(&self) -> &[(u32, f32)] {
        &self.top[..self.n_top as usize]
    }
}

/// What a sequence's channel carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A token of the prompt, scored (asked for with `prompt_logprobs`), in order, all of them
    /// before the first generated token.
    Prompt(TokenOut),
    /// A generated token.
    Token(TokenOut),
    /// The end: no event follows.
    Done(Finish),
}

/// Why a sequence ended. The engine sends `Eos`, `Length`, `Context` and `Aborted`; the
/// reader's [`crate::SeqText`] ends it at a stop string (`Stop`) or when told to (`Interrupted`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The model produced one of the request's end tokens, by default end-of-text (not sent
    /// as a token).
    Eos(u32),
    /// The text reached a stop string (cut before it).
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The sequence's context is full.
    Context,
    /// The reader ended it.
    Interrupted,
    /// The engine stopped it (shutting down) or could not run it; the message says why.
    Aborted(String),
}

impl Finish {
    /// Its name, as `quill generate --json` and the Python package report it.
    pub fn name(&self) -> &'static str {
        match self {
            Finish::Eos(_) => "eos",
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::Context => "context",
            Finish::Interrupted => "interrupted",
            Finish::Aborted(_) => "aborted",
        }
    }

    /// OpenAI's `finish_reason`: `"stop"` (an end token or a stop string) or `"length"`
    /// (`max_tokens` or a full context); `None` for an interruption or an error.
    pub fn openai(&self) -> Option<&'static str> {
        match self {
            Finish::Eos(_) | Finish::Stop => Some("stop"),
            Finish::Length | Finish::Context => Some("length"),
            Finish::Interrupted | Finish::Aborted(_) => None,
        }
    }

    /// How a sequence that has just generated its `generated`-th token, at `pos` positions
    /// of `n_ctx`, ends (if it does): `max_tokens` first, then a full context.
    pub(crate) fn after_token(generated: usize, max_tokens: usize, pos: usize, n_ctx: usize) -> Option<Finish> {
        if generated >= max_tokens {
            Some(Finish::Length)
        } else if pos >= n_ctx {
            // No position left to evaluate the token at.
            Some(Finish::Context)
        } else {
            None
        }
    }
}

#[derive(Default)]
struct State {
    events: VecDeque<Event>,
    done: bool,
    waker: Option<Waker>,
}

/// The state shared by the engine (sender) and the client (receiver).
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    cancelled: AtomicBool,
}

impl Shared {
    /// A channel with room for `cap` events without growing.
    pub(crate) fn with_capacity(cap: usize) -> Arc<Shared> {
        let s = Shared::default();
        s.lock().events.reserve(cap);
        Arc::new(s)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queue half-written: recover it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the receiver is gone (or asked to stop).
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Queues an event and wakes the receiver. Nothing is queued after `Done`.
    pub(crate) fn send(&self, ev: Event) {
        let waker = {
            let mut st = self.lock();
            if st.done {
                return;
            }
            st.done = matches!(ev, Event::Done(_));
            st.events.push_back(ev);
            st.waker.take()
        };
        self.ready.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The receiving end of a sequence's tokens. Dropping it (or [`SeqStream::cancel`]) cancels
/// the sequence.
pub struct SeqStream {
    shared: Arc<Shared>,
    ended: bool,
}

impl SeqStream {
    pub(crate) fn new(shared: Arc<Shared>) -> SeqStream {
        SeqStream { shared, ended: false }
    }

    /// The next event, waiting for it; `None` once `Done` was received.
    pub fn recv_blocking(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        let mut st = self.shared.lock();
        loop {
            if let Some(ev) = st.events.pop_front() {
                self.ended = matches!(ev, Event::Done(_));
                return Some(ev);
            }
            st = self.shared.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits up to `timeout` for an event; returns whether one is queued (or the stream has
    /// ended), so that a caller can check for interruptions between waits.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> bool {
        if self.ended {
            return true;
        }
        let st = self.shared.lock();
        if !st.events.is_empty() {
            return true;
        }
        let (st, _) = self.shared.ready.wait_timeout(st, timeout).unwrap_or_else(|e| e.into_inner());
        !st.events.is_empty()
    }

    /// Moves every queued event into `out` and returns how many; 0 means none yet.
    pub fn drain_into(&mut self, out: &mut Vec<Event>) -> usize {
        let mut st = self.shared.lock();
        let n = st.events.len();
        for ev in st.events.drain(..) {
            self.ended |= matches!(ev, Event::Done(_));
            out.push(ev);
        }
        n
    }

    /// Waits until events are queued, then moves them all into `out` (`0` once the stream has
    /// ended).
    pub fn recv_many<'s>(&'s mut self, out: &'s mut Vec<Event>) -> RecvMany<'s> {
        RecvMany { stream: self, out }
    }

    /// Polls for events: moves every queued event into `out` and returns `Ready(n)`, or
    /// registers `cx`'s waker and returns `Pending` (`Ready(0)` once the stream has ended).
    pub fn poll_recv_many(&mut self, cx: &mut Context<'_>, out: &mut Vec<Event>) -> Poll<usize> {
        if self.ended {
            return Poll::Ready(0);
        }
        let mut st = self.shared.lock();
        if st.events.is_empty() {
            match &st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => st.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let n = st.events.len();
        for ev in st.events.drain(..) {
            self.ended |= matches!(ev, Event::Done(_));
            out.push(ev);
        }
        Poll::Ready(n)
    }

    /// Whether `Done` has been received.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Cancels the sequence now (the engine frees its slot at its next step).
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Drop for SeqStream {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Future of [`SeqStream::recv_many`].
pub struct RecvMany<'s> {
    stream: &'s mut SeqStream,
    out: &'s mut Vec<Event>,
}

impl Future for RecvMany<'_> {
    type Output = usize;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let this = self.get_mut();
        this.stream.poll_recv_many(cx, this.out)
    }
}
