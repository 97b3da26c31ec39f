//! Golden tests against Hugging Face `transformers` (fixtures from
//! `tests/fixtures/golden/make_golden.py`): tokenizer ids, and last-position logits of small
//! GPT-2 models regenerated bit for bit from their seeds and converted with `quill quantize`.

mod common;

use common::*;
use quill::gguf::GgufFile;
use quill::gpt2::{Gpt2Model, KvType, SessionOptions};
use quill::quant::FileType;

#[test]
fn tokenizer_matches_gpt2_on_hard_strings() {
    let spec = spec_of(&golden_meta()["models"][0], 50257);
    let file = GgufFile::open(gguf("h64", &spec, FileType::F32)).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden_dir().join("tokenizer.json")).unwrap()).unwrap();
    for case in cases.as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let ids = model.tokenizer.encode(text).unwrap();
        assert_eq!(ids, want, "ids of {text:?}");
        assert_eq!(model.tokenizer.decode(&ids), text.replace("<|endoftext|>", ""), "decode(encode({text:?}))");
    }
}

struct Compare {
    max_abs_diff: f32,
    max_abs_ref: f32,
    cosine: f64,
    same_top1: bool,
}

fn compare(got: &[f32], want: &[f32]) -> Compare {
    let max_abs_diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    let max_abs_ref = want.iter().map(|v| v.abs()).fold(0.0, f32::max);
    let dot: f64 = got.iter().zip(want).map(|(&a, &b)| a as f64 * b as f64).sum();
    let na: f64 = got.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt();
    let nb: f64 = want.iter().map(|&b| b as f64 * b as f64).sum::<f64>().sqrt();
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
    Compare { max_abs_diff, max_abs_ref, cosine: dot / (na * nb), same_top1: argmax(got) == argmax(want) }
}

