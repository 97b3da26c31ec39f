//! Which ggml type each tensor of a GPT-2 model gets for a file type: llama.cpp's
//! `llama_tensor_get_type` (src/llama-quant.cpp) for the file types Quill offers, so that
//! `quill quantize` and `llama-quantize` write the same mix of types.
//!
//! The rules, in llama.cpp's order:
//! 1. Tensors that may not be quantized keep their type: 1-D tensors (norms, biases), names not
//!    ending in `weight`, `*_norm.weight`, and the learned `position_embd.weight`.
//! 2. F32 / F16 / BF16 files store every other tensor in that type; nothing below applies.
//! 3. A user override `REGEX=TYPE` whose regex matches the name (first match wins) sets the type.
//! 4. Otherwise the mixture: `output.weight`, and `token_embd.weight` when it doubles as the
//!    output (GPT-2 ties them: no `output.weight`), get Q6_K, or Q8_0 if the file type's block
//!    does not divide the row, or stay Q8_0 in a Q8_0 file. In Q4_K_M and Q5_K_M files the
//!    attention value projection (GPT-2's fused `attn_qkv`) and `ffn_down` get Q6_K in the layers
//!    of `use_more_bits`: the first and last eighth, and every third layer between.
//! 5. A type whose block does not divide the row (ne0) falls back: Q4_K -> Q5_0, Q5_K -> Q5_1,
//!    Q6_K -> Q8_0, and anything that still does not fit -> F16.
//! 6. Quill's own file type `q4_0_8_8` is the Q4_0 file with every Q4_0 tensor whose rows come
//!    in whole groups of 8 stored interleaved (`Q4_0_8_8`, [`crate::interleave`]): the same
//!    values, laid out for the decode kernels; de-interleaved, it is llama-quantize's Q4_0 file.
//!    (llama.cpp wrote such files in late 2024 and now repacks Q4_0 in memory at load instead.)
//!
//! One difference in form, not in result: llama.cpp counts attention-value and ffn_down tensors
//! as it meets them (in layer order); here the layer is read from the `blk.N.` prefix, which
//! gives the same index and needs no state, so tensors may be handled in any order.

use std::fmt;
use std::str::FromStr;

use regex::Regex;

use crate::{GgmlType, PolicyError};

/// A file type (`general.file_type`, llama.cpp's `llama_ftype`) that Quill can write.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4_K_M,
    Q5_K_M,
    Q6_K,
    Q4_0_8_8,
}

