//! Shared pieces of the fuzz targets: a micro GPT-2 GGUF that loads and runs, and the
//! mutations a hostile file can apply to it while still passing the container's checks.

use arbitrary::Arbitrary;
use gguf_file::{Array, GgmlType, GgufBuilder, Value};

/// Micro GPT-2: 256 byte tokens, two merges and `<|endoftext|>`; width 32 (one block per row),
/// 2 heads, 1 layer, context 16; a mix of weight types.
pub const N_EMBD: u64 = 32;
pub const N_CTX: u64 = 16;
pub const N_VOCAB: u64 = 259;

/// Metadata of the micro model, in file order.
pub fn metadata() -> Vec<(String, Value)> {
    let table = quill_gpt2::byte_to_char();
    let sp = table[b' ' as usize];
    let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
    tokens.extend([format!("{sp}t"), "he".into(), "<|endoftext|>".into()]);
    let mut types = vec![1i32; 258];
    types.push(3);
    let merges = vec![format!("{sp} t"), "h e".into()];
    vec![
        ("general.architecture".into(), Value::from("gpt2")),
        ("gpt2.context_length".into(), Value::U32(N_CTX as u32)),
        ("gpt2.embedding_length".into(), Value::U32(N_EMBD as u32)),
        ("gpt2.feed_forward_length".into(), Value::U32(4 * N_EMBD as u32)),
        ("gpt2.block_count".into(), Value::U32(1)),
        ("gpt2.attention.head_count".into(), Value::U32(2)),
        ("gpt2.attention.layer_norm_epsilon".into(), Value::F32(1e-5)),
        ("tokenizer.ggml.model".into(), Value::from("gpt2")),
        ("tokenizer.ggml.tokens".into(), Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type".into(), Value::Array(Array::I32(types))),
        ("tokenizer.ggml.merges".into(), Value::Array(Array::String(merges))),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(258)),
    ]
}

/// Tensors of the micro model: name, type, dims.
pub fn tensors() -> Vec<(String, GgmlType, Vec<u64>)> {
    let (e, f, v, c) = (N_EMBD, 4 * N_EMBD, N_VOCAB, N_CTX);
    let mut t = vec![
        ("token_embd.weight".to_owned(), GgmlType::Q8_0, vec![e, v]),
        ("position_embd.weight".to_owned(), GgmlType::F32, vec![e, c]),
        ("output_norm.weight".to_owned(), GgmlType::F32, vec![e]),
        ("output_norm.bias".to_owned(), GgmlType::F32, vec![e]),
    ];
    let b = |n: &str| format!("blk.0.{n}");
    t.extend([
        (b("attn_norm.weight"), GgmlType::F32, vec![e]),
        (b("attn_norm.bias"), GgmlType::F32, vec![e]),
        (b("attn_qkv.weight"), GgmlType::Q4_0, vec![e, 3 * e]),
        (b("attn_qkv.bias"), GgmlType::F32, vec![3 * e]),
        (b("attn_output.weight"), GgmlType::F16, vec![e, e]),
        (b("attn_output.bias"), GgmlType::F32, vec![e]),
        (b("ffn_norm.weight"), GgmlType::F32, vec![e]),
        (b("ffn_norm.bias"), GgmlType::F32, vec![e]),
        (b("ffn_up.weight"), GgmlType::Q5_1, vec![e, f]),
        (b("ffn_up.bias"), GgmlType::F32, vec![f]),
        (b("ffn_down.weight"), GgmlType::Q8_0, vec![f, e]),
        (b("ffn_down.bias"), GgmlType::F32, vec![e]),
    ]);
    t
}

/// One way a file may lie about the model while staying a valid GGUF.
#[derive(Arbitrary, Debug)]
pub enum Mutation {
    /// Replace metadata entry `idx` (mod count) with a value of another shape.
    SetValue { idx: u8, value: FuzzValue },
    RemoveKey { idx: u8 },
    AddKey { name: u8, value: FuzzValue },
    DropTensor { idx: u8 },
    Retype { idx: u8, ty: u8 },
    Reshape { idx: u8, dims: Vec<u16> },
    Rename { idx: u8, to: u8 },
    /// Overwrite tensor bytes (NaN, Inf, huge scales).
    Poke { idx: u8, at: u16, byte: u8 },
}

