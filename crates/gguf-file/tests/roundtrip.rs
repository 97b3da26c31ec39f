//! Round trip: whatever the writer writes, the reader reads back equal.

use gguf_file::{Array, GgmlType, GgufBuilder, GgufFile, Value};
use proptest::prelude::*;

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        // NaN != NaN would break the equality check; finite and infinite values are enough.
        any::<f32>().prop_filter("not NaN", |x| !x.is_nan()).prop_map(Value::F32),
        any::<f64>().prop_filter("not NaN", |x| !x.is_nan()).prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        ".{0,40}".prop_map(Value::String),
    ]
}

fn flat_array() -> impl Strategy<Value = Array> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..50).prop_map(Array::U8),
        prop::collection::vec(any::<i16>(), 0..50).prop_map(Array::I16),
        prop::collection::vec(any::<u32>(), 0..50).prop_map(Array::U32),
        prop::collection::vec(any::<i32>(), 0..50).prop_map(Array::I32),
        prop::collection::vec(any::<i64>(), 0..20).prop_map(Array::I64),
        prop::collection::vec(-1e30f32..1e30, 0..50).prop_map(Array::F32),
        prop::collection::vec(-1e300f64..1e300, 0..20).prop_map(Array::F64),
        prop::collection::vec(any::<bool>(), 0..50).prop_map(Array::Bool),
        prop::collection::vec(".{0,12}", 0..30).prop_map(Array::String),
    ]
}

fn array() -> impl Strategy<Value = Array> {
    flat_array().prop_recursive(3, 40, 5, |inner| prop::collection::vec(inner, 0..5).prop_map(Array::Array))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![3 => scalar(), 1 => array().prop_map(Value::Array)]
}

const TYPES: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::I32,
];

#[derive(Debug, Clone)]
struct TensorCase {
    ty: GgmlType,
    dims: Vec<u64>,
    seed: u8,
}

fn tensor() -> impl Strategy<Value = TensorCase> {
    (0..TYPES.len(), prop::collection::vec(1u64..4, 0..4), 1u64..3, any::<u8>()).prop_map(
        |(t, mut rest, blocks, seed)| {
            let ty = TYPES[t];
            let mut dims = vec![blocks * ty.block_size()];
            dims.append(&mut rest);
            TensorCase { ty, dims, seed }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn write_then_read_is_identity(
        kvs in prop::collection::vec(("[a-z]{1,8}(\\.[a-z_]{1,8}){0,2}", value()), 0..12),
        tensors in prop::collection::vec(tensor(), 0..6),
        alignment in prop::sample::select(vec![1u32, 8, 32, 64, 4096]),
    ) {
        let mut b = GgufBuilder::new();
        b.set("general.alignment", alignment).unwrap();
        for (k, v) in &kvs {
            if k != "general.alignment" {
                b.set(k.clone(), v.clone()).unwrap();
            }
        }
        let mut datas = Vec::new();
        for (i, t) in tensors.iter().enumerate() {
            let n = b.add_tensor(format!("t{i}.weight"), t.ty, &t.dims).unwrap().n_bytes;
            datas.push((0..n).map(|j| (j as u8).wrapping_mul(31).wrapping_add(t.seed)).collect::<Vec<u8>>());
        }
        let expected_meta = b.metadata().clone();
        let mut w = b.write_to(Vec::new()).unwrap();
        for d in &datas {
            w.write_tensor(d).unwrap();
        }
        let bytes = w.finish().unwrap();
        let f = GgufFile::from_bytes(&bytes).unwrap();
        prop_assert_eq!(f.version(), 3);
        prop_assert_eq!(f.alignment(), u64::from(alignment));
        prop_assert_eq!(f.metadata(), &expected_meta);
        prop_assert_eq!(f.tensor_infos().len(), tensors.len());
        for (i, (t, d)) in tensors.iter().zip(&datas).enumerate() {
            let v = f.tensor(&format!("t{i}.weight")).unwrap();
            prop_assert_eq!(v.ty(), t.ty);
            prop_assert_eq!(v.dims(), &t.dims[..]);
            prop_assert_eq!(v.data, &d[..]);
            prop_assert_eq!((f.data_offset() + v.info.offset) % u64::from(alignment), 0);
        }
    }
}

#[test]
fn writer_refuses_wrong_sizes_and_missing_data() {
    let mut b = GgufBuilder::new();
    b.add_tensor("a", GgmlType::F32, &[4]).unwrap();
    b.add_tensor("b", GgmlType::Q8_0, &[32, 2]).unwrap();
    assert!(b.add_tensor("a", GgmlType::F32, &[4]).is_err(), "duplicate name");
    assert!(b.add_tensor("c", GgmlType::Q4_0, &[33]).is_err(), "partial block");
    assert!(b.add_tensor("x".repeat(64), GgmlType::F32, &[1]).is_err(), "name too long");
    assert!(b.set("general.alignment", 3u32).is_err());
    assert!(b.set("general.alignment", 32u64).is_err());
    let mut w = b.write_to(Vec::new()).unwrap();
    assert!(w.write_tensor(&[0; 15]).is_err(), "short tensor");
    let mut w2 = GgufBuilder::new();
    w2.add_tensor("a", GgmlType::F32, &[4]).unwrap();
    let mut w2 = w2.write_to(Vec::new()).unwrap();
    w2.write_tensor(&[0; 16]).unwrap();
    assert!(w2.write_tensor(&[0; 4]).is_err(), "no tensor left");
    w.write_chunk(&[0; 16]).unwrap_err(); // 15 already written: 31 > 16
    let mut b = GgufBuilder::new();
    b.add_tensor("a", GgmlType::F32, &[4]).unwrap();
    let w = b.write_to(Vec::new()).unwrap();
    let err = w.finish().unwrap_err().to_string();
    assert!(err.contains("'a'"), "{err}");
}

#[test]
fn atomic_file_write_and_open_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    let mut b = GgufBuilder::new();
    b.set("general.architecture", "gpt2").unwrap();
    b.add_tensor("w", GgmlType::F16, &[8, 2]).unwrap();
    let mut w = b.create(&path).unwrap();
    assert!(!path.exists(), "nothing at the destination before commit");
    w.write_tensor(&[7u8; 32]).unwrap();
    w.commit().unwrap();
    for mode in [gguf_file::LoadMode::Mmap, gguf_file::LoadMode::Read] {
        let f = GgufFile::open_with(&path, mode).unwrap();
        assert_eq!(f.metadata().get_str("general.architecture").unwrap(), "gpt2");
        assert_eq!(f.tensor("w").unwrap().data, &[7u8; 32]);
        assert_eq!(f.is_mapped(), mode == gguf_file::LoadMode::Mmap);
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
