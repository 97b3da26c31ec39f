//! `quill logits`: ids and last-position logits equal transformers' (golden fixtures).

mod common;

use common::*;
use quill_quant::FileType;

#[test]
fn json_ids_and_logits_match_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let meta = golden_json("models.json");
    let m = &meta["models"][0];
    let model = golden_gguf(dir.path(), m["name"].as_str().unwrap(), FileType::F32);
    let p = &m["prompts"][1];
    let prompt = &meta["prompts"][p["prompt"].as_u64().unwrap() as usize];
    let o = quill(&["logits", "-m", model.to_str().unwrap(), "-p", prompt["text"].as_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["ids"], prompt["ids"]);
    let got: Vec<f64> = j["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let want: Vec<f32> = std::fs::read(repo().join("tests/fixtures/golden").join(p["file"].as_str().unwrap()))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(got.len(), 50257);
    let max_ref = want.iter().fold(0.0f64, |a, &b| a.max(b.abs() as f64));
    let max_diff = got.iter().zip(&want).fold(0.0f64, |a, (&g, &w)| a.max((g - w as f64).abs()));
    assert!(max_diff <= 1e-4 * max_ref, "max |diff| {max_diff} vs max |logit| {max_ref}");

    // Text mode: the ids and a top-10 table.
    let o = quill(&["logits", "-m", model.to_str().unwrap(), "-p", "Hello, world!"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("ids (4): [15496, 11, 995, 0]") && out.contains("top 10"), "{out}");
    assert_eq!(out.lines().count(), 12);
}
