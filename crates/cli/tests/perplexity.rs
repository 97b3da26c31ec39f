//! `quill perplexity` against transformers (tests/fixtures/golden/perplexity.json, computed by
//! make_golden.py with llama.cpp's method), and its KL-divergence modes.

mod common;

use common::*;
use quill_quant::FileType;

fn ppl_json(args: &[&str]) -> serde_json::Value {
    let o = quill(args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn f32_perplexity_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let text = repo().join("tests/fixtures/golden/ppl_text.txt");
    let refs = golden_json("perplexity.json");
    for r in refs.as_array().unwrap() {
        let model = golden_gguf(dir.path(), r["model"].as_str().unwrap(), FileType::F32);
        let ctx = r["n_ctx"].as_u64().unwrap().to_string();
        let j = ppl_json(&[
            "perplexity",
            "-m",
            model.to_str().unwrap(),
            "-f",
            text.to_str().unwrap(),
            "--ctx",
            &ctx,
            "--json",
        ]);
        assert_eq!(j["n_tokens"], r["n_tokens"]);
        assert_eq!(j["n_chunks"], r["n_chunks"]);
        assert_eq!(j["count"], r["count"]);
        for key in ["ppl", "ppl_stderr"] {
            let (got, want) = (j[key].as_f64().unwrap(), r[key].as_f64().unwrap());
            assert!((got - want).abs() <= 1e-3 * want, "{} ctx {ctx} {key}: {got} vs transformers {want}", r["model"]);
        }
    }
}

#[test]
fn kl_divergence_against_a_base_model_and_saved_logits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = repo().join("tests/fixtures/golden/ppl_text.txt");
    let text = text.to_str().unwrap();
    let base = golden_gguf(d, "h32x4", FileType::F32);
    let q8 = golden_gguf(d, "h32x4", FileType::Q8_0);
    let q4 = golden_gguf(d, "h32x4", FileType::Q4_0);
    let (base, q8, q4) = (base.to_str().unwrap(), q8.to_str().unwrap(), q4.to_str().unwrap());

    // A model against itself: no divergence.
    let same = ppl_json(&["perplexity", "-m", base, "-f", text, "--ctx", "32", "--kl-base", base, "--json"]);
    assert!(same["kld_mean"].as_f64().unwrap().abs() < 1e-9, "{same}");
    assert_eq!(same["same_top_pct"].as_f64().unwrap(), 100.0);
    assert!((same["ppl_ratio"].as_f64().unwrap() - 1.0).abs() < 1e-9);

    // Coarser quantization diverges more.
    let k8 = ppl_json(&["perplexity", "-m", q8, "-f", text, "--ctx", "32", "--kl-base", base, "--json"]);
    let k4 = ppl_json(&["perplexity", "-m", q4, "-f", text, "--ctx", "32", "--kl-base", base, "--json"]);
    let (d8, d4) = (k8["kld_mean"].as_f64().unwrap(), k4["kld_mean"].as_f64().unwrap());
    assert!(0.0 < d8 && d8 < d4, "kld q8_0 {d8}, q4_0 {d4}");
    assert!(k8["same_top_pct"].as_f64().unwrap() >= k4["same_top_pct"].as_f64().unwrap());
    assert!(
        (k8["ppl_base"].as_f64().unwrap() - same["ppl"].as_f64().unwrap()).abs() < 1e-6 * same["ppl"].as_f64().unwrap()
    );

    // Saved base log-probs give the same answers (f16 storage: close, not equal).
    let saved = d.join("base.lgp");
    let s = ppl_json(&[
        "perplexity",
        "-m",
        base,
        "-f",
        text,
        "--ctx",
        "32",
        "--save-logits",
        saved.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(s["ppl"], same["ppl"]);
    let f4 = ppl_json(&[
        "perplexity",
        "-m",
        q4,
        "-f",
        text,
        "--ctx",
        "32",
        "--kl-base-logits",
        saved.to_str().unwrap(),
        "--json",
    ]);
    let rel = |k: &str| (f4[k].as_f64().unwrap() - k4[k].as_f64().unwrap()).abs() / k4[k].as_f64().unwrap();
    assert!(rel("kld_mean") < 0.02, "kld from file {} vs {}", f4["kld_mean"], k4["kld_mean"]);
    assert!(rel("ppl_base") < 1e-3);

    // The saved file belongs to one text and context.
    let o = quill(&["perplexity", "-m", q4, "-f", text, "--ctx", "64", "--kl-base-logits", saved.to_str().unwrap()]);
    assert_fails_with(&o, &["base.lgp", "context"]);
}

#[test]
fn strided_windows_and_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let text = repo().join("tests/fixtures/golden/ppl_text.txt");
    let text = text.to_str().unwrap();
    let m = golden_gguf(dir.path(), "h32x4", FileType::F32);
    let m = m.to_str().unwrap();
    let j = ppl_json(&["perplexity", "-m", m, "-f", text, "--ctx", "32", "--stride", "16", "--json"]);
    // ceil((303 - 32) / 16) windows of 16 scored tokens.
    assert_eq!(j["n_chunks"], 17);
    assert_eq!(j["count"], 17 * 16);
    assert_fails_with(&quill(&["perplexity", "-m", m, "-f", text, "--ctx", "200"]), &["--ctx 200", "context of 128"]);
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "Too short a text to score with a context of 32.").unwrap();
    assert_fails_with(
        &quill(&["perplexity", "-m", m, "-f", short.to_str().unwrap(), "--ctx", "32"]),
        &["short.txt", "at least 64"],
    );
    // The library states the problem; the CLI adds which flag fixes it.
    let o = quill(&["perplexity", "-m", m, "-f", text, "--ctx", "32", "--stride", "32"]);
    assert_fails_with(&o, &["stride of 32", "give --stride between 1 and 31"]);
    let o = quill(&["perplexity", "-m", m, "-f", text, "--ctx", "2"]);
    assert_fails_with(&o, &["context of 2 tokens is too small", "give --ctx 4 or more"]);
    assert_fails_with(&quill(&["perplexity", "-m", m, "-f", "/nonexistent/text.txt"]), &["/nonexistent/text.txt"]);
}

