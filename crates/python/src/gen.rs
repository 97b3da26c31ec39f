//! `Model.generate` and `generate_ids` on the engine: one prompt or a list of them, `n`
//! completions each, run together (continuous batching) on the calling thread with the GIL
//! released for each step.

use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3::IntoPyObjectExt;
use quill_engine::{EngineConfig, GenerateError, Generation, Job, Request};
use quill_gpt2::KvType;
use quill_sampler::SamplerConfig;

use crate::errors::{sampler_message, to_py, value_error};
use crate::model::{Inner, Input};

/// Completions run at once by default (KV slots): 16 rows per weight read.
pub(crate) const DEFAULT_PARALLEL: usize = 16;

/// Sampling and stopping settings shared by `generate` and `generate_ids`.
#[derive(Clone)]
pub(crate) struct GenSettings {
    pub sampling: SamplerConfig,
    /// `None`: until an end token or a full context.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    pub end_tokens: Option<Vec<u32>>,
    pub kv_type: KvType,
    /// Completions per prompt.
    pub n: usize,
    /// Completions at once (`None`: up to [`DEFAULT_PARALLEL`]).
    pub parallel: Option<usize>,
    /// One seed per prompt (`seed=[...]`), instead of `sampling.seed` for every prompt.
    pub seeds: Option<Vec<u64>>,
}

/// `seed=`: one for every prompt, or one per prompt.
#[derive(FromPyObject)]
pub(crate) enum Seeds {
    One(u64),
    Many(Vec<u64>),
}

/// The sampler of the keyword arguments every generating method takes (`generate`,
/// `generate_ids`, `Engine.submit`), and the per-prompt seeds when a list was given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sampler(
    temperature: f32,
    top_k: i32,
    top_p: f32,
    min_p: f32,
    typical_p: f32,
    repeat_penalty: f32,
    frequency_penalty: f32,
    presence_penalty: f32,
    repeat_last_n: usize,
    seed: Option<Seeds>,
) -> (SamplerConfig, Option<Vec<u64>>) {
    let (seed, seeds) = match seed {
        None => (None, None),
        Some(Seeds::One(s)) => (Some(s), None),
        Some(Seeds::Many(v)) => (None, Some(v)),
    };
    let cfg = SamplerConfig {
        temperature,
        top_k,
        top_p,
        min_p,
        typical_p,
        repeat_penalty,
        frequency_penalty,
        presence_penalty,
        repeat_last_n,
        seed,
        ..SamplerConfig::default()
    };
    (cfg, seeds)
}

/// `stop=`: one string or several.
#[derive(FromPyObject)]
pub(crate) enum Stops {
    One(String),
    Many(Vec<String>),
}

/// `prompt=`: one prompt (a string or token ids), or a list of them.
#[derive(FromPyObject)]
pub(crate) enum Prompts {
    One(Input),
    Many(Vec<Input>),
}

/// The keyword arguments of `generate`, checked; one builder for both methods.
pub(crate) struct Args {
    pub max_tokens: Option<i64>,
    pub sampling: SamplerConfig,
    pub stop: Option<Stops>,
    pub ignore_eos: bool,
    pub kv_type: String,
    pub n: usize,
    pub parallel: Option<usize>,
    pub seeds: Option<Vec<u64>>,
}

impl Args {
    pub(crate) fn settings(self) -> PyResult<GenSettings> {
        let kv_type = kv_type(&self.kv_type)?;
        self.sampling.validate().map_err(|e| value_error(sampler_message(&e)))?;
        let max_tokens = match self.max_tokens {
            None => None,
            Some(n) if n < 0 => return Err(value_error(format!("max_tokens must be at least 0 or None, got {n}"))),
            Some(n) => Some(n as usize),
        };
        let stop = match self.stop {
            None => Vec::new(),
            Some(Stops::One(s)) => vec![s],
            Some(Stops::Many(v)) => v,
        };
        if stop.iter().any(String::is_empty) {
            return Err(value_error("stop strings must not be empty"));
        }
        if self.n == 0 {
            return Err(value_error("n must be at least 1"));
        }
        if self.parallel == Some(0) {
            return Err(value_error("parallel must be at least 1"));
        }
        Ok(GenSettings {
            sampling: self.sampling,
            max_tokens,
            stop,
            ignore_eos: self.ignore_eos,
            end_tokens: None,
            kv_type,
            n: self.n,
            parallel: self.parallel,
            seeds: self.seeds,
        })
    }
}

