//! A sequence's text, as its events come: the one place where a sampled token becomes text
//! (whole UTF-8 characters only; a possible stop string held back until it can no longer
//! match) and where a sequence's end gets its reason. Every caller (the CLI, the Python
//! package, the server) reads its streams through it and only formats what it gives.

use std::time::Duration;

use quill_gpt2::{StopFilter, StreamDecoder, Tokenizer};

use crate::stream::{Event, Finish, SeqStream};

/// The text of one sequence so far, and why it ended.
#[derive(Default)]
pub struct SeqText {
    decoder: StreamDecoder,
    filter: StopFilter,
    piece: String,
    ids: Vec<u32>,
    finish: Option<Finish>,
}

impl SeqText {
    /// Text that ends before the first of `stop` (empty strings are ignored).
    pub fn new(stop: &[String]) -> SeqText {
        SeqText { filter: StopFilter::new(stop), ..SeqText::default() }
    }

    /// Applies one event: a generated token appends to `out` the text that is now final
    /// (often nothing while a character or a stop string is incomplete); the end appends the
    /// rest. Returns true when this event ended the sequence: `Done`, or a token that completed
    /// a stop string (the caller then drops or cancels the stream: nothing more is wanted).
    /// Events after the end are ignored; prompt tokens give no text.
    pub fn apply(&mut self, tok: &Tokenizer, ev: &Event, out: &mut String) -> bool {
        if self.finish.is_some() {
            return false;
        }
        match ev {
            Event::Prompt(_) => false,
            Event::Token(t) => {
                self.ids.push(t.id);
                self.piece.clear();
                self.decoder.push(tok.token_bytes(t.id), &mut self.piece);
                if self.filter.push(&self.piece, out) {
                    // The text ends before the stop string: what follows it is dropped.
                    self.finish = Some(Finish::Stop);
                    return true;
                }
                false
            }
            Event::Done(f) => {
                self.end(f.clone(), out);
                true
            }
        }
    }

    /// Ends the sequence now ([`Finish::Interrupted`]), appending the text held back.
    pub fn interrupt(&mut self, out: &mut String) {
        if self.finish.is_none() {
            self.end(Finish::Interrupted, out);
        }
    }

    fn end(&mut self, f: Finish, out: &mut String) {
        let rest = self.decoder.finish();
        self.filter.push(&rest, out);
        self.filter.finish(out);
        self.finish = Some(f);
    }

    /// Why it ended, once it has.
    pub fn finish(&self) -> Option<&Finish> {
        self.finish.as_ref()
    }

    /// The generated tokens received (without an end token; with those of a stop string).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The end token that ended it, if one did.
    pub fn end_token(&self) -> Option<u32> {
        match self.finish {
            Some(Finish::Eos(id)) => Some(id),
            _ => None,
        }
    }

    /// Why the engine could not run it, if it could not ([`Finish::Aborted`]).
    pub fn aborted(&self) -> Option<&str> {
        match &self.finish {
            Some(Finish::Aborted(why)) => Some(why),
            _ => None,
        }
    }
}

/// One completion as a caller of the engine reads it: its stream, through its [`SeqText`].
/// The stream is dropped (which cancels the sequence) once the text has ended.
pub struct SeqReader {
    stream: Option<SeqStream>,
    text: SeqText,
}

impl SeqReader {
    /// Reads `stream`, its text ending before the first of `stop`.
    pub fn new(stream: SeqStream, stop: &[String]) -> SeqReader {
        SeqReader { stream: Some(stream), text: SeqText::new(stop) }
    }

    /// Applies every event that has come, appending the text that became final to `out`
    /// (`events` is scratch); returns whether the sequence still runs.
    pub fn pump(&mut self, tok: &Tokenizer, events: &mut Vec<Event>, out: &mut String) -> bool {
        let Some(stream) = self.stream.as_mut() else { return false };
        events.clear();
        stream.drain_into(events);
        if events.iter().any(|ev| self.text.apply(tok, ev, out)) {
            self.stream = None;
        }
        self.stream.is_some()
    }

    /// Waits up to `timeout` for an event (returns at once once it has ended).
    pub fn wait(&self, timeout: Duration) {
        if let Some(s) = &self.stream {
            s.wait_timeout(timeout);
        }
    }

    /// Ends it now ([`Finish::Interrupted`]) and cancels the sequence, appending the text held
    /// back to `out`.
    pub fn interrupt(&mut self, out: &mut String) {
        if self.stream.take().is_some() {
            self.text.interrupt(out);
        }
    }

    /// Whether the sequence still runs.
    pub fn is_running(&self) -> bool {
        self.stream.is_some()
    }

    /// Its text state: tokens, finish.
    pub fn text(&self) -> &SeqText {
        &self.text
    }
}