impl FileType {
    /// The file types today's llama-quantize writes too, in its listing order.
    pub const LLAMA_QUANTIZE: &'static [FileType] = &[
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q4_K_M,
        FileType::Q5_K_M,
        FileType::Q6_K,
        FileType::Q8_0,
        FileType::F16,
        FileType::BF16,
        FileType::F32,
    ];

    /// Every file type: llama-quantize's ([`FileType::LLAMA_QUANTIZE`]), then Quill's
    /// interleaved Q4_0.
    pub const ALL: &'static [FileType] = &{
        let mut all = [FileType::Q4_0_8_8; FileType::LLAMA_QUANTIZE.len() + 1];
        let mut i = 0;
        while i < FileType::LLAMA_QUANTIZE.len() {
            all[i] = FileType::LLAMA_QUANTIZE[i];
            i += 1;
        }
        all
    };

    /// llama-quantize's name, lower case (`q4_k_m`).
    pub fn name(self) -> &'static str {
        match self {
            FileType::F32 => "f32",
            FileType::F16 => "f16",
            FileType::BF16 => "bf16",
            FileType::Q8_0 => "q8_0",
            FileType::Q4_0 => "q4_0",
            FileType::Q4_1 => "q4_1",
            FileType::Q5_0 => "q5_0",
            FileType::Q5_1 => "q5_1",
            FileType::Q4_K_M => "q4_k_m",
            FileType::Q5_K_M => "q5_k_m",
            FileType::Q6_K => "q6_k",
            FileType::Q4_0_8_8 => "q4_0_8_8",
        }
    }

    /// Parses a name case-insensitively; also takes llama-quantize's aliases `q4_k` (Q4_K_M)
    /// and `q5_k` (Q5_K_M).
    pub fn from_name(name: &str) -> Result<FileType, PolicyError> {
        let lower = name.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "q4_k" => Some(FileType::Q4_K_M),
            "q5_k" => Some(FileType::Q5_K_M),
            _ => None,
        };
        alias
            .or_else(|| FileType::ALL.iter().copied().find(|t| t.name() == lower))
            .ok_or_else(|| PolicyError::UnknownFileType { name: name.to_string() })
    }

    /// The `general.file_type` value (llama.h `enum llama_ftype`).
    pub fn ftype_id(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q4_1 => 3,
            FileType::Q8_0 => 7,
            FileType::Q5_0 => 8,
            FileType::Q5_1 => 9,
            FileType::Q4_K_M => 15,
            FileType::Q5_K_M => 17,
            FileType::Q6_K => 18,
            FileType::BF16 => 32,
            // LLAMA_FTYPE_MOSTLY_Q4_0_8_8 (retired by llama.cpp, still its number).
            FileType::Q4_0_8_8 => 35,
        }
    }

    /// The file type of a `general.file_type` value, if Quill writes it.
    pub fn from_ftype_id(id: u32) -> Option<FileType> {
        FileType::ALL.iter().copied().find(|t| t.ftype_id() == id)
    }

    /// The type most tensors get (llama-quant.cpp `llama_ftype_get_default_type`).
    pub fn default_type(self) -> GgmlType {
        match self {
            FileType::F32 => GgmlType::F32,
            FileType::F16 => GgmlType::F16,
            FileType::BF16 => GgmlType::BF16,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q4_0 => GgmlType::Q4_0,
            FileType::Q4_1 => GgmlType::Q4_1,
            FileType::Q5_0 => GgmlType::Q5_0,
            FileType::Q5_1 => GgmlType::Q5_1,
            FileType::Q4_K_M => GgmlType::Q4_K,
            FileType::Q5_K_M => GgmlType::Q5_K,
            FileType::Q6_K => GgmlType::Q6_K,
            FileType::Q4_0_8_8 => GgmlType::Q4_0,
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FileType {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileType::from_name(s)
    }
}

/// Types a tensor may be stored in (what an override may ask for): the formats this crate
/// quantizes, less the activation-only Q8_1 and Q8_K.
const WEIGHT_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q4_0_8_8,
];

/// A user override, llama-quantize's `--tensor-type REGEX=TYPE`.
#[derive(Clone, Debug)]
pub struct TensorOverride {
    pub pattern: Regex,
    pub ty: GgmlType,
}

impl TensorOverride {
    /// Parses `REGEX=TYPE` as llama-quantize does (tools/quantize/quantize.cpp
    /// `parse_tensor_type`): split at the first `=`, the regex lower-cased and searched anywhere
    /// in the name, the type a ggml type name in any case (`q6_k`, `Q8_0`, `f16`).
    pub fn parse(spec: &str) -> Result<TensorOverride, PolicyError> {
        let syntax = || PolicyError::OverrideSyntax { spec: spec.to_string() };
        let (pattern, ty) = spec.split_once('=').ok_or_else(syntax)?;
        if pattern.is_empty() || ty.is_empty() {
            return Err(syntax());
        }
        let ty = GgmlType::from_name(ty)
            .filter(|t| WEIGHT_TYPES.contains(t))
            .ok_or_else(|| PolicyError::OverrideType { spec: spec.to_string(), ty: ty.to_string() })?;
        let pattern = Regex::new(&pattern.to_lowercase())
            .map_err(|e| PolicyError::OverrideRegex { spec: spec.to_string(), reason: e.to_string() })?;
        Ok(TensorOverride { pattern, ty })
    }
}

impl FromStr for TensorOverride {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TensorOverride::parse(s)
    }
}

/// The per-tensor type choice for one model and file type.
#[derive(Clone, Debug)]
pub struct QuantPolicy {
    file_type: FileType,
    n_layer: usize,
    tied_embeddings: bool,
    overrides: Vec<TensorOverride>,
}

