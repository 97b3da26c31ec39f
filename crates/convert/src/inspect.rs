//! A GGUF file's header, metadata and tensor table as one JSON document: what
//! `quill inspect --json` prints and the Python package's `quill.inspect` returns.

use gguf_file::{Array, GgufFile, Value};
use serde_json::{json, Map, Value as Json};

fn array_json(a: &Array) -> Json {
    match a {
        Array::U8(v) => json!(v),
        Array::I8(v) => json!(v),
        Array::U16(v) => json!(v),
        Array::I16(v) => json!(v),
        Array::U32(v) => json!(v),
        Array::I32(v) => json!(v),
        Array::F32(v) => json!(v),
        Array::Bool(v) => json!(v),
        Array::String(v) => json!(v),
        Array::Array(v) => Json::Array(v.iter().map(array_json).collect()),
        Array::U64(v) => json!(v),
        Array::I64(v) => json!(v),
        Array::F64(v) => json!(v),
    }
}

/// One metadata value as JSON (arrays as lists, nested arrays as nested lists).
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::Array(a) => array_json(a),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
    }
}

/// `{version, alignment, data_offset, file_size, metadata: {key: value}, tensors: [{name,
/// type, shape, n_elements, bytes, offset}]}`.
pub fn inspect_json(file: &GgufFile) -> Json {
    let mut metadata = Map::new();
    for (key, value) in file.metadata().iter() {
        metadata.insert(key.to_owned(), value_json(value));
    }
    let tensors: Vec<Json> = file
        .tensor_infos()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ty.name(),
                "shape": t.dims,
                "n_elements": t.n_elements,
                "bytes": t.n_bytes,
                "offset": t.offset,
            })
        })
        .collect();
    json!({
        "version": file.version(),
        "alignment": file.alignment(),
        "data_offset": file.data_offset(),
        "file_size": file.file_len(),
        "metadata": metadata,
        "tensors": tensors,
    })
}