/// Runs every golden model and prompt through a `file_type` conversion and hands the
/// comparison with transformers' logits to `check`.
fn run_golden(file_type: FileType, kv: KvType, check: impl Fn(&str, &Compare)) {
    let meta = golden_meta();
    let prompts = meta["prompts"].as_array().unwrap();
    for m in meta["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let spec = spec_of(m, meta["n_vocab"].as_u64().unwrap() as usize);
        let file = GgufFile::open(gguf(name, &spec, file_type)).unwrap();
        let model = Gpt2Model::load(&file).unwrap();
        if kv == KvType::Q8_0 && !model.config.head_dim().is_multiple_of(32) {
            continue; // heads of 16 do not fill a Q8_0 block (refused; tests/hostile_model.rs)
        }
        for p in m["prompts"].as_array().unwrap() {
            let k = p["prompt"].as_u64().unwrap() as usize;
            let n = p["n_tokens"].as_u64().unwrap() as usize;
            let ids: Vec<u32> =
                prompts[k]["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(model.tokenizer.encode(prompts[k]["text"].as_str().unwrap()).unwrap(), ids);
            let mut s = model.session(SessionOptions { kv_type: kv, ..Default::default() }).unwrap();
            let got = s.prefill(&ids[..n]).unwrap().to_vec();
            let want = read_f32(&golden_dir().join(p["file"].as_str().unwrap()));
            check(&format!("{name} prompt {k} ({})", file_type.name()), &compare(&got, &want));
        }
    }
}

#[test]
fn f32_logits_match_transformers() {
    run_golden(FileType::F32, KvType::F32, |what, c| {
        assert!(
            c.max_abs_diff <= 1e-4 * c.max_abs_ref,
            "{what}: max |diff| {} > 1e-4 x max |logit| {}",
            c.max_abs_diff,
            c.max_abs_ref
        );
        assert!(c.same_top1, "{what}: top-1 differs");
    });
}

/// Bounds per type, from what each format keeps: F16 rounds each weight to 11 significant
/// bits (relative error 2^-11), so logits move by ~1e-4 of their range; Q8_0 keeps 8 bits per
/// weight plus an f16 scale (~0.4% per weight), Q4_0 4 bits (~6%), Q4_K_M 4-6 bits with finer
/// scales. The random-weight golden models measured: F16 rel. diff <= 4e-4; cosine >= 0.99990
/// (Q8_0), 0.9954 (Q4_0), 0.9972 (Q4_K_M); the top token agreed for every prompt. A Q8_0 KV
/// cache over F32 weights rounds keys and values to 8 bits per block of 32: cosine >= 0.99999
/// measured.
#[test]
fn quantized_logits_track_transformers() {
    for (ft, min_cos) in
        [(FileType::F16, 0.99999), (FileType::Q8_0, 0.9995), (FileType::Q4_0, 0.99), (FileType::Q4_K_M, 0.995)]
    {
        run_golden(ft, KvType::F16, |what, c| {
            assert!(c.cosine >= min_cos, "{what}: cosine {} < {min_cos}", c.cosine);
            assert!(c.same_top1, "{what}: top-1 differs");
            if ft == FileType::F16 {
                assert!(c.max_abs_diff <= 1e-3 * c.max_abs_ref, "{what}: f16 max |diff| {}", c.max_abs_diff);
            }
        });
    }
    run_golden(FileType::F32, KvType::Q8_0, |what, c| {
        assert!(c.cosine >= 0.99995, "{what} with a q8_0 KV cache: cosine {}", c.cosine);
        assert!(c.same_top1, "{what} with a q8_0 KV cache: top-1 differs");
    });
}

/// Prefill of n tokens gives the logits of n single decodes, for every weight path and cache
/// type (same arithmetic, batched differently: summation order, and for F16 the rounding of the
/// activations to F16, may differ).
#[test]
fn prefill_equals_decodes() {
    let meta = golden_meta();
    let m = &meta["models"][1];
    let spec = spec_of(m, 50257);
    let ids: Vec<u32> =
        meta["prompts"][1]["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    for ft in [FileType::F32, FileType::F16, FileType::Q8_0, FileType::Q4_0, FileType::Q4_K_M] {
        let file = GgufFile::open(gguf("h32x4", &spec, ft)).unwrap();
        let model = Gpt2Model::load(&file).unwrap();
        // F16 weights multiply F16-rounded activations (as in ggml): float noise of 1e-7 between
        // the batched and the one-token paths can move an activation across an F16 rounding
        // boundary, a change of one F16 unit (2^-11 relative) in that element, so F16 gets the
        // tolerance of F16 arithmetic; the other paths differ only in summation order.
        // A Q8_0 cache rounds each key and value to 1/127 of its block's largest magnitude:
        // float noise between the paths can move a code by one.
        for kv in KvType::ALL {
            let tol = if ft == FileType::F16 || kv == KvType::Q8_0 { 2e-3 } else { 1e-4 };
            let opts = SessionOptions { kv_type: kv, ..Default::default() };
            let mut batch = model.session(opts).unwrap();
            let all = batch.prefill(&ids).unwrap().to_vec();
            let mut single = model.session(opts).unwrap();
            let mut last = Vec::new();
            for &id in &ids {
                last = single.decode(id).unwrap().to_vec();
            }
            let c = compare(&last, &all);
            assert!(
                c.max_abs_diff <= tol * c.max_abs_ref,
                "{ft:?} {kv:?}: decode vs prefill max |diff| {} (max |logit| {})",
                c.max_abs_diff,
                c.max_abs_ref
            );
            // A split prompt continues from the cache: [a..k] then [k..] equals the whole.
            let mut split = model.session(opts).unwrap();
            split.prefill(&ids[..7]).unwrap();
            let rest = split.prefill(&ids[7..]).unwrap().to_vec();
            let c = compare(&rest, &all);
            assert!(
                c.max_abs_diff <= tol * c.max_abs_ref,
                "{ft:?} {kv:?}: split prefill max |diff| {} (max |logit| {})",
                c.max_abs_diff,
                c.max_abs_ref
            );
        }
    }
}

/// A `q4_0_8_8` file (Q4_0 interleaved by 8 rows) gives its Q4_0 original's logits bit for bit,
/// prefill (GEMM over de-interleaved panels) and decode (the interleaved kernels) alike.
#[test]
fn interleaved_q4_0_file_gives_q4_0_logits() {
    let meta = golden_meta();
    let prompts = meta["prompts"].as_array().unwrap();
    for m in meta["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let spec = spec_of(m, meta["n_vocab"].as_u64().unwrap() as usize);
        let files = [FileType::Q4_0, FileType::Q4_0_8_8].map(|ft| GgufFile::open(gguf(name, &spec, ft)).unwrap());
        let interleaved = files[1].tensors().filter(|t| t.ty() == quill::gguf::GgmlType::Q4_0_8_8).count();
        assert!(interleaved >= 4, "{name}: only {interleaved} interleaved tensors");
        let models = [0, 1].map(|i| Gpt2Model::load(&files[i]).unwrap());
        let ids: Vec<u32> = prompts[1]["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let ids = &ids[..ids.len().min(models[0].config.n_ctx / 2)];
        let run = |model: &Gpt2Model<'_>| {
            let mut s = model.session(SessionOptions::default()).unwrap();
            let mut out = s.prefill(&ids[..ids.len() - 2]).unwrap().to_vec();
            for &id in &ids[ids.len() - 2..] {
                out.extend_from_slice(s.decode(id).unwrap());
            }
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        assert!(run(&models[0]) == run(&models[1]), "{name}: q4_0_8_8 logits differ from q4_0's");
    }
}

#[test]
fn context_limit_is_an_error_not_corruption() {
    let meta = golden_meta();
    let spec = spec_of(&meta["models"][3], 50257); // n_ctx 32
    let file = GgufFile::open(gguf("h16x6", &spec, FileType::F32)).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let mut s = model.session(SessionOptions { n_ctx: 8, kv_type: KvType::F32, ..Default::default() }).unwrap();
    s.prefill(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
    s.decode(8).unwrap();
    let err = s.decode(9).unwrap_err().to_string();
    assert!(err.contains("context is full"), "{err}");
    assert_eq!(s.pos(), 8, "a refused token leaves the session as it was");
    assert!(model.session(SessionOptions { n_ctx: 33, ..Default::default() }).is_err(), "larger than the model's");
    let mut fresh = model.session(SessionOptions::default()).unwrap();
    let err = fresh.decode(50257).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
    assert!(fresh.prefill(&[]).is_err());
}
