//! Failures a user meets from outside the arguments: a bad `QUILL_KERNEL`, a missing model, a
//! model file truncated while mapped, and the leftovers of a killed `quantize`. Each ends with
//! one clear line and a non-zero exit, never a panic or a silent death.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn quill_with_kernel(value: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(args)
        .env("QUILL_KERNEL", value)
        .env_remove("QUILL_MODEL")
        .output()
        .expect("quill runs")
}

#[test]
fn a_bad_quill_kernel_is_one_line_and_exit_2_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_gguf(dir.path(), "q8_0");
    let m = m.to_str().unwrap();
    // Not a backend; another architecture's backend (never supported here).
    let foreign = if cfg!(target_arch = "aarch64") { "avx2" } else { "neon" };
    for (value, needle) in [("sse9", "is not a backend"), (foreign, "this CPU does not have")] {
        let o = quill_with_kernel(value, &["generate", "-m", m, "-p", "Hello", "-n", "4"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "QUILL_KERNEL={value}: {err}");
        assert!(o.stdout.is_empty(), "nothing printed before the error: {:?}", stdout(&o));
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("quill: error: QUILL_KERNEL="), "{err}");
        assert!(err.contains(value) && err.contains(needle) && err.contains("scalar"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A supported backend runs.
    let o = quill_with_kernel("scalar", &["generate", "-m", m, "-p", "Hello", "-n", "4", "--seed", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_missing_model_names_the_os_error_once() {
    let o = quill(&["generate", "-m", "/nonexistent.gguf", "-p", "Hello"]);
    assert_fails_with(&o, &["/nonexistent.gguf"]);
    let err = stderr(&o);
    let os_error = std::fs::metadata("/nonexistent.gguf").unwrap_err().to_string();
    assert_eq!(err.matches(&os_error).count(), 1, "the OS error once: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// Waits until process `pid` has `path` mapped (it has loaded the model).
#[cfg(target_os = "linux")]
fn wait_until_mapped(pid: u32, path: &Path) {
    let start = Instant::now();
    let needle = path.to_str().unwrap();
    while start.elapsed() < Duration::from_secs(60) {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        if maps.contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{needle} was never mapped");
}

#[test]
#[cfg(target_os = "linux")]
fn a_model_truncated_while_mapped_is_named_not_a_silent_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let m = tiny_gguf(dir.path(), "f32");
    // A long benchmark: it reads every weight for each token, so it meets the vanished pages.
    let mut child = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(["bench", "-m", m.to_str().unwrap(), "-p", "0", "-n", "16", "-r", "1000000", "-t", "1"])
        .env_remove("QUILL_MODEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_mapped(child.id(), &m);
    std::thread::sleep(Duration::from_millis(200));
    // Overwritten in place, as `cp other.gguf model.gguf` does: truncated first.
    std::fs::OpenOptions::new().write(true).truncate(true).open(&m).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("still running 60 s after its model was truncated");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(status.code(), Some(1), "exit 1, not death by SIGBUS ({status}): {err}");
    assert!(err.contains(&format!("quill: error: {}: ", m.display())), "names the file: {err}");
    assert!(err.contains("truncated or overwritten") && err.contains("renaming"), "{err}");
}

/// `quill quantize` the default model to F32 in `dir`, killed with SIGKILL while it writes; the
/// temporary file it leaves behind.
#[cfg(target_os = "linux")]
fn killed_quantize(dir: &Path) -> Option<std::path::PathBuf> {
    let input = repo().join("models/quill-shakespeare.gguf");
    let out = dir.join("big.gguf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(["quantize", input.to_str().unwrap(), out.to_str().unwrap(), "--type", "f32", "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let tmp = loop {
        let tmp = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".quill-tmp"));
        if tmp.is_some() || child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(60) {
            break tmp;
        }
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    tmp.filter(|t| t.exists() && !out.exists())
}

#[test]
#[cfg(target_os = "linux")]
fn a_killed_quantize_leaves_a_temporary_file_the_next_run_removes() {
    let dir = tempfile::tempdir().unwrap();
    // The kill must land while the file is written: a fast machine may finish first, so try
    // a few times.
    let tmp = (0..5).find_map(|_| killed_quantize(dir.path())).expect("a quantize killed while writing");
    // The next run into the same folder, to another file, removes it: its pid is dead.
    let tiny = tiny_gguf(dir.path(), "q8_0");
    assert!(!tmp.exists(), "{} was not removed by the next quantize", tmp.display());
    assert!(tiny.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".quill-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
