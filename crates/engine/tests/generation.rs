//! `Generation`: jobs run to their end on the calling thread. One job alone (row-invariance off,
//! as `quill generate` runs it) gives the tokens of the loop written out by hand over a
//! `Session`; many jobs give each one's tokens alone; stop strings, end tokens, a full context,
//! interruption and bad settings end or refuse it with one meaning each.

use std::path::{Path, PathBuf};

use gguf_file::GgufFile;
use quill_convert::{convert, ConvertOptions};
use quill_engine::{EngineConfig, Finish, Generation, Job, Request};
use quill_gpt2::{Gpt2Model, KvType, SessionOptions};
use quill_quant::FileType;
use quill_sampler::{Sampler, SamplerConfig};

/// The repository's tiny Hugging Face checkpoint (320 tokens, context 64) as an F32 GGUF.
fn tiny(dir: &Path) -> PathBuf {
    let hf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-gpt2/hf");
    let out = dir.join("tiny.gguf");
    let opts = ConvertOptions { file_type: FileType::from_name("f32").unwrap(), overrides: Vec::new() };
    convert(&hf, &out, &opts, &|_, _, _| {}).unwrap();
    out
}

/// `quill generate`'s engine: one slot, the fastest one-row kernels.
fn single() -> EngineConfig {
    EngineConfig {
        n_parallel: 1,
        n_ctx: 0,
        chunk: 512,
        max_queue: 1,
        kv_type: KvType::F16,
        row_invariant: false,
        prefix_cache: true,
    }
}

fn job(model: &Gpt2Model<'_>, prompt: &str, cfg: SamplerConfig, max_tokens: usize) -> Job {
    let prompt = model.tokenizer.encode(prompt).unwrap();
    Job { request: Request { prompt, max_tokens, samplers: vec![cfg], ..Request::default() }, stop: Vec::new() }
}

/// Runs one job; returns its text, tokens and finish.
fn run(model: &Gpt2Model<'_>, job: Job) -> (String, Vec<u32>, Finish) {
    let mut g = Generation::new(model, single(), vec![job]).unwrap();
    let text = g.run().unwrap().pop().unwrap();
    assert!(!g.step(&mut |_, _| panic!("no text after the end")).unwrap(), "a finished generation stays finished");
    (text, g.text(0).ids().to_vec(), g.finish(0).unwrap().clone())
}

/// The loop written out by hand: prefill, then sample, accept, decode.
fn reference(model: &Gpt2Model<'_>, cfg: SamplerConfig, prompt: &str, n: usize) -> Vec<u32> {
    let ids = model.tokenizer.encode(prompt).unwrap();
    let mut session = model.session(SessionOptions::default()).unwrap();
    let mut sampler = Sampler::new(cfg, model.config.n_vocab).unwrap();
    let mut logits = session.prefill(&ids).unwrap().to_vec();
    ids.iter().for_each(|&id| sampler.accept(id));
    let mut out = Vec::new();
    while out.len() < n {
        let id = sampler.sample(&logits).unwrap();
        sampler.accept(id);
        if Some(id) == model.tokenizer.eos() {
            break;
        }
        out.push(id);
        if session.pos() == session.n_ctx() {
            break;
        }
        logits = session.decode(id).unwrap().to_vec();
    }
    out
}

#[test]
fn one_job_gives_the_hand_written_loops_tokens_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(tiny(dir.path())).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let cfg = SamplerConfig { seed: Some(7), ..SamplerConfig::default() };
    let mut j = job(&model, "To be, or not", cfg.clone(), 20);
    j.request.ignore_eos = true;
    let (text, ids, finish) = run(&model, j);
    let mut cfg_eos = cfg;
    cfg_eos.logit_bias.push((model.tokenizer.eos().unwrap(), f32::NEG_INFINITY));
    assert_eq!(ids, reference(&model, cfg_eos, "To be, or not", 20));
    assert_eq!(text, model.tokenizer.decode(&ids));
    assert_eq!(finish, Finish::Length);

    // Greedy until the end token: the same tokens, and the end token is reported, not sent.
    let greedy = reference(&model, SamplerConfig::greedy(), "Shall I", 1000);
    let (_, ids, finish) = run(&model, job(&model, "Shall I", SamplerConfig::greedy(), 1000));
    assert_eq!(ids, greedy);
    assert!(matches!(finish, Finish::Eos(_) | Finish::Context), "{finish:?}");

    // No tokens asked for: nothing generated.
    let (text, ids, finish) = run(&model, job(&model, "To be", SamplerConfig::greedy(), 0));
    assert_eq!((text.as_str(), ids.len(), finish), ("", 0, Finish::Length));
}