/// Values a mutation may put in the metadata.
#[derive(Arbitrary, Debug)]
pub enum FuzzValue {
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    Bool(bool),
    Str(String),
    Strings(Vec<String>),
    I32s(Vec<i32>),
}

impl FuzzValue {
    pub fn into_value(self) -> Value {
        match self {
            FuzzValue::U32(v) => Value::U32(v),
            FuzzValue::I32(v) => Value::I32(v),
            FuzzValue::U64(v) => Value::U64(v),
            FuzzValue::F32(v) => Value::F32(v),
            FuzzValue::Bool(v) => Value::Bool(v),
            FuzzValue::Str(v) => Value::String(v),
            FuzzValue::Strings(v) => Value::Array(Array::String(v)),
            FuzzValue::I32s(v) => Value::Array(Array::I32(v)),
        }
    }
}

const KEYS: [&str; 6] = ["gpt2.context_length", "gpt2.block_count", "tokenizer.ggml.bos_token_id", "general.alignment", "gpt2.attention.head_count", "x"];
const NAMES: [&str; 4] = ["output.weight", "blk.1.attn_qkv.weight", "token_embd.weight", "blk.0.ffn_up.bias"];

/// The micro model with `mutations` applied, serialised; `None` if the writer refuses the
/// result (the mutation broke the container itself, which the reader target covers).
pub fn build(mutations: Vec<Mutation>) -> Option<Vec<u8>> {
    let mut meta = metadata();
    let mut tens: Vec<(String, GgmlType, Vec<u64>, Option<(usize, u8)>)> =
        tensors().into_iter().map(|(n, t, d)| (n, t, d, None)).collect();
    let mut pokes = Vec::new();
    for m in mutations.into_iter().take(8) {
        match m {
            Mutation::SetValue { idx, value } if !meta.is_empty() => {
                let i = idx as usize % meta.len();
                meta[i].1 = value.into_value();
            }
            Mutation::RemoveKey { idx } if !meta.is_empty() => {
                meta.remove(idx as usize % meta.len());
            }
            Mutation::AddKey { name, value } => meta.push((KEYS[name as usize % KEYS.len()].into(), value.into_value())),
            Mutation::DropTensor { idx } if !tens.is_empty() => {
                tens.remove(idx as usize % tens.len());
            }
            Mutation::Retype { idx, ty } if !tens.is_empty() => {
                let i = idx as usize % tens.len();
                if let Some(t) = gguf_file::GgmlType::from_id(u32::from(ty) % 40) {
                    tens[i].1 = t;
                }
            }
            Mutation::Reshape { idx, dims } if !tens.is_empty() => {
                let i = idx as usize % tens.len();
                tens[i].2 = dims.into_iter().take(4).map(|d| u64::from(d % 2048)).collect();
            }
            Mutation::Rename { idx, to } if !tens.is_empty() => {
                let i = idx as usize % tens.len();
                tens[i].0 = NAMES[to as usize % NAMES.len()].into();
            }
            Mutation::Poke { idx, at, byte } if !tens.is_empty() => pokes.push((idx as usize % tens.len(), at as usize, byte)),
            _ => {}
        }
    }
    let mut b = GgufBuilder::new();
    for (k, v) in meta {
        // A legal but huge alignment pads every tensor to gigabytes: the harness would OOM.
        if k == "general.alignment" && v.as_u64().is_some_and(|a| a > 1 << 16) {
            return None;
        }
        b.set(k, v).ok()?;
    }
    let mut sizes = Vec::new();
    for (n, t, d, _) in &tens {
        let bytes = b.add_tensor(n.clone(), *t, d).ok()?.n_bytes;
        // The harness builds the data in memory: keep files small (a reshape may ask for TBs).
        if bytes > 1 << 22 {
            return None;
        }
        sizes.push(bytes as usize);
    }
    let mut w = b.write_to(Vec::new()).ok()?;
    for (i, n) in sizes.iter().enumerate() {
        // Deterministic, mostly small values: f32 data reads as small floats, blocks as small scales.
        let mut data: Vec<u8> = (0..*n).map(|j| if j % 4 == 3 { 0x3c } else { (j * 7 + i) as u8 }).collect();
        for &(ti, at, byte) in &pokes {
            if ti == i && !data.is_empty() {
                let k = at % data.len();
                data[k] = byte;
            }
        }
        w.write_tensor(&data).ok()?;
    }
    w.finish().ok()
}
