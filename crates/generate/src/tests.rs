use std::path::{Path, PathBuf};

use gguf_file::GgufFile;
use quill_convert::{convert, ConvertOptions};
use quill_gpt2::{Gpt2Model, SessionOptions};
use quill_quant::FileType;
use quill_sampler::{Sampler, SamplerConfig};

use super::*;

/// The repository's tiny Hugging Face checkpoint (320 tokens, context 64) as an F32 GGUF.
fn tiny(dir: &Path) -> PathBuf {
    let hf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-gpt2/hf");
    let out = dir.join("tiny.gguf");
    let opts = ConvertOptions { file_type: FileType::from_name("f32").unwrap(), overrides: Vec::new() };
    convert(&hf, &out, &opts, &|_, _, _| {}).unwrap();
    out
}

fn run(model: &Gpt2Model<'_>, cfg: SamplerConfig, prompt: &str, opts: &GenerateOptions) -> (String, Vec<u32>, Stop) {
    let ids = model.tokenizer.encode(prompt).unwrap();
    let session = model.session(SessionOptions::default()).unwrap();
    let mut g = Generator::new(model, session, cfg, ids, opts).unwrap();
    let mut text = String::new();
    while g.step(&mut text).unwrap() {}
    assert!(!g.step(&mut text).unwrap(), "a finished generation stays finished");
    (text, g.ids().to_vec(), g.stop().unwrap())
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
        logits = session.decode(id).unwrap().to_vec();
    }
    out
}

#[test]
fn steps_give_the_hand_written_loops_tokens_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(tiny(dir.path())).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let cfg = SamplerConfig { seed: Some(7), ..SamplerConfig::default() };
    let opts = GenerateOptions { max_tokens: Some(20), ignore_eos: true, ..Default::default() };
    let (text, ids, stop) = run(&model, cfg.clone(), "To be, or not", &opts);
    let mut cfg_eos = cfg;
    cfg_eos.logit_bias.push((model.tokenizer.eos().unwrap(), f32::NEG_INFINITY));
    assert_eq!(ids, reference(&model, cfg_eos, "To be, or not", 20));
    assert_eq!(text, model.tokenizer.decode(&ids));
    assert_eq!(stop, Stop::Length);

    // No tokens asked for: the prompt is evaluated, nothing generated.
    let (text, ids, stop) =
        run(&model, SamplerConfig::greedy(), "To be", &GenerateOptions { max_tokens: Some(0), ..Default::default() });
    assert_eq!((text.as_str(), ids.len(), stop), ("", 0, Stop::Length));
}

#[test]
fn stop_strings_cut_the_text_and_a_full_context_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(tiny(dir.path())).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let cfg = || SamplerConfig { seed: Some(3), ..SamplerConfig::default() };
    let free = GenerateOptions { ignore_eos: true, ..Default::default() };
    let (full, ids, stop) = run(&model, cfg(), "Shall I", &free);
    // Context 64: generation runs until the session is full; the last token is sampled from
    // the logits of position 63 and needs no room of its own.
    let n_prompt = model.tokenizer.encode("Shall I").unwrap().len();
    assert_eq!((stop, ids.len()), (Stop::Context, 64 - n_prompt + 1));
    // Stop at a piece of the text seen in the free run: the text is cut just before it.
    let needle: String = full.chars().skip(10).take(3).collect();
    let at = full.find(&needle).unwrap();
    let opts = GenerateOptions { stop: vec![needle.clone()], ..free.clone() };
    let (text, _, stop) = run(&model, cfg(), "Shall I", &opts);
    assert_eq!((text.as_str(), stop), (&full[..at], Stop::Matched));
}

#[test]
fn bad_settings_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(tiny(dir.path())).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let session = || model.session(SessionOptions { n_ctx: 8, ..Default::default() }).unwrap();
    let opts = GenerateOptions::default();
    let err = |r: Result<Generator<'_, '_>, GenerateError>| r.err().expect("an error").to_string();
    assert_eq!(
        err(Generator::new(&model, session(), SamplerConfig::default(), vec![], &opts)),
        "the prompt is empty: it has no tokens"
    );
    assert_eq!(
        err(Generator::new(&model, session(), SamplerConfig::default(), vec![1; 9], &opts)),
        "the prompt has 9 tokens, more than the context of 8"
    );
    let stop = GenerateOptions { stop: vec![String::new()], ..Default::default() };
    assert_eq!(
        err(Generator::new(&model, session(), SamplerConfig::default(), vec![1], &stop)),
        "a stop string must not be empty"
    );
    let bad = SamplerConfig { top_p: 2.0, ..SamplerConfig::default() };
    assert!(err(Generator::new(&model, session(), bad, vec![1], &opts)).contains("top-p"));
}

#[test]
fn interrupt_ends_with_the_text_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(tiny(dir.path())).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let ids = model.tokenizer.encode("Rough winds").unwrap();
    let session = model.session(SessionOptions::default()).unwrap();
    let opts = GenerateOptions { ignore_eos: true, ..Default::default() };
    let mut g = Generator::new(&model, session, SamplerConfig::greedy(), ids, &opts).unwrap();
    let mut text = String::new();
    for _ in 0..5 {
        assert!(g.step(&mut text).unwrap());
    }
    g.interrupt(&mut text);
    assert_eq!(g.stop(), Some(Stop::Interrupted));
    assert_eq!(g.ids().len(), 5);
    assert_eq!(text, model.tokenizer.decode(g.ids()));
    assert!(!g.step(&mut text).unwrap());
}
