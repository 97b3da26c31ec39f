//! `quill generate`: determinism, agreement with transformers' greedy decoding, stop
//! conditions, the JSON report, Ctrl-C, and bad input.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use quill_quant::FileType;

fn gen_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["generate", "--json"];
    all.extend_from_slice(args);
    let o = quill(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn greedy_matches_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let meta = golden_json("models.json");
    for g in golden_json("greedy.json").as_array().unwrap() {
        let model = golden_gguf(dir.path(), g["model"].as_str().unwrap(), FileType::F32);
        let prompt = meta["prompts"][g["prompt"].as_u64().unwrap() as usize]["text"].as_str().unwrap();
        let j = gen_json(&["-m", model.to_str().unwrap(), "-p", prompt, "--temp", "0", "-n", "24", "--kv-type", "f32"]);
        assert_eq!(j["ids"], g["ids"], "{} prompt {}", g["model"], g["prompt"]);
    }
}

#[test]
fn seeded_sampling_is_reproducible_across_runs_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_gguf(dir.path(), "q8_0");
    let m = m.to_str().unwrap();
    let args = |t: &'static str| {
        vec!["-m", m, "-p", "To be, or not", "-n", "40", "--seed", "42", "--temp", "1.0", "--threads", t]
    };
    let a = gen_json(&args("1"));
    let b = gen_json(&args("1"));
    let c = gen_json(&args("2"));
    assert_eq!(a["text"], b["text"]);
    assert_eq!(a["ids"], c["ids"], "same tokens with 1 and 2 threads");
    assert_eq!(a["seed"], 42);
    let d = gen_json(&["-m", m, "-p", "To be, or not", "-n", "40", "--seed", "43", "--temp", "1.0"]);
    assert_ne!(a["ids"], d["ids"], "another seed, another text");
}

#[test]
fn json_report_and_stop_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_gguf(dir.path(), "f32");
    let m = m.to_str().unwrap();
    let j = gen_json(&["-m", m, "-p", "Shall I compare", "-n", "10", "--seed", "1"]);
    for key in [
        "text",
        "ids",
        "prompt_ids",
        "load_ms",
        "prompt_tps",
        "gen_tps",
        "peak_rss_bytes",
        "rss_file_bytes",
        "rss_anon_bytes",
        "kv_cache_bytes",
    ] {
        assert!(!j[key].is_null(), "missing {key}: {j}");
    }
    assert_eq!(j["stop"], "length");
    assert_eq!(j["ids"].as_array().unwrap().len(), 10);
    // The context ends generation: the prompt's tokens plus the generated ones fill it, and the
    // token predicted from the full context is the last one printed.
    let j = gen_json(&["-m", m, "-p", "Shall I compare", "-n", "-1", "--seed", "1", "--ctx", "20", "--ignore-eos"]);
    assert_eq!(j["stop"], "context");
    assert_eq!(j["prompt_ids"].as_array().unwrap().len() + j["ids"].as_array().unwrap().len(), 20 + 1);
    let o = quill(&["generate", "-m", m, "-p", "Shall I compare", "-n", "-1", "--ctx", "20", "--ignore-eos"]);
    assert!(o.status.success() && stderr(&o).contains("context of 20 tokens is full"), "{}", stderr(&o));

    // A stop string ends generation and is not printed.
    let full = gen_json(&["-m", m, "-p", "Shall I compare", "-n", "30", "--seed", "5", "--ignore-eos"]);
    let text = full["text"].as_str().unwrap();
    let chars: Vec<char> = text.chars().collect();
    let (a, b) = (chars.len() / 2, chars.len() / 2 + 3);
    let stop: String = chars[a..b].iter().collect();
    let cut = gen_json(&["-m", m, "-p", "Shall I compare", "-n", "30", "--seed", "5", "--ignore-eos", "--stop", &stop]);
    assert_eq!(cut["stop"], "stop");
    let want = &text[..text.find(&stop).unwrap()];
    assert_eq!(cut["text"].as_str().unwrap(), want, "stop {stop:?}");

    // Streaming prints the prompt, the continuation, and the stats on stderr.
    let o = quill(&["generate", "-m", m, "-p", "Shall I compare", "-n", "8", "--seed", "3"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("Shall I compare"));
    for s in ["load time", "prompt eval", "eval", "tokens per second", "peak RSS", "file-backed", "anonymous"] {
        assert!(stderr(&o).contains(s), "stats lack {s:?}: {}", stderr(&o));
    }
}