/// llama-quant.cpp `tensor_category`, reduced to what GPT-2's rules look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    Output,
    /// attn_v, attn_qkv, attn_kv_b (`category_is_attn_v`).
    AttnV,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    // llama-quant.cpp tensor_get_category (only the categories whose rules apply to the file
    // types offered here; attn_q/attn_k/attn_output/ffn_up/ffn_gate change nothing for them).
    if name == "output.weight" {
        Category::Output
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        Category::TokenEmbd
    } else if name.contains("attn_qkv.weight") || name.contains("attn_kv_b.weight") || name.contains("attn_v.weight") {
        Category::AttnV
    } else if name.contains("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// llama-quant.cpp `tensor_allows_quantization`, the arch-independent tests (GPT-2's positional
/// embedding is `position_embd`).
fn allows_quantization(name: &str, dims: &[u64]) -> bool {
    // ggml_n_dims: trailing dimensions of size 1 do not count.
    let n_dims = dims.iter().rposition(|&d| d > 1).map_or(1, |i| i + 1);
    if n_dims < 2 || !name.ends_with("weight") {
        return false;
    }
    const NEVER: &[&str] = &[
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    name != "position_embd.weight" && name != "token_types.weight" && !NEVER.iter().any(|s| name.contains(s))
}

/// llama-quant.cpp `use_more_bits`: the first and last eighth of the layers and every third
/// layer between them.
fn use_more_bits(i_layer: usize, n_layers: usize) -> bool {
    // `||` short-circuits, so `i_layer - n_layers / 8` cannot underflow.
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

/// The `N` of a `blk.N.` prefix.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// llama-quant.cpp `tensor_type_fallback`: a type whose block does not divide the row.
fn fallback(ty: GgmlType, ne0: u64) -> GgmlType {
    if ne0.is_multiple_of(ty.block_size()) {
        return ty;
    }
    let demoted = match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other, // 32-element types: nothing smaller, F16 below
    };
    if !ne0.is_multiple_of(demoted.block_size()) {
        GgmlType::F16
    } else {
        demoted
    }
}

impl QuantPolicy {
    /// A policy for a model of `n_layer` blocks. `has_output_tensor`: whether the model has its
    /// own `output.weight` (GPT-2 does not: `token_embd.weight` is the output projection too).
    pub fn new(file_type: FileType, n_layer: usize, has_output_tensor: bool) -> QuantPolicy {
        QuantPolicy { file_type, n_layer, tied_embeddings: !has_output_tensor, overrides: Vec::new() }
    }

    /// Adds user overrides, tried in order before the mixture rules.
    pub fn with_overrides(mut self, overrides: impl IntoIterator<Item = TensorOverride>) -> QuantPolicy {
        self.overrides.extend(overrides);
        self
    }

    pub fn file_type(&self) -> FileType {
        self.file_type
    }

    /// The type of tensor `name` with shape `dims` (ggml order, `dims[0]` the row length), now
    /// stored as `src_type` (kept for tensors that are not quantized).
    pub fn tensor_type(&self, name: &str, dims: &[u64], src_type: GgmlType) -> GgmlType {
        // llama-quant.cpp llama_tensor_get_type
        if !allows_quantization(name, dims) {
            return src_type;
        }
        let default = self.file_type.default_type();
        if !default.is_quantized() {
            return default;
        }
        let ne0 = dims.first().copied().unwrap_or(1);
        let new_type = match self.overrides.iter().find(|o| o.pattern.is_match(name)) {
            Some(o) => o.ty,
            None => self.mixture_type(name, ne0, default),
        };
        let new_type = fallback(new_type, ne0);
        // Rule 6: interleave Q4_0 in whole groups of rows; a partial group stays Q4_0.
        let rows: u64 = dims.iter().skip(1).product();
        let group = GgmlType::Q4_0_8_8.row_group();
        match new_type {
            GgmlType::Q4_0 if self.file_type == FileType::Q4_0_8_8 && rows.is_multiple_of(group) => GgmlType::Q4_0_8_8,
            GgmlType::Q4_0_8_8 if !rows.is_multiple_of(group) => GgmlType::Q4_0,
            other => other,
        }
    }

    /// llama-quant.cpp llama_tensor_get_type_impl for the file types offered (arch gpt2: not
    /// Falcon, no experts, not a 70B model).
    fn mixture_type(&self, name: &str, ne0: u64, default: GgmlType) -> GgmlType {
        let more_bits = || use_more_bits(layer_of(name).unwrap_or(0), self.n_layer);
        let k_mix = matches!(self.file_type, FileType::Q4_K_M | FileType::Q5_K_M);
        match category(name) {
            Category::Output | Category::TokenEmbd if category(name) == Category::Output || self.tied_embeddings => {
                if !ne0.is_multiple_of(default.block_size()) {
                    GgmlType::Q8_0
                } else if default != GgmlType::Q8_0 {
                    GgmlType::Q6_K
                } else {
                    default
                }
            }
            // The attn_v rule comes before llama.cpp's own ATTENTION_QKV branch (which would
            // give Q5_K / Q6_K), so that branch never runs: attn_qkv follows attn_v.
            Category::AttnV if k_mix && more_bits() => GgmlType::Q6_K,
            Category::FfnDown if k_mix && more_bits() => GgmlType::Q6_K,
            _ => default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GgmlType::*;

    /// GPT-2's tensors for `n_layer` blocks of width `n_embd`, ggml shapes (ne0 first).
    fn gpt2_tensors(n_embd: u64, n_layer: usize, n_vocab: u64, n_ctx: u64) -> Vec<(String, Vec<u64>)> {
        let mut t = vec![
            ("token_embd.weight".to_string(), vec![n_embd, n_vocab]),
            ("position_embd.weight".to_string(), vec![n_embd, n_ctx]),
            ("output_norm.weight".to_string(), vec![n_embd]),
            ("output_norm.bias".to_string(), vec![n_embd]),
        ];
        for i in 0..n_layer {
            let p = format!("blk.{i}.");
            for (n, d) in [
                ("attn_norm.weight", vec![n_embd]),
                ("attn_norm.bias", vec![n_embd]),
                ("attn_qkv.weight", vec![n_embd, 3 * n_embd]),
                ("attn_qkv.bias", vec![3 * n_embd]),
                ("attn_output.weight", vec![n_embd, n_embd]),
                ("attn_output.bias", vec![n_embd]),
                ("ffn_norm.weight", vec![n_embd]),
                ("ffn_norm.bias", vec![n_embd]),
                ("ffn_up.weight", vec![n_embd, 4 * n_embd]),
                ("ffn_up.bias", vec![4 * n_embd]),
                ("ffn_down.weight", vec![4 * n_embd, n_embd]),
                ("ffn_down.bias", vec![n_embd]),
            ] {
                t.push((format!("{p}{n}"), d));
            }
        }
        t
    }

    /// Types of (token_embd, attn_qkv, attn_output, ffn_up, ffn_down) for layer `i`; everything
    /// else (norms, biases, position_embd) must stay F32.
    fn check(ft: FileType, n_embd: u64, n_layer: usize, want: impl Fn(usize) -> [GgmlType; 5]) {
        let policy = QuantPolicy::new(ft, n_layer, false);
        for (name, dims) in gpt2_tensors(n_embd, n_layer, 50257, 1024) {
            let got = policy.tensor_type(&name, &dims, F32);
            let layer = layer_of(&name);
            let expected = match name.rsplit_once('.').map(|(a, b)| (a.rsplit('.').next().unwrap(), b)) {
                Some(("token_embd", "weight")) => want(0)[0],
                Some(("attn_qkv", "weight")) => want(layer.unwrap())[1],
                Some(("attn_output", "weight")) => want(layer.unwrap())[2],
                Some(("ffn_up", "weight")) => want(layer.unwrap())[3],
                Some(("ffn_down", "weight")) => want(layer.unwrap())[4],
                _ => F32,
            };
            assert_eq!(got, expected, "{ft} {name}");
        }
    }

    #[test]
    fn use_more_bits_layers() {
        let pick = |n: usize| (0..n).filter(|&i| use_more_bits(i, n)).collect::<Vec<_>>();
        assert_eq!(pick(12), [0, 3, 6, 9, 10, 11]);
        assert_eq!(pick(8), [0, 3, 6, 7]);
        assert_eq!(pick(2), [1]);
        assert_eq!(pick(48), [0, 1, 2, 3, 4, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35, 38, 41, 42, 43, 44, 45, 46, 47]);
    }

    #[test]
    fn q4_0_8_8_interleaves_the_q4_0_tensors_of_whole_row_groups() {
        check(FileType::Q4_0_8_8, 768, 12, |_| [Q6_K, Q4_0_8_8, Q4_0_8_8, Q4_0_8_8, Q4_0_8_8]);
        // An untied embedding of 50257 rows is Q4_0 in a Q4_0 file: not whole groups of 8.
        let p = QuantPolicy::new(FileType::Q4_0_8_8, 12, true);
        assert_eq!(p.tensor_type("token_embd.weight", &[768, 50257], F32), Q4_0);
        let o = TensorOverride::parse("ffn_up=q4_0_8x8").unwrap();
        let p = QuantPolicy::new(FileType::Q8_0, 12, false).with_overrides([o]);
        assert_eq!(p.tensor_type("blk.0.ffn_up.weight", &[768, 3072], F32), Q4_0_8_8);
        assert_eq!(p.tensor_type("blk.0.ffn_up.weight", &[768, 3071], F32), Q4_0);
        assert_eq!(FileType::from_name("Q4_0_8_8"), Ok(FileType::Q4_0_8_8));
        assert_eq!(FileType::from_ftype_id(35), Some(FileType::Q4_0_8_8));
    }

    #[test]
    fn gpt2_124m_q4_0() {
        check(FileType::Q4_0, 768, 12, |_| [Q6_K, Q4_0, Q4_0, Q4_0, Q4_0]);
    }

    #[test]
    fn gpt2_124m_q4_k_m() {
        let more = [0, 3, 6, 9, 10, 11];
        check(FileType::Q4_K_M, 768, 12, |i| {
            let k = if more.contains(&i) { Q6_K } else { Q4_K };
            [Q6_K, k, Q4_K, Q4_K, k]
        });
    }

    #[test]
    fn gpt2_124m_other_file_types() {
        let more = [0, 3, 6, 9, 10, 11];
        check(FileType::Q5_K_M, 768, 12, |i| {
            let k = if more.contains(&i) { Q6_K } else { Q5_K };
            [Q6_K, k, Q5_K, Q5_K, k]
        });
        check(FileType::Q6_K, 768, 12, |_| [Q6_K; 5]);
        check(FileType::Q8_0, 768, 12, |_| [Q8_0; 5]);
        check(FileType::Q4_1, 768, 12, |_| [Q6_K, Q4_1, Q4_1, Q4_1, Q4_1]);
        check(FileType::Q5_0, 768, 12, |_| [Q6_K, Q5_0, Q5_0, Q5_0, Q5_0]);
        check(FileType::Q5_1, 768, 12, |_| [Q6_K, Q5_1, Q5_1, Q5_1, Q5_1]);
        check(FileType::F16, 768, 12, |_| [F16; 5]);
        check(FileType::BF16, 768, 12, |_| [BF16; 5]);
        check(FileType::F32, 768, 12, |_| [F32; 5]);
    }

    #[test]
    fn gpt2_1558m_q4_0() {
        // 1600 % 32 == 0: Q4_0 fits; the tied embedding's Q6_K does not (1600 % 256) -> Q8_0.
        check(FileType::Q4_0, 1600, 48, |_| [Q8_0, Q4_0, Q4_0, Q4_0, Q4_0]);
    }

    #[test]
    fn gpt2_1558m_q4_k_m() {
        // 1600-wide rows fall back (Q4_K -> Q5_0, Q6_K -> Q8_0); ffn_down rows are 6400 wide
        // (25 blocks of 256) and keep the K-quants.
        check(FileType::Q4_K_M, 1600, 48, |i| {
            let more = use_more_bits(i, 48);
            [Q8_0, if more { Q8_0 } else { Q5_0 }, Q5_0, Q5_0, if more { Q6_K } else { Q4_K }]
        });
    }

    #[test]
    fn gpt2_1558m_other_file_types() {
        check(FileType::Q5_K_M, 1600, 48, |i| {
            let more = use_more_bits(i, 48);
            [Q8_0, if more { Q8_0 } else { Q5_1 }, Q5_1, Q5_1, if more { Q6_K } else { Q5_K }]
        });
        check(FileType::Q6_K, 1600, 48, |_| [Q8_0, Q8_0, Q8_0, Q8_0, Q6_K]);
        check(FileType::Q8_0, 1600, 48, |_| [Q8_0; 5]);
        check(FileType::Q5_1, 1600, 48, |_| [Q8_0, Q5_1, Q5_1, Q5_1, Q5_1]);
    }

    #[test]
    fn untied_output_and_source_types() {
        let p = QuantPolicy::new(FileType::Q4_0, 12, true);
        assert_eq!(p.tensor_type("output.weight", &[768, 50257], F32), Q6_K);
        assert_eq!(p.tensor_type("token_embd.weight", &[768, 50257], F32), Q4_0, "untied: an ordinary tensor");
        // Tensors that are not quantized keep their source type, whatever it is.
        assert_eq!(p.tensor_type("position_embd.weight", &[768, 1024], F16), F16);
        assert_eq!(p.tensor_type("blk.0.attn_norm.weight", &[768], F16), F16);
        assert_eq!(p.tensor_type("blk.0.attn_qkv.weight", &[768, 1], F32), F32, "ne1 = 1 is 1-D");
        let p = QuantPolicy::new(FileType::Q8_0, 12, true);
        assert_eq!(p.tensor_type("output.weight", &[768, 50257], F32), Q8_0);
        // A row that no 32-block divides ends in F16.
        let p = QuantPolicy::new(FileType::Q4_K_M, 12, false);
        assert_eq!(p.tensor_type("blk.0.ffn_up.weight", &[100, 400], F32), F16);
    }

    #[test]
    fn overrides_win_and_still_fall_back() {
        let p = QuantPolicy::new(FileType::Q4_K_M, 12, false).with_overrides([
            TensorOverride::parse("FFN_UP=q8_0").unwrap(),
            TensorOverride::parse(r"blk\.[0-9]+\.attn_.*=Q6_K").unwrap(),
            TensorOverride::parse("token_embd=f16").unwrap(),
        ]);
        assert_eq!(p.tensor_type("blk.5.ffn_up.weight", &[768, 3072], F32), Q8_0, "regex lower-cased");
        assert_eq!(p.tensor_type("blk.1.attn_output.weight", &[768, 768], F32), Q6_K);
        assert_eq!(p.tensor_type("blk.1.attn_output.weight", &[1600, 1600], F32), Q8_0, "fallback after override");
        assert_eq!(p.tensor_type("token_embd.weight", &[768, 50257], F32), F16);
        assert_eq!(p.tensor_type("blk.1.attn_norm.weight", &[768], F32), F32, "1-D never quantized");
        assert_eq!(p.tensor_type("blk.1.ffn_down.weight", &[3072, 768], F32), Q4_K);
        // Overrides apply only to quantized file types, as in llama.cpp.
        let p = QuantPolicy::new(FileType::F16, 12, false).with_overrides([TensorOverride::parse("ffn=q4_0").unwrap()]);
        assert_eq!(p.tensor_type("blk.1.ffn_up.weight", &[768, 3072], F32), F16);
    }

    #[test]
    fn override_parse_errors() {
        assert!(matches!(TensorOverride::parse("ffn_up"), Err(PolicyError::OverrideSyntax { .. })));
        assert!(matches!(TensorOverride::parse("=q4_0"), Err(PolicyError::OverrideSyntax { .. })));
        assert!(matches!(TensorOverride::parse("ffn_up="), Err(PolicyError::OverrideSyntax { .. })));
        assert!(matches!(TensorOverride::parse("ffn_up=q9_0"), Err(PolicyError::OverrideType { .. })));
        assert!(matches!(TensorOverride::parse("ffn_up=q8_k"), Err(PolicyError::OverrideType { .. })));
        assert!(matches!(TensorOverride::parse("ffn_(up=q8_0"), Err(PolicyError::OverrideRegex { .. })));
        // Split at the first '=', as llama-quantize does: the type here is "b=q8_0".
        assert!(matches!(TensorOverride::parse("a=b=q8_0"), Err(PolicyError::OverrideType { .. })));
        let o: TensorOverride = "x=Q8_0".parse().unwrap();
        assert_eq!(o.ty, Q8_0);
    }

    #[test]
    fn file_type_names_and_ids() {
        let ids = [
            ("f32", 0),
            ("F16", 1),
            ("q4_0", 2),
            ("Q4_1", 3),
            ("q8_0", 7),
            ("q5_0", 8),
            ("q5_1", 9),
            ("Q4_K_M", 15),
            ("q5_k_m", 17),
            ("q6_K", 18),
            ("bf16", 32),
        ];
        for (name, id) in ids {
            let ft: FileType = name.parse().unwrap();
            assert_eq!(ft.ftype_id(), id, "{name}");
            assert_eq!(FileType::from_ftype_id(id), Some(ft));
            assert_eq!(ft.to_string(), name.to_ascii_lowercase());
        }
        assert_eq!(FileType::from_name("q4_k").unwrap(), FileType::Q4_K_M);
        assert_eq!(FileType::from_name("Q5_K").unwrap(), FileType::Q5_K_M);
        assert_eq!(FileType::from_name("q3_k_m").unwrap_err(), PolicyError::UnknownFileType { name: "q3_k_m".into() });
        assert_eq!(FileType::from_ftype_id(10), None);
    }
}
