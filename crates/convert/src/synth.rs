//! Synthetic GPT-2 checkpoints with counter-based pseudo-random weights, written in Hugging
//! Face format. The generator is reproduced bit for bit by
//! `tests/fixtures/golden/make_golden.py`, so golden tests regenerate checkpoints instead of
//! checking them in, and `cargo xtask bench` makes full-size benchmark models with it.

use std::borrow::Cow;
use std::path::Path;

use safetensors::tensor::View;
use safetensors::Dtype;

use crate::hf::HfError;

/// Shape of a synthetic model.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSpec {
    pub n_vocab: usize,
    pub n_ctx: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_layer: usize,
    pub seed: u64,
}

impl SynthSpec {
    /// GPT-2 small's shape (124M parameters).
    pub fn gpt2_124m(seed: u64) -> Self {
        SynthSpec { n_vocab: 50257, n_ctx: 1024, n_embd: 768, n_head: 12, n_layer: 12, seed }
    }

    /// GPT-2 XL's shape (1558M parameters).
    pub fn gpt2_1558m(seed: u64) -> Self {
        SynthSpec { n_vocab: 50257, n_ctx: 1024, n_embd: 1600, n_head: 25, n_layer: 48, seed }
    }
}

fn fnv1a64(s: &str) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// `n` values uniform in `[-scale, scale)` plus `offset`, from a SplitMix64 finaliser over a
/// counter keyed by the seed and the tensor name.
pub fn synth_values(seed: u64, name: &str, n: usize, scale: f32, offset: f32) -> Vec<f32> {
    let key = seed ^ fnv1a64(name);
    (0..n as u64)
        .map(|i| {
            let mut z = (key ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 40) as f32 / 16_777_216.0;
            (u * 2.0 - 1.0) * scale + offset
        })
        .collect()
}

/// Every tensor of the checkpoint: HF name, shape (`Conv1D` as `[in, out]`), scale, offset.
pub fn hf_tensor_specs(s: &SynthSpec) -> Vec<(String, Vec<usize>, f32, f32)> {
    let (e, v, c, f) = (s.n_embd, s.n_vocab, s.n_ctx, 4 * s.n_embd);
    let inv = |n: usize| (1.0 / (n as f64).sqrt()) as f32;
    let mut out = vec![
        ("transformer.wte.weight".to_owned(), vec![v, e], 0.5, 0.0),
        ("transformer.wpe.weight".to_owned(), vec![c, e], 0.1, 0.0),
    ];
    for i in 0..s.n_layer {
        let p = |n: &str| format!("transformer.h.{i}.{n}");
        out.extend([
            (p("ln_1.weight"), vec![e], 0.2, 1.0),
            (p("ln_1.bias"), vec![e], 0.1, 0.0),
            (p("attn.c_attn.weight"), vec![e, 3 * e], inv(e), 0.0),
            (p("attn.c_attn.bias"), vec![3 * e], 0.1, 0.0),
            (p("attn.c_proj.weight"), vec![e, e], inv(e), 0.0),
            (p("attn.c_proj.bias"), vec![e], 0.1, 0.0),
            (p("ln_2.weight"), vec![e], 0.2, 1.0),
            (p("ln_2.bias"), vec![e], 0.1, 0.0),
            (p("mlp.c_fc.weight"), vec![e, f], inv(e), 0.0),
            (p("mlp.c_fc.bias"), vec![f], 0.1, 0.0),
            (p("mlp.c_proj.weight"), vec![f, e], inv(f), 0.0),
            (p("mlp.c_proj.bias"), vec![e], 0.1, 0.0),
        ]);
    }
    out.push(("transformer.ln_f.weight".to_owned(), vec![e], 0.2, 1.0));
    out.push(("transformer.ln_f.bias".to_owned(), vec![e], 0.1, 0.0));
    out
}

struct F32Tensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &F32Tensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes `config.json`, `model.safetensors` and the tokenizer files (copied from
/// `tokenizer_dir`, which holds GPT-2's `vocab.json` and `merges.txt`) into `dir`.
pub fn write_checkpoint(dir: &Path, spec: &SynthSpec, tokenizer_dir: &Path) -> Result<(), HfError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| HfError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let config = format!(
        concat!(
            "{{\n  \"model_type\": \"gpt2\",\n  \"architectures\": [\"GPT2LMHeadModel\"],\n",
            "  \"vocab_size\": {},\n  \"n_positions\": {},\n  \"n_embd\": {},\n  \"n_head\": {},\n",
            "  \"n_layer\": {},\n  \"n_inner\": null,\n  \"activation_function\": \"gelu_new\",\n",
            "  \"layer_norm_epsilon\": 1e-05,\n  \"tie_word_embeddings\": true,\n",
            "  \"bos_token_id\": 50256,\n  \"eos_token_id\": 50256\n}}\n"
        ),
        spec.n_vocab, spec.n_ctx, spec.n_embd, spec.n_head, spec.n_layer
    );
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, config).map_err(io(&cfg_path))?;
    let tensors: Vec<(String, F32Tensor)> = hf_tensor_specs(spec)
        .into_iter()
        .map(|(name, shape, scale, offset)| {
            let n = shape.iter().product();
            let vals = synth_values(spec.seed, &name, n, scale, offset);
            let bytes = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, F32Tensor { shape, bytes })
        })
        .collect();
    let st_path = dir.join("model.safetensors");
    safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), None, &st_path)
        .map_err(|e| HfError::Invalid { path: st_path.clone(), msg: e.to_string() })?;
    for f in ["vocab.json", "merges.txt"] {
        let (from, to) = (tokenizer_dir.join(f), dir.join(f));
        std::fs::copy(&from, &to).map_err(io(&from))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_pinned() {
        // The Python side must produce exactly these; a change here breaks the golden fixtures.
        let v = synth_values(1, "transformer.wte.weight", 3, 0.5, 0.0);
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, [0x3eb0_1b24, 0xbec9_cd18, 0xbefe_7ffc], "numpy's values (make_golden.py synth)");
    }
}
