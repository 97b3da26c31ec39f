//! `quill quantize` on a tiny Hugging Face checkpoint (tests/fixtures/tiny-gpt2, made with
//! transformers): every type, the policy, error bounds, and bad input.

mod common;

use common::*;
use gguf_file::{GgmlType, GgufFile};

const TYPES: [&str; 11] = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k"];

/// Largest relative RMS error allowed per tensor, by storage type: about twice what each
/// format's step size gives on Gaussian weights (F16 keeps 11 bits, BF16 8, Q8_0 ~8 bits per
/// block of 32, Q6_K ~6, Q5_* ~5, Q4_* ~4 with a scale per block).
fn bound(ty: GgmlType) -> f64 {
    match ty {
        GgmlType::F32 => 0.0,
        GgmlType::F16 => 1e-3,
        GgmlType::BF16 => 8e-3,
        GgmlType::Q8_0 => 1e-2,
        GgmlType::Q6_K => 3e-2,
        GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5_K => 6e-2,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K => 1.2e-1,
        t => panic!("unexpected type {t}"),
    }
}

fn values(f: &GgufFile, name: &str) -> Vec<f32> {
    let t = f.tensor(name).unwrap();
    let mut out = vec![0.0; t.info.n_elements as usize];
    quill_quant::dequantize(t.ty(), t.data, &mut out).unwrap();
    out
}

#[test]
fn every_type_reads_back_within_its_error_bound() {
    let dir = tempfile::tempdir().unwrap();
    let reference = GgufFile::open(tiny_gguf(dir.path(), "f32")).unwrap();
    for ty in TYPES {
        let path = tiny_gguf(dir.path(), ty);
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.metadata().get_str("general.architecture").unwrap(), "gpt2");
        assert_eq!(f.metadata().get_strings("tokenizer.ggml.tokens").unwrap().len(), 320);
        assert_eq!(f.tensor_infos().len(), reference.tensor_infos().len(), "{ty}");
        let mut quantized = 0;
        for t in f.tensor_infos() {
            let (got, want) = (values(&f, &t.name), values(&reference, &t.name));
            let err: f64 = got.iter().zip(&want).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt();
            let norm: f64 = want.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
            assert!(err <= bound(t.ty) * norm, "{ty}: {} ({}) relative error {}", t.name, t.ty, err / norm);
            if t.dims.len() == 1 || t.name == "position_embd.weight" {
                assert_eq!(t.ty, GgmlType::F32, "{ty}: {} must stay f32", t.name);
            }
            quantized += usize::from(t.ty.is_quantized());
        }
        assert_eq!(quantized > 0, !matches!(ty, "f32" | "f16" | "bf16"), "{ty}");
    }
}

#[test]
fn k_quant_policy_mixes_types_and_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let f = GgufFile::open(tiny_gguf(dir.path(), "q4_k_m")).unwrap();
    let ty = |n: &str| f.tensor(n).unwrap().ty();
    // ffn_down rows (256) take K-quants; 64-wide rows fall back to legacy types.
    assert!(matches!(ty("blk.0.ffn_down.weight"), GgmlType::Q4_K | GgmlType::Q6_K));
    assert_eq!(ty("blk.0.ffn_up.weight"), GgmlType::Q5_0);
    assert_eq!(ty("token_embd.weight"), GgmlType::Q8_0, "Q6_K for the tied output falls back to Q8_0");
    assert_eq!(f.metadata().get_u64("general.file_type").unwrap(), 15);
    assert_eq!(f.metadata().get_u64("general.quantization_version").unwrap(), 2);
}

#[test]
fn tensor_type_override_and_progress_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.gguf");
    let o = quill(&[
        "quantize",
        tiny_hf().to_str().unwrap(),
        out.to_str().unwrap(),
        "--type",
        "Q4_0",
        "--tensor-type",
        "ffn_up=q8_0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("blk.1.ffn_up.weight") && err.contains("q8_0"), "{err}");
    assert!(err.contains("bits per weight"), "{err}");
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.tensor("blk.1.ffn_up.weight").unwrap().ty(), GgmlType::Q8_0);
    assert_eq!(f.tensor("blk.1.ffn_down.weight").unwrap().ty(), GgmlType::Q4_0);
}

