//! Files that pass the container's checks but lie about the model: each must be refused with
//! a typed error naming what is wrong, never a panic, a huge allocation or a crash later.

use quill::gguf::{Array, GgmlType, GgufBuilder, GgufFile, Value};
use quill::gpt2::{Gpt2Model, KvType, ModelError, SessionOptions, TokenizerError};

/// A micro GPT-2: byte-level vocabulary of 258 tokens, width `e`, `layers` blocks, context `ctx`.
struct Micro {
    e: u64,
    layers: u64,
    ctx: u64,
    meta: Vec<(String, Value)>,
    tensors: Vec<(String, GgmlType, Vec<u64>)>,
}

impl Micro {
    fn new(e: u64, layers: u64, ctx: u64) -> Micro {
        let table = quill::gpt2::byte_to_char();
        let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
        tokens.push("he".into());
        tokens.push("<|endoftext|>".into());
        let mut types = vec![1i32; 257];
        types.push(3);
        let meta = vec![
            ("general.architecture".into(), Value::from("gpt2")),
            ("gpt2.context_length".into(), Value::U32(ctx as u32)),
            ("gpt2.embedding_length".into(), Value::U32(e as u32)),
            ("gpt2.feed_forward_length".into(), Value::U32(4 * e as u32)),
            ("gpt2.block_count".into(), Value::U32(layers as u32)),
            ("gpt2.attention.head_count".into(), Value::U32(2)),
            ("gpt2.attention.layer_norm_epsilon".into(), Value::F32(1e-5)),
            ("tokenizer.ggml.model".into(), Value::from("gpt2")),
            ("tokenizer.ggml.tokens".into(), Value::Array(Array::String(tokens))),
            ("tokenizer.ggml.token_type".into(), Value::Array(Array::I32(types))),
            ("tokenizer.ggml.merges".into(), Value::Array(Array::String(vec!["h e".into()]))),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(257)),
        ];
        let q = GgmlType::Q4_0;
        let mut tensors = vec![
            ("token_embd.weight".to_owned(), q, vec![e, 258]),
            ("position_embd.weight".to_owned(), q, vec![e, ctx]),
            ("output_norm.weight".to_owned(), GgmlType::F32, vec![e]),
            ("output_norm.bias".to_owned(), GgmlType::F32, vec![e]),
        ];
        for i in 0..layers {
            let b = |n: &str| format!("blk.{i}.{n}");
            tensors.extend([
                (b("attn_norm.weight"), GgmlType::F32, vec![e]),
                (b("attn_norm.bias"), GgmlType::F32, vec![e]),
                (b("attn_qkv.weight"), q, vec![e, 3 * e]),
                (b("attn_qkv.bias"), GgmlType::F32, vec![3 * e]),
                (b("attn_output.weight"), q, vec![e, e]),
                (b("attn_output.bias"), GgmlType::F32, vec![e]),
                (b("ffn_norm.weight"), GgmlType::F32, vec![e]),
                (b("ffn_norm.bias"), GgmlType::F32, vec![e]),
                (b("ffn_up.weight"), q, vec![e, 4 * e]),
                (b("ffn_up.bias"), GgmlType::F32, vec![4 * e]),
                (b("ffn_down.weight"), q, vec![4 * e, e]),
                (b("ffn_down.bias"), GgmlType::F32, vec![e]),
            ]);
        }
        Micro { e, layers, ctx, meta, tensors }
    }

    fn set(mut self, key: &str, v: Value) -> Self {
        match self.meta.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = v,
            None => self.meta.push((key.into(), v)),
        }
        self
    }

    fn tensor(mut self, name: &str, ty: GgmlType, dims: &[u64]) -> Self {
        let t = self.tensors.iter_mut().find(|t| t.0 == name).expect("known tensor");
        (t.1, t.2) = (ty, dims.to_vec());
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.tensors.retain(|t| t.0 != name);
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = GgufBuilder::new();
        for (k, v) in &self.meta {
            b.set(k.clone(), v.clone()).unwrap();
        }
        let sizes: Vec<u64> =
            self.tensors.iter().map(|(n, t, d)| b.add_tensor(n.clone(), *t, d).unwrap().n_bytes).collect();
        let mut w = b.write_to(Vec::new()).unwrap();
        for n in sizes {
            // f32 0.25 everywhere; quantized blocks get small f16 scales from the same bytes.
            w.write_tensor(&0.25f32.to_le_bytes().repeat(n as usize / 4 + 1)[..n as usize]).unwrap();
        }
        w.finish().unwrap()
    }

    fn load_err(&self) -> String {
        let f = GgufFile::from_bytes(&self.bytes()).expect("a valid container");
        match Gpt2Model::load(&f) {
            Ok(_) => panic!("loaded a lying model (e={}, layers={}, ctx={})", self.e, self.layers, self.ctx),
            Err(e) => e.to_string(),
        }
    }
}