/// `kv_type=`.
pub(crate) fn kv_type(name: &str) -> PyResult<KvType> {
    KvType::from_name(name).ok_or_else(|| value_error(format!("kv_type must be 'f16', 'f32' or 'q8_0', got '{name}'")))
}

pub(crate) fn generate_error(e: GenerateError) -> PyErr {
    match e {
        GenerateError::Sampler(s) => value_error(sampler_message(&s)),
        e => to_py(&e),
    }
}

/// What a call generates: the prompts' ids, and whether it was one prompt.
pub(crate) struct Plan {
    pub prompts: Vec<Vec<u32>>,
    pub single: bool,
}

impl Plan {
    pub(crate) fn new(inner: &Inner, prompts: Prompts) -> PyResult<Plan> {
        let model = inner.model();
        let (inputs, single) = match prompts {
            Prompts::One(p) => (vec![p], true),
            Prompts::Many(v) => (v, false),
        };
        if !single && inputs.is_empty() {
            return Err(value_error("the list of prompts is empty"));
        }
        let mut out = Vec::with_capacity(inputs.len());
        for (i, p) in inputs.into_iter().enumerate() {
            let what = if single { "prompt".to_owned() } else { format!("prompt[{i}]") };
            let ids = p.ids(model, &what)?;
            if ids.is_empty() {
                let at = if single { String::new() } else { format!(" (prompt[{i}])") };
                return Err(value_error(format!("the prompt is empty: it has no tokens{at}")));
            }
            out.push(ids);
        }
        Ok(Plan { prompts: out, single })
    }

    /// Whether one sequence runs alone: then it runs as `quill generate` does.
    fn alone(&self, s: &GenSettings) -> bool {
        self.single && s.n == 1
    }

    /// The seed of each prompt: `seeds[i]`, else `seed` for every prompt (as the server and
    /// vLLM seed a list of prompts).
    pub(crate) fn check_seeds(&self, s: &GenSettings) -> PyResult<()> {
        match &s.seeds {
            Some(v) if v.len() != self.prompts.len() => Err(value_error(format!(
                "seed: a list of {} seeds for {} prompts (give one per prompt, or one int)",
                v.len(),
                self.prompts.len()
            ))),
            _ => Ok(()),
        }
    }

    /// The jobs: prompt `i`'s completion `c` is seeded `seed_i + c` (a fresh seed each when
    /// none is given).
    pub(crate) fn jobs(&self, s: &GenSettings) -> Vec<Job> {
        self.prompts
            .iter()
            .enumerate()
            .map(|(i, ids)| {
                let seed = s.seeds.as_ref().map(|v| v[i]).or(s.sampling.seed);
                let samplers = (0..s.n as u64)
                    .map(|c| SamplerConfig { seed: seed.map(|seed| seed.wrapping_add(c)), ..s.sampling.clone() })
                    .collect();
                let request = Request {
                    prompt: ids.clone(),
                    max_tokens: s.max_tokens.unwrap_or(usize::MAX),
                    samplers,
                    ignore_eos: s.ignore_eos,
                    end_tokens: s.end_tokens.clone(),
                    ..Request::default()
                };
                Job { request, stop: s.stop.clone() }
            })
            .collect()
    }

