//! Interop with llama.cpp's `gguf` Python package: read the file it wrote (fixture made by
//! `tests/fixtures/interop.py write`) and check every value; write the same content with our
//! writer for the script's `check` mode to read back (run by hand, see the script).

use std::path::Path;

use gguf_file::{Array, GgmlType, GgufBuilder, GgufFile, Value};
use serde_json::Value as Json;

fn fixture() -> (GgufFile, Json) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let file = GgufFile::open(dir.join("interop.gguf")).expect("fixture opens");
    let spec = serde_json::from_str(&std::fs::read_to_string(dir.join("interop.json")).unwrap()).unwrap();
    (file, spec)
}

/// The JSON spec value as the typed value the script wrote.
fn typed(v: &Json, ty: &str) -> Value {
    match ty {
        "UINT8" => Value::U8(v.as_u64().unwrap() as u8),
        "INT8" => Value::I8(v.as_i64().unwrap() as i8),
        "UINT16" => Value::U16(v.as_u64().unwrap() as u16),
        "INT16" => Value::I16(v.as_i64().unwrap() as i16),
        "UINT32" => Value::U32(v.as_u64().unwrap() as u32),
        "INT32" => Value::I32(v.as_i64().unwrap() as i32),
        "UINT64" => Value::U64(v.as_u64().unwrap()),
        "INT64" => Value::I64(v.as_i64().unwrap()),
        "FLOAT32" => Value::F32(v.as_f64().unwrap() as f32),
        "FLOAT64" => Value::F64(v.as_f64().unwrap()),
        "BOOL" => Value::Bool(v.as_bool().unwrap()),
        "STRING" => Value::String(v.as_str().unwrap().to_owned()),
        other => panic!("unexpected type {other}"),
    }
}

fn typed_array(items: &[Json], ty: &str) -> Array {
    let vals: Vec<Value> = items.iter().map(|v| typed(v, ty)).collect();
    macro_rules! collect {
        ($var:ident) => {
            Array::$var(vals.into_iter().map(|v| if let Value::$var(x) = v { x } else { unreachable!() }).collect())
        };
    }
    match ty {
        "UINT8" => collect!(U8),
        "INT16" => collect!(I16),
        "UINT32" => collect!(U32),
        "INT32" => collect!(I32),
        "UINT64" => collect!(U64),
        "FLOAT32" => collect!(F32),
        "FLOAT64" => collect!(F64),
        "BOOL" => collect!(Bool),
        "STRING" => collect!(String),
        other => panic!("unexpected array type {other}"),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// A tensor of the spec: name, type, dims, bytes.
type TensorSpec = (String, GgmlType, Vec<u64>, Vec<u8>);

/// Every (key, value) and tensor the fixture holds, per the spec.
fn expected(spec: &Json) -> (Vec<(String, Value)>, Vec<TensorSpec>) {
    let mut kvs = vec![("general.architecture".to_owned(), Value::from("interop"))];
    for s in spec["scalars"].as_array().unwrap() {
        kvs.push((s[0].as_str().unwrap().to_owned(), typed(&s[1], s[2].as_str().unwrap())));
    }
    for s in spec["arrays"].as_array().unwrap() {
        let arr = typed_array(s[1].as_array().unwrap(), s[2].as_str().unwrap());
        kvs.push((s[0].as_str().unwrap().to_owned(), Value::Array(arr)));
    }
    let nested = &spec["nested"];
    let inner = nested[1].as_array().unwrap().iter().map(|a| typed_array(a.as_array().unwrap(), "INT32")).collect();
    kvs.push((nested[0].as_str().unwrap().to_owned(), Value::Array(Array::Array(inner))));
    let tensors = spec["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let ty = GgmlType::from_name(t["type"].as_str().unwrap()).unwrap();
            let dims = t["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
            (t["name"].as_str().unwrap().to_owned(), ty, dims, hex(t["hex"].as_str().unwrap()))
        })
        .collect();
    (kvs, tensors)
}

#[test]
fn reads_every_value_written_by_the_gguf_package() {
    let (file, spec) = fixture();
    let (kvs, tensors) = expected(&spec);
    for (key, want) in &kvs {
        let got = file.metadata().get(key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(got, want, "{key}");
    }
    assert_eq!(file.metadata().len(), kvs.len());
    assert_eq!(file.tensor_infos().len(), tensors.len());
    for (name, ty, dims, bytes) in &tensors {
        let t = file.tensor(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(t.ty(), *ty, "{name}");
        assert_eq!(t.dims(), &dims[..], "{name}");
        assert_eq!(t.data, &bytes[..], "{name}");
    }
}

#[test]
fn writes_the_same_content_for_the_script_to_check() {
    let (_, spec) = fixture();
    let (kvs, tensors) = expected(&spec);
    let mut b = GgufBuilder::new();
    for (k, v) in kvs {
        b.set(k, v).unwrap();
    }
    for (name, ty, dims, _) in &tensors {
        b.add_tensor(name.clone(), *ty, dims).unwrap();
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("quill-written.gguf");
    let mut w = b.create(&out).unwrap();
    for (_, _, _, bytes) in &tensors {
        w.write_tensor(bytes).unwrap();
    }
    w.commit().unwrap();
    // Same content, same layout: our writer produces the gguf package's bytes exactly.
    let theirs = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop.gguf")).unwrap();
    assert!(std::fs::read(&out).unwrap() == theirs, "written file differs from the gguf package's");
    // And our own reader agrees with what we wrote.
    let f = GgufFile::open(&out).unwrap();
    for (name, _, _, bytes) in &tensors {
        assert_eq!(f.tensor(name).unwrap().data, &bytes[..]);
    }
}
