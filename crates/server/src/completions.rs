//! `POST /v1/completions`: OpenAI's legacy completions, whole or streamed as server-sent events.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::{join_all, poll_fn};
use futures_util::stream;
use quill_engine::{Event, Finish, Request, SeqStream, SeqText, SubmitError, TokenOut};
use quill_gpt2::Tokenizer;
use quill_sampler::SamplerConfig;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::params::{self, CompletionParams};
use crate::state::{unix_now, AppState, ModelInfo};

/// The text of one token as a string (invalid UTF-8 replaced), for `logprobs`.
fn token_str(tok: &Tokenizer, id: u32) -> String {
    String::from_utf8_lossy(tok.token_bytes(id)).into_owned()
}

/// OpenAI's legacy `logprobs` object, filled token by token.
#[derive(Default)]
struct Logprobs {
    tokens: Vec<Value>,
    token_logprobs: Vec<Value>,
    top_logprobs: Vec<Value>,
    text_offset: Vec<Value>,
}

impl Logprobs {
    fn push(&mut self, tok: &Tokenizer, t: &TokenOut, offset: usize, first_of_prompt: bool) {
        self.tokens.push(token_str(tok, t.id).into());
        self.text_offset.push(offset.into());
        if first_of_prompt {
            self.token_logprobs.push(Value::Null);
            self.top_logprobs.push(Value::Null);
            return;
        }
        self.token_logprobs.push(finite(t.logprob));
        let top: Map<String, Value> = t.top().iter().map(|&(id, lp)| (token_str(tok, id), finite(lp))).collect();
        self.top_logprobs.push(Value::Object(top));
    }

    fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn take(&mut self) -> Value {
        let lp = std::mem::take(self);
        json!({
            "tokens": lp.tokens,
            "token_logprobs": lp.token_logprobs,
            "top_logprobs": lp.top_logprobs,
            "text_offset": lp.text_offset,
        })
    }
}

/// A log-probability as JSON (`-inf` has no JSON number: the lowest finite one stands in).
fn finite(x: f32) -> Value {
    if x.is_finite() {
        json!(x)
    } else if x.is_nan() {
        Value::Null
    } else {
        json!(f32::MIN)
    }
}

/// One completion being received: its stream and its text (detokenizer, stop strings).
struct Choice {
    index: usize,
    seq: Option<SeqStream>,
    seq_text: SeqText,
    /// Prompt text still to send first (`echo`).
    echo: Option<String>,
    want_logprobs: bool,
    /// Characters of text so far (`text_offset`).
    offset: usize,
    /// Generated tokens received.
    tokens: usize,
    finish: Option<&'static str>,
    error: Option<String>,
    events: Vec<Event>,
    /// What is ready to send: text and logprobs.
    text: String,
    logprobs: Logprobs,
}

impl Choice {
    fn done(&self) -> bool {
        self.finish.is_some() || self.error.is_some()
    }

    /// Turns the received events into text and logprobs; returns whether a first generated
    /// token came.
    fn apply(&mut self, tok: &Tokenizer) -> bool {
        let events = std::mem::take(&mut self.events);
        let mut first = false;
        for ev in &events {
            first |= self.apply_one(ev, tok);
        }
        self.events = events;
        self.events.clear();
        first
    }

    /// One event; returns whether it is the first generated token.
    fn apply_one(&mut self, ev: &Event, tok: &Tokenizer) -> bool {
        if let Some(e) = self.echo.take() {
            self.text.push_str(&e);
        }
        if self.done() {
            return false;
        }
        match ev {
            Event::Prompt(t) => {
                if self.want_logprobs {
                    self.logprobs.push(tok, t, self.offset, t.logprob.is_nan());
                }
                self.offset += token_str(tok, t.id).chars().count();
                false
            }
            Event::Token(t) => {
                self.tokens += 1;
                if self.want_logprobs {
                    self.logprobs.push(tok, t, self.offset, false);
                }
                self.offset += token_str(tok, t.id).chars().count();
                if self.seq_text.apply(tok, ev, &mut self.text) {
                    self.finish = Some("stop");
                    // The rest is not wanted: the engine frees the slot at its next step.
                    self.seq = None;
                }
                self.tokens == 1
            }
            Event::Done(f) => {
                self.seq_text.apply(tok, ev, &mut self.text);
                match f {
                    Finish::Aborted(msg) => self.error = Some(msg.clone()),
                    f => self.finish = Some(f.openai().unwrap_or("stop")),
                }
                self.seq = None;
                false
            }
        }
    }
}

/// Identifies a response (`cmpl-...`).
fn new_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("cmpl-{:016x}{:08x}", (t as u64) ^ 0x9e37_79b9_7f4a_7c15, n)
}

