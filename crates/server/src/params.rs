//! `/v1/completions` request bodies, read field by field so that every error names its field.
//! Defaults are OpenAI's (temperature 1, top_p 1, no top-k, no min-p, 16 tokens), not
//! `quill generate`'s (llama.cpp's).

use quill_gpt2::Tokenizer;
use quill_sampler::SamplerConfig;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Most stop strings per request.
pub const MAX_STOPS: usize = 16;
/// Most prompts per request.
pub const MAX_PROMPTS: usize = 64;

/// A prompt, as token ids.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// The prompt as text (for `echo`).
    pub text: String,
}

/// A validated completion request.
#[derive(Clone, Debug)]
pub struct CompletionParams {
    pub prompts: Vec<Prompt>,
    pub max_tokens: usize,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    pub echo: bool,
    pub logprobs: Option<usize>,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// The sampler of completion 0; completion `i` uses seed `seed + i`.
    pub sampler: SamplerConfig,
}

fn number(obj: &Map<String, Value>, key: &'static str) -> Result<Option<f64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(v) => Err(ApiError::field(key, format!("{key} must be a number, got {}", type_name(v)))),
    }
}

fn integer(obj: &Map<String, Value>, key: &'static str) -> Result<Option<i64>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            // Large positive integers (seeds) fit u64; anything else is out of range.
            None => match n.as_u64() {
                Some(u) => Ok(Some(u as i64)),
                None => Err(ApiError::field(key, format!("{key} must be an integer, got {n}"))),
            },
        },
        Some(v) => Err(ApiError::field(key, format!("{key} must be an integer, got {}", type_name(v)))),
    }
}

fn boolean(obj: &Map<String, Value>, key: &'static str) -> Result<Option<bool>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::field(key, format!("{key} must be a boolean, got {}", type_name(v)))),
    }
}

/// The JSON type of `v`, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A number field within `[lo, hi]`.
fn ranged(obj: &Map<String, Value>, key: &'static str, lo: f64, hi: f64, what: &str) -> Result<Option<f32>, ApiError> {
    match number(obj, key)? {
        None => Ok(None),
        Some(x) if x >= lo && x <= hi => Ok(Some(x as f32)),
        Some(x) => Err(ApiError::field(key, format!("{key} must be {what}, got {x}"))),
    }
}

/// Parses the prompt field: a string, a list of strings, a list of token ids or a list of
/// lists of token ids. An absent prompt is `<|endoftext|>`, as OpenAI's default; an empty
/// string becomes that token too (generation needs a token to start from).
pub fn prompts(v: Option<&Value>, tok: &Tokenizer, n_vocab: usize) -> Result<Vec<Prompt>, ApiError> {
    let eos = tok.eos().unwrap_or(0);
    let from_text = |s: &str| -> Result<Prompt, ApiError> {
        let mut ids = tok.encode(s).map_err(|e| ApiError::field("prompt", format!("prompt: {e}")))?;
        if ids.is_empty() {
            ids.push(eos);
        }
        Ok(Prompt { ids, text: s.to_owned() })
    };
    let from_ids = |a: &[Value]| -> Result<Prompt, ApiError> {
        let mut ids = Vec::with_capacity(a.len());
        for x in a {
            match x.as_u64() {
                Some(id) if (id as usize) < n_vocab => ids.push(id as u32),
                Some(id) => {
                    return Err(ApiError::field(
                        "prompt",
                        format!("prompt: token id {id} is outside the vocabulary (0..{n_vocab})"),
                    ))
                }
                None => {
                    return Err(ApiError::field("prompt", format!("prompt: token ids must be integers >= 0, got {x}")))
                }
            }
        }
        if ids.is_empty() {
            return Err(ApiError::field("prompt", "prompt: an empty list of token ids"));
        }
        Ok(Prompt { text: tok.decode(&ids), ids })
    };
    let out = match v {
        None | Some(Value::Null) => vec![from_text("<|endoftext|>")?],
        Some(Value::String(s)) => vec![from_text(s)?],
        Some(Value::Array(a)) if a.is_empty() => return Err(ApiError::field("prompt", "prompt is an empty list")),
        Some(Value::Array(a)) => match &a[0] {
            Value::String(_) => a
                .iter()
                .map(|x| match x {
                    Value::String(s) => from_text(s),
                    x => Err(ApiError::field("prompt", format!("prompt: a list of strings holds {}", type_name(x)))),
                })
                .collect::<Result<_, _>>()?,
            Value::Number(_) => vec![from_ids(a)?],
            Value::Array(_) => a
                .iter()
                .map(|x| match x {
                    Value::Array(ids) => from_ids(ids),
                    x => Err(ApiError::field(
                        "prompt",
                        format!("prompt: a list of token-id lists holds {}", type_name(x)),
                    )),
                })
                .collect::<Result<_, _>>()?,
            x => {
                return Err(ApiError::field(
                    "prompt",
                    format!("prompt must be a string, a list of strings or token ids; the list holds {}", type_name(x)),
                ))
            }
        },
        Some(x) => {
            return Err(ApiError::field(
                "prompt",
                format!("prompt must be a string, a list of strings or token ids, got {}", type_name(x)),
            ))
        }
    };
    if out.len() > MAX_PROMPTS {
        return Err(ApiError::field("prompt", format!("at most {MAX_PROMPTS} prompts per request, got {}", out.len())));
    }
    Ok(out)
}