#[test]
fn the_micro_model_itself_loads_and_runs() {
    let m = Micro::new(32, 2, 16);
    let f = GgufFile::from_bytes(&m.bytes()).unwrap();
    let model = Gpt2Model::load(&f).unwrap();
    let mut s = model.session(SessionOptions { kv_type: KvType::F32, ..Default::default() }).unwrap();
    let ids = model.tokenizer.encode("the hen").unwrap();
    assert!(s.prefill(&ids).unwrap().iter().all(|v| v.is_finite()));
}

#[test]
fn model_errors_are_typed_with_their_values() {
    let load = |m: Micro| {
        let f = GgufFile::from_bytes(&m.bytes()).unwrap();
        Gpt2Model::load(&f).err().expect("refused")
    };
    let e = load(Micro::new(32, 1, 16).set("gpt2.attention.head_count", Value::U32(3)));
    assert!(matches!(e, ModelError::HeadsDoNotDivide { n_embd: 32, n_head: 3 }), "{e:?}");
    let e = load(Micro::new(32, 1, 16).set("gpt2.block_count", Value::U32(0)));
    assert!(matches!(e, ModelError::ConfigOutOfRange { key: "gpt2.block_count", value: 0, .. }), "{e:?}");
    let e = load(Micro::new(32, 1, 16).set("gpt2.attention.layer_norm_epsilon", Value::F32(-1.0)));
    assert!(matches!(e, ModelError::BadEpsilon { .. }), "{e:?}");
    let e = load(Micro::new(32, 1, 16).tensor("token_embd.weight", GgmlType::Q4_0, &[32, 300]));
    assert!(matches!(e, ModelError::VocabMismatch { rows: 300, n_tokens: 258 }), "{e:?}");
    let merges = |m: &str| Value::Array(Array::String(vec![m.into()]));
    let e = load(Micro::new(32, 1, 16).set("tokenizer.ggml.merges", merges("nospace")));
    assert!(matches!(e, ModelError::Tokenizer(TokenizerError::MalformedMerge { index: 0, .. })), "{e:?}");
    let e = load(Micro::new(32, 1, 16).set("tokenizer.ggml.merges", merges("h zz")));
    assert!(matches!(&e, ModelError::Tokenizer(TokenizerError::MergeOfUnknown { part, .. }) if part == "zz"), "{e:?}");
    assert!(e.to_string().contains("merge #0 'h zz' uses 'zz', which is not a token"), "{e}");
    let e = load(Micro::new(32, 1, 16).set("tokenizer.ggml.eos_token_id", Value::U32(999)));
    assert!(
        matches!(e, ModelError::Tokenizer(TokenizerError::BadSpecialId { key: "tokenizer.ggml.eos_token_id", .. })),
        "{e:?}"
    );
}