pub fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::QueueFull { .. } => ApiError::unavailable(format!("{e}; try again shortly"), 1),
        SubmitError::Loading => ApiError::unavailable("Loading model", 1),
        SubmitError::Closed => ApiError::unavailable("the server is shutting down", 5),
        SubmitError::EmptyPrompt
        | SubmitError::PromptTooLong { .. }
        | SubmitError::BadToken { .. }
        | SubmitError::TooManyPrompts { .. } => ApiError::field("prompt", e.to_string()),
        SubmitError::TooManyChoices { .. } | SubmitError::NoChoices => ApiError::field("n", e.to_string()),
        SubmitError::TooManyLogprobs { .. } => ApiError::field("logprobs", e.to_string()),
        SubmitError::Sampler(s) => ApiError::bad_request(s.to_string()),
    }
}

/// The handler.
pub async fn handle(st: Arc<AppState>, body: Bytes) -> Response {
    let arrived = Instant::now();
    let res = match run(&st, body, arrived).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    st.metrics.count_status(res.status().as_u16());
    res
}

pub fn ready(st: &AppState) -> Result<&ModelInfo, ApiError> {
    match (st.info.get(), st.load_error.get()) {
        (Some(info), _) => Ok(info),
        (None, Some(e)) => {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the model failed to load: {e}")))
        }
        (None, None) => Err(ApiError::unavailable("Loading model", 1)),
    }
}

pub fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

async fn run(st: &Arc<AppState>, body: Bytes, arrived: Instant) -> Result<Response, ApiError> {
    let info = ready(st)?;
    let tok = &info.tokenizer;
    let p = params::completion(&parse_json(&body)?, tok, info.limits.n_vocab)?;
    let n_ctx = info.limits.n_ctx;
    for pr in &p.prompts {
        if pr.ids.len() > n_ctx {
            return Err(ApiError::field(
                "prompt",
                format!("the prompt has {} tokens, more than the context of {n_ctx} tokens per sequence", pr.ids.len()),
            ));
        }
    }
    let reqs: Vec<Request> = p
        .prompts
        .iter()
        .map(|pr| Request {
            prompt: pr.ids.clone(),
            max_tokens: p.max_tokens,
            samplers: (0..p.n as u64)
                .map(|c| SamplerConfig { seed: p.sampler.seed.map(|s| s.wrapping_add(c)), ..p.sampler.clone() })
                .collect(),
            logprobs: p.logprobs,
            prompt_logprobs: p.echo && p.logprobs.is_some(),
            ignore_eos: p.ignore_eos,
            end_tokens: None,
        })
        .collect();
    let streams = st.client.submit(reqs).map_err(submit_error)?;
    let prompt_tokens: usize = p.prompts.iter().map(|pr| pr.ids.len()).sum();
    st.metrics.prompt_tokens.fetch_add(prompt_tokens as u64, Ordering::Relaxed);
    let mut choices = Vec::new();
    for (i, (pr, seqs)) in p.prompts.iter().zip(streams).enumerate() {
        for (c, seq) in seqs.into_iter().enumerate() {
            choices.push(Choice {
                index: i * p.n + c,
                seq: Some(seq),
                seq_text: SeqText::new(&p.stop),
                echo: p.echo.then(|| pr.text.clone()),
                want_logprobs: p.logprobs.is_some(),
                offset: 0,
                tokens: 0,
                finish: None,
                error: None,
                events: Vec::new(),
                text: String::new(),
                logprobs: Logprobs::default(),
            });
        }
    }
    let ctx = Ctx { st: st.clone(), id: new_id(), created: unix_now(), arrived, ttft_seen: AtomicBool::new(false) };
    if p.stream {
        Ok(streamed(ctx, choices, &p, prompt_tokens))
    } else {
        whole(ctx, choices, prompt_tokens).await
    }
}

/// What a response's parts share.
struct Ctx {
    st: Arc<AppState>,
    id: String,
    created: u64,
    arrived: Instant,
    ttft_seen: AtomicBool,
}

impl Ctx {
    fn first_token(&self) {
        if !self.ttft_seen.swap(true, Ordering::Relaxed) {
            self.st.metrics.observe_ttft(self.arrived.elapsed().as_secs_f64());
        }
    }

    fn model(&self) -> &str {
        self.st.info.get().map_or("", |i| i.id.as_str())
    }

