//! `quill inspect` on a fixture written by llama.cpp's gguf package, and on bad files.

mod common;

use common::*;

fn fixture() -> String {
    repo().join("crates/gguf-file/tests/fixtures/interop.gguf").to_str().unwrap().to_owned()
}

#[test]
fn text_output_lists_metadata_and_tensors() {
    let o = quill(&["inspect", &fixture()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for needle in ["GGUF v3", "general.architecture", "\"interop\"", "test.arr_str", "t.q4_0", "q4_0", "[64, 4]"] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn json_output_has_metadata_and_tensors() {
    let o = quill(&["inspect", &fixture(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["metadata"]["general.architecture"], "interop");
    assert_eq!(j["metadata"]["test.u64"], serde_json::json!(9223372036854775813u64));
    assert_eq!(j["metadata"]["test.arr_arr"], serde_json::json!([[1, 2, 3], [4], [5, 6]]));
    let tensors = j["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 7);
    let q4 = tensors.iter().find(|t| t["name"] == "t.q4_0").unwrap();
    assert_eq!(q4["type"], "q4_0");
    assert_eq!(q4["shape"], serde_json::json!([64, 4]));
    assert_eq!(q4["bytes"], 4 * 2 * 18);
}

#[test]
fn unreadable_files_get_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    assert_fails_with(&quill(&["inspect", missing.to_str().unwrap()]), &["missing.gguf"]);
    assert_fails_with(&quill(&["inspect", dir.path().to_str().unwrap()]), &["not a regular file"]);
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"this is not a gguf file at all").unwrap();
    let o = quill(&["inspect", junk.to_str().unwrap()]);
    assert_fails_with(&o, &["junk.gguf", "not a GGUF file"]);
    assert_eq!(stderr(&o).lines().count(), 1, "one line: {}", stderr(&o));
    let mut bytes = std::fs::read(fixture()).unwrap();
    bytes.truncate(bytes.len() - 100);
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, bytes).unwrap();
    assert_fails_with(&quill(&["inspect", cut.to_str().unwrap()]), &["cut.gguf", "outside the file"]);
}