#[test]
fn lies_about_the_model_are_refused_by_name() {
    let cases: Vec<(Micro, &[&str])> = vec![
        (
            Micro::new(32, 1, 16).set("general.architecture", Value::from("llama")),
            &["unsupported architecture 'llama': quill runs gpt2"],
        ),
        (Micro::new(32, 1, 16).set("gpt2.attention.head_count", Value::U32(3)), &["not divisible by the head count 3"]),
        (Micro::new(32, 1, 16).set("gpt2.block_count", Value::U32(0)), &["gpt2.block_count = 0"]),
        (Micro::new(32, 1, 16).set("gpt2.block_count", Value::U32(2)), &["blk.1.attn_norm.weight", "missing"]),
        (Micro::new(32, 1, 16).set("gpt2.embedding_length", Value::from("wide")), &["gpt2.embedding_length", "string"]),
        (Micro::new(32, 1, 16).set("gpt2.attention.layer_norm_epsilon", Value::F32(-1.0)), &["epsilon"]),
        (Micro::new(32, 1, 16).set("gpt2.context_length", Value::U64(1 << 40)), &["gpt2.context_length"]),
        (Micro::new(32, 1, 16).without("blk.0.ffn_down.weight"), &["blk.0.ffn_down.weight", "missing"]),
        (
            Micro::new(32, 1, 16).tensor("blk.0.ffn_up.weight", GgmlType::Q4_0, &[32, 96]),
            &["blk.0.ffn_up.weight", "shape"],
        ),
        (
            Micro::new(32, 1, 16).tensor("position_embd.weight", GgmlType::Q4_0, &[32, 8]),
            &["position_embd.weight", "shape"],
        ),
        (Micro::new(32, 1, 16).tensor("token_embd.weight", GgmlType::Q4_0, &[32, 300]), &["300 rows", "258 tokens"]),
        (
            // Interleaved Q4_0 comes in groups of 8 rows: 258 is not a whole number of them.
            Micro::new(32, 1, 16).tensor("token_embd.weight", GgmlType::Q4_0_8_8, &[32, 258]),
            &["token_embd.weight", "258 rows", "8-row interleaved groups"],
        ),
        (
            Micro::new(32, 1, 16).tensor("blk.0.attn_norm.weight", GgmlType::Q8_0, &[32]),
            &["blk.0.attn_norm.weight", "q8_0"],
        ),
        (
            Micro::new(32, 1, 16).tensor("blk.0.attn_qkv.weight", GgmlType::IQ2_XXS, &[256, 96]),
            &["blk.0.attn_qkv.weight"],
        ),
        (Micro::new(32, 1, 16).set("tokenizer.ggml.model", Value::from("llama")), &["tokenizer.ggml.model"]),
        (
            Micro::new(32, 1, 16).set("tokenizer.ggml.merges", Value::Array(Array::String(vec!["nospace".into()]))),
            &["merge #0"],
        ),
        (Micro::new(32, 1, 16).set("tokenizer.ggml.token_type", Value::Array(Array::I32(vec![1; 3]))), &["token_type"]),
        (Micro::new(32, 1, 16).set("tokenizer.ggml.eos_token_id", Value::U32(999)), &["eos_token_id"]),
        (
            Micro::new(32, 1, 16).set("tokenizer.ggml.tokens", Value::Array(Array::String(vec!["a".into(); 258]))),
            &["appears twice"],
        ),
    ];
    for (m, needles) in cases {
        let err = m.load_err();
        for n in needles {
            assert!(err.contains(n), "expected {n:?} in: {err}");
        }
    }
}

#[test]
fn a_kv_cache_that_cannot_fit_is_refused_up_front_with_the_figure() {
    // 256 layers x 2^20 positions x 32 wide: 64 GiB of f32 KV cache, from a ~21 MB file.
    let m = Micro::new(32, 256, 1 << 20);
    let f = GgufFile::from_bytes(&m.bytes()).unwrap();
    let model = Gpt2Model::load(&f).unwrap();
    match model.session(SessionOptions { kv_type: KvType::F32, ..Default::default() }) {
        Err(e @ ModelError::OutOfMemory { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("65536 MiB") || msg.contains("MiB for its KV cache"), "{msg}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a 64 GiB session was created"),
    }
    // A context that fits is fine.
    model.session(SessionOptions { n_ctx: 64, kv_type: KvType::F32, ..Default::default() }).unwrap();
    // Heads of 16 cannot be stored in Q8_0 blocks of 32: refused, naming the flag and size.
    let msg = model.session(SessionOptions { n_ctx: 64, kv_type: KvType::Q8_0, ..Default::default() }).err().unwrap();
    assert_eq!(msg.to_string(), "--kv-type q8_0: the model's head size 16 is not a multiple of 32 (a Q8_0 block)");
}
