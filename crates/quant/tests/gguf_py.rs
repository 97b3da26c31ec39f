//! Byte-for-byte agreement with the `gguf` Python package's `gguf.quants` (the fixtures under
//! tests/fixtures/gguf_py/ come from tests/fixtures/make_fixtures.py): our quantizers write the
//! package's bytes, and our dequantizers return the package's f32 bits, for every type the
//! package implements.

use std::path::PathBuf;

use quill_quant::{dequantize, quantize, row_bytes, GgmlType};

const N: usize = 256;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_py").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

/// Compares f32 bit patterns, reporting the first difference with its row and column.
fn assert_same_bits(ours: &[f32], theirs: &[f32], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "{what}: element {i} (row {}, col {}): {a:e} vs {b:e}", i / N, i % N);
    }
}

fn assert_same_bytes(ours: &[u8], theirs: &[u8], ty: GgmlType, what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    let row = row_bytes(ty, N).unwrap();
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(a, b, "{what}: byte {i} (row {}, byte {} of the row)", i / row, i % row);
    }
}

const QUANTIZED: &[(GgmlType, &str)] = &[
    (GgmlType::BF16, "bf16"),
    (GgmlType::Q4_0, "q4_0"),
    (GgmlType::Q4_1, "q4_1"),
    (GgmlType::Q5_0, "q5_0"),
    (GgmlType::Q5_1, "q5_1"),
    (GgmlType::Q8_0, "q8_0"),
];

#[test]
fn quantize_matches_the_gguf_package() {
    let input = f32s(&fixture("input.f32"));
    assert_eq!(input.len() % N, 0);
    for &(ty, name) in QUANTIZED {
        let mut ours = vec![0u8; row_bytes(ty, N).unwrap() * (input.len() / N)];
        quantize(ty, &input, N, &mut ours).unwrap();
        assert_same_bytes(&ours, &fixture(&format!("{name}.quant")), ty, name);
    }
}

#[test]
fn bf16_non_finite_inputs_match_the_gguf_package() {
    let input = f32s(&fixture("input_nonfinite.f32"));
    let mut ours = vec![0u8; input.len() * 2];
    quantize(GgmlType::BF16, &input, N, &mut ours).unwrap();
    assert_same_bytes(&ours, &fixture("bf16_nonfinite.quant"), GgmlType::BF16, "bf16 non-finite");
    let mut back = vec![0.0f32; input.len()];
    dequantize(GgmlType::BF16, &ours, &mut back).unwrap();
    assert_same_bits(&back, &f32s(&fixture("bf16_nonfinite.dequant.f32")), "bf16 non-finite dequant");
}

#[test]
fn dequantize_matches_the_gguf_package() {
    for &(ty, name) in QUANTIZED {
        let q = fixture(&format!("{name}.quant"));
        let theirs = f32s(&fixture(&format!("{name}.dequant.f32")));
        let mut ours = vec![0.0f32; theirs.len()];
        dequantize(ty, &q, &mut ours).unwrap();
        assert_same_bits(&ours, &theirs, name);
    }
}

#[test]
fn dequantize_random_blocks_matches_the_gguf_package() {
    let types = [
        (GgmlType::Q4_0, "q4_0"),
        (GgmlType::Q4_1, "q4_1"),
        (GgmlType::Q5_0, "q5_0"),
        (GgmlType::Q5_1, "q5_1"),
        (GgmlType::Q8_0, "q8_0"),
        (GgmlType::Q4_K, "q4_k"),
        (GgmlType::Q5_K, "q5_k"),
        (GgmlType::Q6_K, "q6_k"),
    ];
    for (ty, name) in types {
        let blocks = fixture(&format!("{name}.random"));
        let theirs = f32s(&fixture(&format!("{name}.random.dequant.f32")));
        assert_eq!(blocks.len() / ty.block_bytes() as usize * ty.block_size() as usize, theirs.len(), "{name}");
        let mut ours = vec![0.0f32; theirs.len()];
        dequantize(ty, &blocks, &mut ours).unwrap();
        assert_same_bits(&ours, &theirs, &format!("{name} random blocks"));
    }
}