    fn tokenizer(&self) -> &Tokenizer {
        &self.st.info.get().expect("a request runs once the model is loaded").tokenizer
    }
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// Waits for every completion, then answers once.
async fn whole(ctx: Ctx, mut choices: Vec<Choice>, prompt_tokens: usize) -> Result<Response, ApiError> {
    let tok = ctx.tokenizer();
    join_all(choices.iter_mut().map(|c| {
        let ctx = &ctx;
        async move {
            while let Some(seq) = c.seq.as_mut() {
                seq.recv_many(&mut c.events).await;
                if c.apply(tok) {
                    ctx.first_token();
                }
            }
        }
    }))
    .await;
    if let Some(e) = choices.iter().find_map(|c| c.error.clone()) {
        return Err(ApiError::unavailable(e, 1));
    }
    let completion_tokens: usize = choices.iter().map(|c| c.tokens).sum();
    ctx.st.metrics.completion_tokens.fetch_add(completion_tokens as u64, Ordering::Relaxed);
    let out: Vec<Value> = choices
        .iter_mut()
        .map(|c| {
            json!({
                "text": c.text,
                "index": c.index,
                "logprobs": if c.want_logprobs { c.logprobs.take() } else { Value::Null },
                "finish_reason": c.finish,
            })
        })
        .collect();
    let body = json!({
        "id": ctx.id,
        "object": "text_completion",
        "created": ctx.created,
        "model": ctx.model(),
        "choices": out,
        "usage": usage(prompt_tokens, completion_tokens),
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// State of a streamed response.
struct Streaming {
    ctx: Ctx,
    choices: Vec<Choice>,
    prompt_tokens: usize,
    include_usage: bool,
    /// Chunks ready to send.
    out: std::collections::VecDeque<Bytes>,
    finished: bool,
}

impl Streaming {
    fn chunk(&self, c: &mut Choice) -> Bytes {
        let lp = if c.want_logprobs && !c.logprobs.is_empty() { c.logprobs.take() } else { Value::Null };
        sse(&json!({
            "id": self.ctx.id,
            "object": "text_completion",
            "created": self.ctx.created,
            "model": self.ctx.model(),
            "choices": [{
                "text": std::mem::take(&mut c.text),
                "index": c.index,
                "logprobs": lp,
                "finish_reason": c.finish,
            }],
        }))
    }

    /// Waits for events of any unfinished completion and queues their chunks.
    async fn fill(&mut self) {
        let choices = &mut self.choices;
        poll_fn(|cx| {
            let mut any = false;
            for c in choices.iter_mut() {
                if let Some(seq) = c.seq.as_mut() {
                    if let Poll::Ready(n) = seq.poll_recv_many(cx, &mut c.events) {
                        any |= n > 0 || seq.is_ended();
                    }
                }
            }
            if any {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        let tok = self.ctx.tokenizer();
        let mut choices = std::mem::take(&mut self.choices);
        for c in &mut choices {
            // One chunk per generated token, as OpenAI streams (prompt scores and echoed text
            // go with the first).
            let events = std::mem::take(&mut c.events);
            for ev in &events {
                if c.apply_one(ev, tok) {
                    self.ctx.first_token();
                }
                if let Event::Token(_) = ev {
                    self.ctx.st.metrics.completion_tokens.fetch_add(1, Ordering::Relaxed);
                }
                if matches!(ev, Event::Prompt(_)) {
                    continue;
                }
                if let Some(e) = c.error.take() {
                    let err = ApiError::unavailable(e, 1);
                    self.out.push_back(sse(&err.body()));
                    c.finish = Some("error");
                    break;
                }
                if !c.text.is_empty() || !c.logprobs.is_empty() || c.finish.is_some() {
                    let b = self.chunk(c);
                    self.out.push_back(b);
                }
                if c.done() {
                    break;
                }
            }
            c.events = events;
            c.events.clear();
        }
        self.choices = choices;
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.out.pop_front() {
                return Some(b);
            }
            if self.finished {
                return None;
            }
            if self.choices.iter().all(|c| c.seq.is_none()) {
                if self.include_usage {
                    let completion: usize = self.choices.iter().map(|c| c.tokens).sum();
                    self.out.push_back(sse(&json!({
                        "id": self.ctx.id,
                        "object": "text_completion",
                        "created": self.ctx.created,
                        "model": self.ctx.model(),
                        "choices": [],
                        "usage": usage(self.prompt_tokens, completion),
                    })));
                }
                self.out.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                self.finished = true;
                continue;
            }
            self.fill().await;
        }
    }
}

/// Streams chunks as tokens come. Dropping the body (the client went away) drops the
/// sequences' streams, which cancels them.
fn streamed(ctx: Ctx, choices: Vec<Choice>, p: &CompletionParams, prompt_tokens: usize) -> Response {
    let state = Streaming {
        ctx,
        choices,
        prompt_tokens,
        include_usage: p.include_usage,
        out: Default::default(),
        finished: false,
    };
    let body = stream::unfold(state, |mut s| async move {
        let b = s.next().await?;
        Some((Ok::<Bytes, std::convert::Infallible>(b), s))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .expect("a valid response")
}