#[test]
fn requantizing_a_gguf_warns_and_works() {
    let dir = tempfile::tempdir().unwrap();
    let q8 = tiny_gguf(dir.path(), "q8_0");
    let out = dir.path().join("re.gguf");
    let o = quill(&["quantize", q8.to_str().unwrap(), out.to_str().unwrap(), "-t", "q4_0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: ") && stderr(&o).contains("requantizing"), "{}", stderr(&o));
    GgufFile::open(&out).unwrap();
    // From f32 GGUF: no warning, same bytes as from the checkpoint.
    let f32 = tiny_gguf(dir.path(), "f32");
    let out2 = dir.path().join("from-f32.gguf");
    let o = quill(&["quantize", f32.to_str().unwrap(), out2.to_str().unwrap(), "-t", "q4_0"]);
    assert!(o.status.success() && !stderr(&o).contains("warning"), "{}", stderr(&o));
    let (a, b) = (GgufFile::open(&out2).unwrap(), GgufFile::open(tiny_gguf(dir.path(), "q4_0")).unwrap());
    for t in a.tensors() {
        assert_eq!(t.data, b.tensor(t.name()).unwrap().data, "{}", t.name());
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out.gguf");
    let out_s = out.to_str().unwrap();
    let hf = tiny_hf();
    let hf_s = hf.to_str().unwrap();

    assert_fails_with(&quill(&["quantize", d.join("nope").to_str().unwrap(), out_s, "-t", "q4_0"]), &["nope"]);
    let o = quill(&["quantize", hf_s, out_s, "-t", "q3_k"]);
    assert_eq!(o.status.code(), Some(2), "clap usage error");
    assert!(stderr(&o).contains("unknown file type 'q3_k'"), "{}", stderr(&o));

    // Not GPT-2.
    let llama = d.join("llama");
    std::fs::create_dir(&llama).unwrap();
    std::fs::write(llama.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    assert_fails_with(&quill(&["quantize", llama.to_str().unwrap(), out_s, "-t", "q4_0"]), &["config.json", "llama"]);

    // A checkpoint with a NaN weight names the tensor.
    let nan = d.join("nan");
    std::fs::create_dir(&nan).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(hf.join(f), nan.join(f)).unwrap();
    }
    let mut st = std::fs::read(hf.join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&st[8..8 + header_len]).unwrap();
    let off = header["transformer.h.1.mlp.c_fc.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
    st[8 + header_len + off + 40..8 + header_len + off + 44].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(nan.join("model.safetensors"), st).unwrap();
    assert_fails_with(
        &quill(&["quantize", nan.to_str().unwrap(), out_s, "-t", "q4_0"]),
        &["transformer.h.1.mlp.c_fc.weight", "NaN"],
    );
    assert!(!out.exists(), "no output after a failure");

    // Shape mismatch between config and weights.
    let bad = d.join("badshape");
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(hf.join("tokenizer.json"), bad.join("tokenizer.json")).unwrap();
    std::fs::copy(hf.join("model.safetensors"), bad.join("model.safetensors")).unwrap();
    let cfg = std::fs::read_to_string(hf.join("config.json")).unwrap().replace("\"n_inner\": 256", "\"n_inner\": 128");
    std::fs::write(bad.join("config.json"), cfg).unwrap();
    assert_fails_with(&quill(&["quantize", bad.to_str().unwrap(), out_s, "-t", "q4_0"]), &["mlp.c_fc.weight", "shape"]);

    // Refuses to overwrite its input; an existing output survives a failed run.
    let f32 = tiny_gguf(d, "f32");
    let before = std::fs::read(&f32).unwrap();
    assert_fails_with(&quill(&["quantize", f32.to_str().unwrap(), f32.to_str().unwrap(), "-t", "q4_0"]), &["refusing"]);
    assert_eq!(std::fs::read(&f32).unwrap(), before);
    assert_fails_with(&quill(&["quantize", nan.to_str().unwrap(), f32.to_str().unwrap(), "-t", "q4_0"]), &["NaN"]);
    assert_eq!(std::fs::read(&f32).unwrap(), before, "existing output untouched");
    let stray: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("quill-tmp"))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}

#[test]
fn unwritable_output_directory_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // A parent that is a file: fails for every user, root included.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    let o = quill(&["quantize", tiny_hf().to_str().unwrap(), file.join("x.gguf").to_str().unwrap(), "-t", "q8_0"]);
    assert_fails_with(&o, &["x.gguf"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        // Root ignores directory permissions; the check is meaningful for other users only.
        if std::fs::write(ro.join("probe"), b"").is_err() {
            let o =
                quill(&["quantize", tiny_hf().to_str().unwrap(), ro.join("x.gguf").to_str().unwrap(), "-t", "q8_0"]);
            assert_fails_with(&o, &["x.gguf"]);
        }
    }
}

#[cfg(unix)]
#[test]
fn file_size_limit_fails_cleanly_and_keeps_the_old_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.gguf");
    std::fs::write(&out, b"the previous model").unwrap();
    // 64 KiB limit (bash counts 1024-byte blocks); the f32 output is ~0.5 MB.
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg("ulimit -f 64 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_quill"))
        .args(["quantize", tiny_hf().to_str().unwrap(), out.to_str().unwrap(), "-t", "f32"])
        .output()
        .unwrap();
    assert_fails_with(&o, &["out.gguf", "too large"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous model");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 1, "temporary file removed: {left:?}");
}

#[cfg(unix)]
#[test]
fn sigkill_at_any_moment_leaves_the_old_output_and_a_rerun_cleans_up() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    // A ~51 MB f32 conversion takes long enough to be killed mid-write.
    let model = golden_gguf(dir.path(), "k256", quill_quant::FileType::F32);
    let out = dir.path().join("out.gguf");
    for delay_ms in [5u64, 40, 120, 300] {
        std::fs::write(&out, b"the previous model").unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_quill"))
            .args(["quantize", model.to_str().unwrap(), out.to_str().unwrap(), "-t", "f16"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let content = std::fs::read(&out).unwrap();
        if status.success() || content != b"the previous model" {
            // Finished before the kill (or renamed its whole output into place and was killed
            // before it exited): then the output is whole.
            GgufFile::open(&out).unwrap_or_else(|e| panic!("killed after {delay_ms} ms: {e}"));
        }
    }
    let o = quill(&["quantize", model.to_str().unwrap(), out.to_str().unwrap(), "-t", "f16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    GgufFile::open(&out).unwrap();
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("quill-tmp"))
        .map(|e| e.file_name())
        .collect();
    assert!(stray.is_empty(), "temporary files of killed runs left after a rerun: {stray:?}");
}
