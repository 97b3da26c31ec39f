//! `quill bench` on a tiny model: llama-bench-shaped JSON rows, without asserting any speed.

mod common;

use common::*;

#[test]
fn json_rows_have_llama_bench_fields() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_gguf(dir.path(), "q4_0");
    let o = quill(&["bench", "-m", m.to_str().unwrap(), "-p", "16", "-n", "4", "-r", "2", "-t", "1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "a pp row and a tg row");
    let (pp, tg) = (&rows[0], &rows[1]);
    assert_eq!((pp["n_prompt"].as_u64(), pp["n_gen"].as_u64()), (Some(16), Some(0)));
    assert_eq!((tg["n_prompt"].as_u64(), tg["n_gen"].as_u64()), (Some(0), Some(4)));
    for r in rows {
        for key in [
            "n_threads",
            "avg_ts",
            "stddev_ts",
            "avg_ns",
            "model_type",
            "model_size",
            "model_n_params",
            "quill_load_ms",
            "quill_rss_peak_bytes",
            "quill_rss_file_bytes",
            "quill_rss_anon_bytes",
        ] {
            assert!(!r[key].is_null(), "missing {key}: {r}");
        }
        assert_eq!(r["n_threads"], 1);
        assert_eq!(r["samples_ts"].as_array().unwrap().len(), 2);
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
        assert!(r["model_type"].as_str().unwrap().starts_with("gpt2 "), "{}", r["model_type"]);
    }
    assert!(tg["quill_weight_bytes_per_token"].as_u64().unwrap() > 0);

    // Markdown table like llama-bench's.
    let o = quill(&["bench", "-m", m.to_str().unwrap(), "-p", "8", "-n", "2", "-r", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("| model |") && out.contains("pp8") && out.contains("tg2"), "{out}");
    assert_fails_with(&quill(&["bench", "-m", m.to_str().unwrap(), "-p", "100", "-n", "4"]), &["context of 100"]);
    assert_fails_with(&quill(&["bench", "-m", m.to_str().unwrap(), "-r", "0"]), &["--repetitions"]);
}