    /// The engine: one sequence alone runs as `quill generate` (one slot, prompt batches as
    /// long as the prompt, the fastest one-row kernels); several run row-invariant, in the
    /// server's fixed prompt chunks, `parallel` at a time, each slot as long as the longest
    /// prompt and its tokens need (at most the model's context).
    fn config(&self, inner: &Inner, s: &GenSettings) -> PyResult<EngineConfig> {
        let longest = self.prompts.iter().map(Vec::len).max().unwrap_or(1);
        if longest > inner.n_ctx {
            return Err(value_error(format!(
                "the prompt has {longest} tokens, more than the context of {}",
                inner.n_ctx
            )));
        }
        let total = self.prompts.len() * s.n;
        if self.alone(s) {
            let chunk = longest.min(512);
            let cfg = EngineConfig {
                n_parallel: 1,
                n_ctx: inner.n_ctx,
                chunk,
                max_queue: 1,
                kv_type: s.kv_type,
                row_invariant: false,
                prefix_cache: false,
            };
            return Ok(cfg);
        }
        let n_parallel = s.parallel.unwrap_or(DEFAULT_PARALLEL).min(total).max(s.n);
        let n_ctx = match s.max_tokens {
            Some(m) => inner.n_ctx.min(longest.saturating_add(m)).max(longest),
            None => inner.n_ctx,
        };
        Ok(EngineConfig {
            n_parallel,
            n_ctx,
            chunk: 256,
            max_queue: self.prompts.len(),
            kv_type: s.kv_type,
            row_invariant: true,
            prefix_cache: true,
        })
    }

    /// The generation, ready to step.
    pub(crate) fn start<'m>(&self, inner: &'m Inner, s: &GenSettings) -> PyResult<Generation<'m, 'm>> {
        self.check_seeds(s)?;
        let cfg = self.config(inner, s)?;
        Generation::new(inner.model(), cfg, self.jobs(s)).map_err(generate_error)
    }
}

/// Runs `g` to its end, the GIL released for each step; Ctrl-C raises `KeyboardInterrupt`
/// between steps. Returns each completion's text.
pub(crate) fn run_to_end(py: Python<'_>, inner: &Inner, g: &mut Generation<'_, '_>) -> PyResult<Vec<String>> {
    let mut texts = vec![String::new(); g.len()];
    loop {
        let running =
            py.detach(|| inner.compute(|| g.step(&mut |i, piece| texts[i].push_str(piece)))).map_err(generate_error)?;
        if !running {
            break;
        }
        py.check_signals()?;
    }
    if let Some(why) = g.aborted() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(format!("generation failed: {why}")));
    }
    Ok(texts)
}

/// What a call's results look like: one prompt or a list, `n` completions each.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub single: bool,
    pub n: usize,
}

impl Shape {
    /// Whether there is one completion of one prompt (results are plain values).
    fn alone(self) -> bool {
        self.single && self.n == 1
    }

    /// Groups per-completion results: one value for one prompt and `n = 1`, a list of `n` for
    /// one prompt, a list per prompt (of values, or of lists of `n`).
    pub(crate) fn group<'py, T: IntoPyObject<'py>>(
        self,
        py: Python<'py>,
        mut items: Vec<T>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let any = |v: T| -> PyResult<Bound<'py, PyAny>> { v.into_bound_py_any(py) };
        if self.alone() {
            return any(items.pop().expect("one completion"));
        }
        if self.n == 1 {
            return Ok(PyList::new(py, items.into_iter().map(any).collect::<PyResult<Vec<_>>>()?)?.into_any());
        }
        let mut groups = Vec::new();
        let mut it = items.into_iter();
        loop {
            let group: Vec<Bound<'py, PyAny>> = it.by_ref().take(self.n).map(any).collect::<PyResult<_>>()?;
            if group.is_empty() {
                break;
            }
            groups.push(PyList::new(py, group)?);
        }
        if self.single {
            return Ok(groups.pop().expect("one prompt").into_any());
        }
        Ok(PyList::new(py, groups)?.into_any())
    }

    /// A streamed piece: the text alone for one completion of one prompt, else
    /// `(completion index, text)`.
    pub(crate) fn piece<'py>(self, py: Python<'py>, (i, piece): (usize, String)) -> PyResult<Bound<'py, PyAny>> {
        if self.alone() {
            piece.into_bound_py_any(py)
        } else {
            (i, piece).into_bound_py_any(py)
        }
    }
}