#[test]
fn ctrl_c_stops_cleanly_with_stats() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_gguf(dir.path(), "f32");
    // SIGINT before the prompt arrives on stdin: generation must end at once, cleanly. Retry
    // with a longer wait if the signal came before the handler was installed.
    for wait_ms in [300u64, 1000, 3000] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quill"))
            .args(["generate", "-m", m.to_str().unwrap(), "-n", "-1", "--ignore-eos"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"Shall I compare thee");
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        if o.status.code().is_none() {
            continue; // killed by the signal: the handler was not installed yet
        }
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("interrupted") && err.contains("tokens per second"), "{err}");
        return;
    }
    panic!("SIGINT always arrived before the handler was installed");
}

#[test]
fn bad_input_gets_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = tiny_gguf(d, "f32");
    let m = m.to_str().unwrap();
    let g = |extra: &[&str]| {
        let mut a = vec!["generate"];
        a.extend_from_slice(extra);
        quill(&a)
    };
    assert_fails_with(&g(&["-m", d.join("none.gguf").to_str().unwrap(), "-p", "x"]), &["none.gguf"]);
    let junk = d.join("junk.gguf");
    std::fs::write(&junk, "hello").unwrap();
    assert_fails_with(&g(&["-m", junk.to_str().unwrap(), "-p", "x"]), &["junk.gguf", "not a GGUF"]);
    let mut b = gguf_file::GgufBuilder::new();
    b.set("general.architecture", "llama").unwrap();
    let llama = d.join("llama.gguf");
    b.create(&llama).unwrap().commit().unwrap();
    assert_fails_with(
        &g(&["-m", llama.to_str().unwrap(), "-p", "x"]),
        &["unsupported architecture 'llama': quill runs gpt2"],
    );
    assert_fails_with(&g(&["-m", m, "-p", ""]), &["prompt is empty"]);
    let long = "word ".repeat(200);
    assert_fails_with(&g(&["-m", m, "-p", &long]), &["more than the context of 64"]);
    assert_fails_with(&g(&["-m", m, "-p", "x", "--top-p", "1.5"]), &["--top-p"]);
    assert_fails_with(&g(&["-m", m, "-p", "x", "--temp", "-1"]), &["--temp"]);
    assert_fails_with(&g(&["-m", m, "-p", "x", "--top-k", "-3"]), &["--top-k"]);
    assert_fails_with(&g(&["-m", m, "-p", "x", "--min-p", "2"]), &["--min-p"]);
    assert_fails_with(&g(&["-m", m, "-p", "x", "--ctx", "65"]), &["--ctx 65"]);
    assert_fails_with(&g(&["-m", m, "-p", "x", "--threads", "0"]), &["--threads"]);
    assert_fails_with(&g(&["-m", m, "-f", d.join("nofile.txt").to_str().unwrap()]), &["nofile.txt"]);
    // No model anywhere: says how to give one.
    let o = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(["generate", "-p", "x"])
        .env("QUILL_MODEL", d.join("missing-default.gguf"))
        .output()
        .unwrap();
    assert_fails_with(&o, &["missing-default.gguf"]);
}