#[test]
fn many_jobs_give_each_ones_tokens_alone() {
    let file =
        GgufFile::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/quill-shakespeare.gguf")).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let prompts = ["To be, or not to be", "HAMLET.\n", "O", "Friends, Romans, countrymen"];
    let jobs: Vec<Job> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut j = job(&model, p, SamplerConfig { seed: Some(i as u64), ..SamplerConfig::default() }, 12 + i);
            // Two completions of the second prompt, seeded apart.
            if i == 1 {
                j.request.samplers.push(SamplerConfig { seed: Some(99), ..SamplerConfig::default() });
            }
            j
        })
        .collect();
    let cfg = EngineConfig { n_parallel: 3, chunk: 8, ..EngineConfig::default() };
    let mut all = Generation::new(&model, cfg, jobs.clone()).unwrap();
    assert_eq!(all.len(), 5);
    let texts = all.run().unwrap();
    let mut i = 0;
    for (j, job) in jobs.iter().enumerate() {
        for s in &job.request.samplers {
            let one = Job { request: Request { samplers: vec![s.clone()], ..job.request.clone() }, stop: Vec::new() };
            let mut alone = Generation::new(&model, EngineConfig { n_parallel: 1, ..cfg }, vec![one]).unwrap();
            assert_eq!(all.job_of(i), j);
            assert_eq!(texts[i], alone.run().unwrap()[0], "completion {i}");
            assert_eq!(all.text(i).ids(), alone.text(0).ids());
            assert_eq!(all.seed(i), s.seed.unwrap());
            i += 1;
        }
    }
}

#[test]
fn stop_strings_end_tokens_and_a_full_context_end_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(tiny(dir.path())).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let cfg = || SamplerConfig { seed: Some(3), ..SamplerConfig::default() };
    let mut free = job(&model, "Shall I", cfg(), usize::MAX);
    free.request.ignore_eos = true;
    let (full, ids, finish) = run(&model, free.clone());
    // Context 64: the last token is sampled from the logits of position 63.
    let n_prompt = free.request.prompt.len();
    assert_eq!((finish, ids.len()), (Finish::Context, 64 - n_prompt + 1));
    // A stop string seen in the free run: the text is cut just before it.
    let needle: String = full.chars().skip(10).take(3).collect();
    let at = full.find(&needle).unwrap();
    let (text, _, finish) = run(&model, Job { stop: vec![needle], ..free.clone() });
    assert_eq!((text.as_str(), finish), (&full[..at], Finish::Stop));
    // One of the free run's tokens as the end token: it ends there, reported and not sent.
    let end = ids[5];
    let first = ids.iter().position(|&t| t == end).unwrap();
    let mut j = free.clone();
    j.request.ignore_eos = false;
    j.request.end_tokens = Some(vec![end]);
    let (_, got, finish) = run(&model, j);
    assert_eq!((got.as_slice(), finish), (&ids[..first], Finish::Eos(end)));
    // A full context and max_tokens at once: "length".
    let mut j = free.clone();
    j.request.max_tokens = 64 - n_prompt + 1;
    assert_eq!(run(&model, j).2, Finish::Length);
}

#[test]
fn bad_settings_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(tiny(dir.path())).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let cfg = EngineConfig { n_ctx: 8, ..single() };
    let err = |j: Job| Generation::new(&model, cfg, vec![j]).err().expect("an error").to_string();
    let j = |prompt: Vec<u32>| Job {
        request: Request { prompt, max_tokens: 4, samplers: vec![SamplerConfig::default()], ..Request::default() },
        stop: Vec::new(),
    };
    assert_eq!(err(j(vec![])), "the prompt is empty: it has no tokens");
    assert_eq!(err(j(vec![1; 9])), "the prompt has 9 tokens, more than the context of 8");
    assert_eq!(err(Job { stop: vec![String::new()], ..j(vec![1]) }), "a stop string must not be empty");
    let mut bad = j(vec![1]);
    bad.request.samplers[0].top_p = 2.0;
    assert!(err(bad).contains("top-p"));
    assert_eq!(
        Generation::new(&model, cfg, vec![]).err().unwrap().to_string(),
        "nothing to generate: no prompt was given"
    );
}

#[test]
fn interrupt_ends_with_the_text_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(tiny(dir.path())).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let mut j = job(&model, "Rough winds", SamplerConfig::greedy(), usize::MAX);
    j.request.ignore_eos = true;
    let mut g = Generation::new(&model, single(), vec![j]).unwrap();
    let mut text = String::new();
    for _ in 0..5 {
        assert!(g.step(&mut |_, p| text.push_str(p)).unwrap());
    }
    g.interrupt(&mut |_, p| text.push_str(p));
    assert_eq!(g.finish(0), Some(&Finish::Interrupted));
    assert_eq!(g.text(0).ids().len(), 5);
    assert_eq!(text, model.tokenizer.decode(g.text(0).ids()));
    assert!(!g.step(&mut |_, _| ()).unwrap());
}
