//! Agreement with llama.cpp's `llama-quantize`: tests/fixtures/make_llama_fixtures.sh quantized
//! two tiny GPT-2 models (weights from a deterministic generator) to every file type Quill
//! offers and recorded each output tensor's type and CRC-32. Here the same weights are
//! regenerated, our policy must pick the same type for every tensor, and our quantizers must
//! write the same bytes. The same script also ran `llama-quantize --dry-run` on all-zero GPT-2
//! 124M and 1558M models (real shapes): our policy must give every one of their tensors the
//! type llama-quantize chose.

use std::collections::HashMap;
use std::path::PathBuf;

use quill_quant::{quantize, row_bytes, FileType, GgmlType, QuantPolicy};
use serde_json::Value;

/// FNV-1a, 64-bit.
fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The generator of llama_fixtures.py (see its docstring), element for element.
fn generate(name: &str, dims: &[u64]) -> Vec<f32> {
    let n: u64 = dims.iter().product();
    let seed = fnv1a64(name);
    let one_d = dims.len() == 1;
    let amp: f32 = if one_d { 0.1 } else { 0.02 };
    const M: u64 = (1 << 21) - 1;
    (0..n)
        .map(|i| {
            let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let s = (z & M) as i64 + ((z >> 21) & M) as i64 + ((z >> 42) & M) as i64 - 3 * (1 << 20);
            let v = s as f32 * 2f32.powi(-20) * amp;
            if one_d {
                return if name.ends_with("_norm.weight") { 1.0 + v } else { v };
            }
            let (row, col) = ((i / dims[0]) % 16, i % dims[0]);
            match row {
                0 => 0.0,
                1 => amp * 0.5,
                2 => v * 2f32.powi(-80),
                3 => v * 2f32.powi(10),
                4 if col % 37 == 0 => v * 16.0,
                5 => v.abs(),
                6 => -v.abs() - amp * 0.25,
                7 if col % 3 != 0 => 0.0,
                _ => v,
            }
        })
        .collect()
}

/// CRC-32 (IEEE, reflected), as Python's zlib.crc32.
fn crc32(bytes: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|mut c| {
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            c
        })
        .collect();
    let mut crc = !0u32;
    for &b in bytes {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

fn check_model(file: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let n_layer = fixture["n_layer"].as_u64().unwrap() as usize;
    let file_types = fixture["file_types"].as_object().unwrap();
    assert_eq!(file_types.len(), FileType::LLAMA_QUANTIZE.len(), "{file}: every file type is covered");

    let mut inputs: HashMap<String, Vec<f32>> = HashMap::new();
    let mut crcs: HashMap<(String, GgmlType), (usize, u32)> = HashMap::new();
    let mut checked = 0;
    for (ft_name, entry) in file_types {
        let ft = FileType::from_name(ft_name).unwrap();
        assert_eq!(entry["file_type"].as_u64().unwrap(), u64::from(ft.ftype_id()), "{file} {ft}: general.file_type");
        // GPT-2 has no output.weight: token_embd is the output projection.
        let policy = QuantPolicy::new(ft, n_layer, false);
        for t in entry["tensors"].as_array().unwrap() {
            let name = t["name"].as_str().unwrap().to_string();
            let dims: Vec<u64> = t["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
            let want_ty = GgmlType::from_name(t["type"].as_str().unwrap()).unwrap();
            let ty = policy.tensor_type(&name, &dims, GgmlType::F32);
            assert_eq!(ty, want_ty, "{file} {ft}: type of {name} {dims:?}");

            let x = inputs.entry(name.clone()).or_insert_with(|| generate(&name, &dims));
            let (n_bytes, crc) = *crcs.entry((name.clone(), ty)).or_insert_with(|| {
                let n = dims[0] as usize;
                let mut out = vec![0u8; row_bytes(ty, n).unwrap() * (x.len() / n)];
                quantize(ty, x, n, &mut out).unwrap();
                (out.len(), crc32(&out))
            });
            assert_eq!(n_bytes as u64, t["bytes"].as_u64().unwrap(), "{file} {ft}: size of {name} as {ty}");
            assert_eq!(u64::from(crc), t["crc32"].as_u64().unwrap(), "{file} {ft}: bytes of {name} as {ty}");
            checked += 1;
        }
    }
    assert!(checked > 100, "{file}: only {checked} tensors checked");
}

#[test]
fn crc32_matches_zlib() {
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
}

/// n_embd 256, 8 layers: every row is a whole number of 256-element blocks.
#[test]
fn small_model_matches_llama_quantize() {
    check_model("small.json");
}

/// n_embd 320 (like GPT-2 XL's 1600, not a multiple of 256): K-quant fallbacks.
#[test]
fn wide_model_matches_llama_quantize() {
    check_model("wide.json");
}

/// Our policy against `llama-quantize --dry-run` at real GPT-2 sizes, every tensor and file type.
fn check_policy(file: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let dims = fixture["dims"].as_object().unwrap();
    let n_layer = dims.keys().filter(|k| k.ends_with(".attn_qkv.weight")).count();
    let file_types = fixture["file_types"].as_object().unwrap();
    assert_eq!(file_types.len(), FileType::LLAMA_QUANTIZE.len(), "{file}: every file type is covered");
    let mut checked = 0;
    for (ft_name, types) in file_types {
        let ft = FileType::from_name(ft_name).unwrap();
        let policy = QuantPolicy::new(ft, n_layer, false);
        let types = types.as_object().unwrap();
        assert_eq!(types.len(), dims.len(), "{file} {ft}");
        for (name, ty) in types {
            let d: Vec<u64> = dims[name].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            let want = GgmlType::from_name(ty.as_str().unwrap()).unwrap();
            assert_eq!(policy.tensor_type(name, &d, GgmlType::F32), want, "{file} {ft}: {name} {d:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, dims.len() * FileType::LLAMA_QUANTIZE.len());
}

/// GPT-2 124M: n_embd 768, 12 layers, 50257 tokens.
#[test]
fn policy_124m_matches_llama_quantize() {
    check_policy("policy_124m.json");
}

/// GPT-2 XL 1558M: n_embd 1600 (not a multiple of 256), 48 layers.
#[test]
fn policy_1558m_matches_llama_quantize() {
    check_policy("policy_1558m.json");
}