/// The default model's first impression: the prompts a newcomer tries continue with words, not
/// with runs of spaces (its training text once had indented verse after every "NAME:").
#[test]
fn the_default_model_answers_a_newcomers_prompts_with_words() {
    for prompt in ["ROMEO:", "To be, or not to be", "The king", "Once upon a time"] {
        for seed in ["1", "2", "3"] {
            let o = quill(&["generate", "-p", prompt, "-n", "24", "--seed", seed, "--json"]);
            assert!(o.status.success(), "{}", stderr(&o));
            let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let text = j["text"].as_str().unwrap();
            let words = text.split_whitespace().filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2);
            assert!(words.count() >= 5, "{prompt:?} seed {seed}: {text:?}");
            assert!(!text.contains("   "), "{prompt:?} seed {seed}: a run of spaces in {text:?}");
        }
    }
}

#[test]
fn without_a_model_the_shipped_default_model_runs() {
    let o = quill(&["generate", "-p", "ROMEO:", "-n", "12", "--seed", "1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let n = j["ids"].as_array().unwrap().len();
    assert!(n == 12 || (j["stop"] == "eos" && n < 12), "{j}");
}

#[test]
fn a_batch_file_runs_every_prompt_and_writes_json_lines_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_gguf(dir.path(), "q8_0");
    let m = m.to_str().unwrap();
    let file = dir.path().join("prompts.txt");
    std::fs::write(
        &file,
        "To be, or not to be\nShall I\n\n{\"prompt\": [\"Rough winds\", \"O\"], \"n\": 2, \"max_tokens\": 5, \"seed\": 3, \"temperature\": 0.9}\n",
    )
    .unwrap();
    let o =
        quill(&["generate", "-m", m, "--batch", file.to_str().unwrap(), "-n", "12", "--temp", "0", "--parallel", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out: Vec<serde_json::Value> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(out.len(), 6);
    let key: Vec<(u64, u64, u64)> = out
        .iter()
        .map(|v| (v["line"].as_u64().unwrap(), v["prompt_index"].as_u64().unwrap(), v["index"].as_u64().unwrap()))
        .collect();
    assert_eq!(key, [(1, 0, 0), (2, 0, 0), (4, 0, 0), (4, 0, 1), (4, 1, 0), (4, 1, 1)]);
    // A plain line is what `quill generate` gives for it with the same flags (greedy here).
    for (v, prompt) in out.iter().zip(["To be, or not to be", "Shall I"]) {
        let alone = gen_json(&["-m", m, "-p", prompt, "-n", "12", "--temp", "0"]);
        assert_eq!(v["ids"], alone["ids"], "{prompt}");
        assert_eq!(v["text"], alone["text"]);
        assert_eq!(v["prompt"], prompt);
    }
    // The JSON line's settings: 5 tokens, completion c seeded 3 + c.
    assert!(out[2..].iter().all(|v| v["ids"].as_array().unwrap().len() <= 5));
    assert_eq!((out[2]["seed"].as_u64(), out[3]["seed"].as_u64()), (Some(3), Some(4)));

    // Every line is checked first; errors name the file, the line and the field.
    std::fs::write(&file, "fine\n{\"prompt\": \"x\", \"top_p\": 7}\n").unwrap();
    let o = quill(&["generate", "-m", m, "--batch", file.to_str().unwrap()]);
    assert_fails_with(&o, &["prompts.txt:2", "top_p must be in (0, 1]"]);
    std::fs::write(&file, "{not json\n").unwrap();
    assert_fails_with(
        &quill(&["generate", "-m", m, "--batch", file.to_str().unwrap()]),
        &["prompts.txt:1", "not a JSON object"],
    );
    std::fs::write(&file, "\n\n").unwrap();
    assert_fails_with(&quill(&["generate", "-m", m, "--batch", file.to_str().unwrap()]), &["no prompts"]);
    std::fs::write(&file, "fine\n{\"prompt\": []}\n").unwrap();
    assert_fails_with(
        &quill(&["generate", "-m", m, "--batch", file.to_str().unwrap()]),
        &["prompts.txt:2", "empty list"],
    );
    std::fs::write(&file, "fine\n").unwrap();
    assert_fails_with(
        &quill(&["generate", "-m", m, "--batch", file.to_str().unwrap(), "--parallel", "0"]),
        &["--parallel must be at least 1"],
    );
}