/// What a request gets for a field it does not give: OpenAI's defaults for the server,
/// `quill generate`'s flags for `quill generate --batch`.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub sampler: SamplerConfig,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
}

impl Defaults {
    /// OpenAI's: temperature 1, top-p 1, no top-k, no min-p, 16 tokens.
    pub fn openai() -> Defaults {
        let sampler = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            typical_p: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            logit_bias: Vec::new(),
            min_keep: 0,
            seed: None,
        };
        Defaults { sampler, max_tokens: 16, stop: Vec::new(), ignore_eos: false }
    }
}

/// Reads and checks every field of a completion request (OpenAI's defaults).
pub fn completion(body: &Value, tok: &Tokenizer, n_vocab: usize) -> Result<CompletionParams, ApiError> {
    completion_with(body, tok, n_vocab, &Defaults::openai())
}

/// Reads and checks every field of a completion request; a field not given takes `d`'s value.
pub fn completion_with(
    body: &Value,
    tok: &Tokenizer,
    n_vocab: usize,
    d: &Defaults,
) -> Result<CompletionParams, ApiError> {
    let Value::Object(o) = body else {
        return Err(ApiError::bad_request(format!("the request body must be a JSON object, got {}", type_name(body))));
    };
    if let Some(m) = o.get("model") {
        if !m.is_string() && !m.is_null() {
            return Err(ApiError::field("model", format!("model must be a string, got {}", type_name(m))));
        }
    }
    if o.get("suffix").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::field("suffix", "suffix is not supported: GPT-2 only continues text"));
    }
    let prompts = prompts(o.get("prompt"), tok, n_vocab)?;
    let max_tokens = match integer(o, "max_tokens")? {
        None => d.max_tokens,
        Some(m) if m >= 0 => m as usize,
        Some(m) => return Err(ApiError::field("max_tokens", format!("max_tokens must be an integer >= 0, got {m}"))),
    };
    let n = match integer(o, "n")? {
        None => 1,
        Some(n) if (1..=128).contains(&n) => n as usize,
        Some(n) => return Err(ApiError::field("n", format!("n must be an integer in 1..=128, got {n}"))),
    };
    if let Some(b) = integer(o, "best_of")? {
        if b != n as i64 {
            return Err(ApiError::field("best_of", "best_of is not supported (unless equal to n)"));
        }
    }
    let logprobs = match integer(o, "logprobs")? {
        None => None,
        Some(k) if (0..=quill_engine::MAX_TOP_LOGPROBS as i64).contains(&k) => Some(k as usize),
        Some(k) => {
            return Err(ApiError::field(
                "logprobs",
                format!("logprobs must be an integer in 0..={}, got {k}", quill_engine::MAX_TOP_LOGPROBS),
            ))
        }
    };
    let stop = match o.get("stop") {
        None | Some(Value::Null) => d.stop.clone(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                x => Err(ApiError::field("stop", format!("stop: a list of strings holds {}", type_name(x)))),
            })
            .collect::<Result<_, _>>()?,
        Some(x) => {
            return Err(ApiError::field(
                "stop",
                format!("stop must be a string or a list of strings, got {}", type_name(x)),
            ))
        }
    };
    if stop.len() > MAX_STOPS {
        return Err(ApiError::field("stop", format!("at most {MAX_STOPS} stop strings, got {}", stop.len())));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::field("stop", "stop strings must not be empty"));
    }
    let include_usage = match o.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(so)) => boolean(so, "include_usage")?.unwrap_or(false),
        Some(x) => {
            return Err(ApiError::field(
                "stream_options",
                format!("stream_options must be an object, got {}", type_name(x)),
            ))
        }
    };
    let top_k = match integer(o, "top_k")? {
        None => d.sampler.top_k,
        Some(-1) => 0, // vLLM's "off"
        Some(k) if (0..=i32::MAX as i64).contains(&k) => k as i32,
        Some(k) => {
            return Err(ApiError::field("top_k", format!("top_k must be an integer >= 0 (0 or -1: off), got {k}")))
        }
    };
    let mut logit_bias = d.sampler.logit_bias.clone();
    match o.get("logit_bias") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let id: u32 = k.parse().ok().filter(|&id: &u32| (id as usize) < n_vocab).ok_or_else(|| {
                    ApiError::field("logit_bias", format!("logit_bias: '{k}' is not a token id in 0..{n_vocab}"))
                })?;
                let b = v.as_f64().filter(|b| (-100.0..=100.0).contains(b)).ok_or_else(|| {
                    ApiError::field(
                        "logit_bias",
                        format!("logit_bias: the bias of token {k} must be a number in [-100, 100], got {v}"),
                    )
                })?;
                logit_bias.push((id, b as f32));
            }
        }
        Some(x) => {
            return Err(ApiError::field("logit_bias", format!("logit_bias must be an object, got {}", type_name(x))))
        }
    }
    let sampler = SamplerConfig {
        temperature: ranged(o, "temperature", 0.0, 100.0, "a number in [0, 100]")?.unwrap_or(d.sampler.temperature),
        top_k,
        top_p: match number(o, "top_p")? {
            None => d.sampler.top_p,
            Some(p) if p > 0.0 && p <= 1.0 => p as f32,
            Some(p) => return Err(ApiError::field("top_p", format!("top_p must be in (0, 1], got {p}"))),
        },
        min_p: ranged(o, "min_p", 0.0, 1.0, "in [0, 1]")?.unwrap_or(d.sampler.min_p),
        typical_p: match number(o, "typical_p")? {
            None => d.sampler.typical_p,
            Some(p) if p > 0.0 && p <= 1.0 => p as f32,
            Some(p) => return Err(ApiError::field("typical_p", format!("typical_p must be in (0, 1], got {p}"))),
        },
        presence_penalty: ranged(o, "presence_penalty", -2.0, 2.0, "in [-2, 2]")?.unwrap_or(d.sampler.presence_penalty),
        frequency_penalty: ranged(o, "frequency_penalty", -2.0, 2.0, "in [-2, 2]")?
            .unwrap_or(d.sampler.frequency_penalty),
        repeat_penalty: match number(o, "repeat_penalty")? {
            None => d.sampler.repeat_penalty,
            Some(r) if r > 0.0 && r <= 100.0 => r as f32,
            Some(r) => {
                return Err(ApiError::field("repeat_penalty", format!("repeat_penalty must be in (0, 100], got {r}")))
            }
        },
        repeat_last_n: match integer(o, "repeat_last_n")? {
            None => d.sampler.repeat_last_n,
            Some(r) if (0..=1 << 20).contains(&r) => r as usize,
            Some(r) => {
                return Err(ApiError::field("repeat_last_n", format!("repeat_last_n must be in 0..=1048576, got {r}")))
            }
        },
        logit_bias,
        min_keep: d.sampler.min_keep,
        seed: integer(o, "seed")?.map(|s| s as u64).or(d.sampler.seed),
    };
    Ok(CompletionParams {
        prompts,
        max_tokens,
        n,
        stream: boolean(o, "stream")?.unwrap_or(false),
        include_usage,
        echo: boolean(o, "echo")?.unwrap_or(false),
        logprobs,
        stop,
        ignore_eos: boolean(o, "ignore_eos")?.unwrap_or(d.ignore_eos),
        sampler,
    })
}