#[test]
fn the_quality_cost_of_a_q8_0_kv_cache() {
    let dir = tempfile::tempdir().unwrap();
    let text = repo().join("tests/fixtures/golden/ppl_text.txt");
    let text = text.to_str().unwrap();
    let m = golden_gguf(dir.path(), "h32x4", FileType::F32);
    let m = m.to_str().unwrap();
    let ppl =
        |extra: &[&str]| ppl_json(&[&["perplexity", "-m", m, "-f", text, "--ctx", "32", "--json"], extra].concat());
    let f32 = ppl(&[]);
    assert_eq!(f32["kv_type"], "f32");
    assert!(f32.get("kld_mean").is_none(), "{f32}");
    // q8_0 alone compares with the same model over an f16 cache.
    let q8 = ppl(&["--kv-type", "q8_0"]);
    assert_eq!((q8["kv_type"].as_str(), q8["base_kv_type"].as_str()), (Some("q8_0"), Some("f16")));
    let kld = q8["kld_mean"].as_f64().unwrap();
    assert!(0.0 < kld && kld < 1e-3, "{q8}");
    assert!(q8["same_top_pct"].as_f64().unwrap() > 95.0, "{q8}");
    assert!((q8["ppl_ratio"].as_f64().unwrap() - 1.0).abs() < 0.01, "{q8}");
    // An f16 cache against f32 diverges less than q8_0 against f16; a base of the same type
    // not at all.
    let f16 = ppl(&["--kv-type", "f16", "--kl-base-kv", "f32"]);
    assert!(f16["kld_mean"].as_f64().unwrap() < kld, "{f16}");
    let same = ppl(&["--kv-type", "q8_0", "--kl-base-kv", "q8_0"]);
    assert_eq!(same["kld_mean"].as_f64().unwrap(), 0.0, "{same}");
    assert_eq!(same["ppl"], q8["ppl"]);
    // A KV base excludes a model base (a usage error: exit 2).
    let o = quill(&["perplexity", "-m", m, "-f", text, "--kl-base-kv", "f16", "--kl-base", m]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("'--kl-base-kv <KL_BASE_KV>' cannot be used with '--kl-base <KL_BASE>'"), "{err}");
}
