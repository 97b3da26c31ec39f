//! Hugging Face GPT-2 checkpoints: `config.json`, `model.safetensors` (or shards with
//! `model.safetensors.index.json`), and the tokenizer (`tokenizer.json`, or `vocab.json` +
//! `merges.txt`). Maps tensor names to llama.cpp's and transposes `Conv1D` weights.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value as Json;

use quill_gpt2::Gpt2Config;
use quill_gpt2::{TOKEN_TYPE_CONTROL, TOKEN_TYPE_NORMAL, TOKEN_TYPE_USER_DEFINED};

/// llama.cpp's token type for padding entries (`LLAMA_TOKEN_TYPE_UNUSED`).
pub const TOKEN_TYPE_UNUSED: i32 = 5;

/// Errors of reading a Hugging Face checkpoint; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("{dir}: no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not supported: convert them to safetensors first)")]
    NoWeights { dir: PathBuf },
    #[error("{dir}: no tokenizer.json, and no vocab.json + merges.txt")]
    NoTokenizer { dir: PathBuf },
    #[error("tensor '{name}' is missing from the checkpoint")]
    MissingTensor { name: String },
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    BadShape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor '{name}' has dtype {dtype}, quill reads F32, F16 and BF16")]
    BadDtype { name: String, dtype: String },
    #[error("tensor '{name}' holds {what} at element {index}")]
    NonFinite { name: String, what: &'static str, index: usize },
}

fn invalid(path: &Path, msg: impl Into<String>) -> HfError {
    HfError::Invalid { path: path.to_owned(), msg: msg.into() }
}

/// What `config.json` says: the hyperparameters, and the model's name if it has one.
#[derive(Clone, Debug, PartialEq)]
pub struct HfConfig {
    pub model: Gpt2Config,
    pub name: Option<String>,
}

impl HfConfig {
    pub fn parse(path: &Path, text: &str) -> Result<HfConfig, HfError> {
        let j: Json = serde_json::from_str(text).map_err(|e| invalid(path, format!("not valid JSON: {e}")))?;
        let model_type = j.get("model_type").and_then(Json::as_str).unwrap_or("");
        if model_type != "gpt2" {
            return Err(invalid(path, format!("model_type is '{model_type}', quill converts gpt2")));
        }
        let int = |keys: &[&str]| -> Result<usize, HfError> {
            for k in keys {
                if let Some(v) = j.get(*k).filter(|v| !v.is_null()) {
                    return v
                        .as_u64()
                        .filter(|&v| v > 0 && v <= 1 << 24)
                        .map(|v| v as usize)
                        .ok_or_else(|| invalid(path, format!("{k} = {v} is not a positive integer")));
                }
            }
            Err(invalid(path, format!("missing {}", keys.join(" or "))))
        };
        let n_embd = int(&["n_embd", "hidden_size"])?;
        let n_ff = match j.get("n_inner") {
            Some(v) if !v.is_null() => int(&["n_inner"])?,
            _ => 4 * n_embd,
        };
        let act = j.get("activation_function").and_then(Json::as_str).unwrap_or("gelu_new");
        if !matches!(act, "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") {
            return Err(invalid(path, format!("activation_function '{act}' is not GPT-2's tanh GELU")));
        }
        for (key, expected) in [
            ("scale_attn_by_inverse_layer_idx", false),
            ("reorder_and_upcast_attn", false),
            ("scale_attn_weights", true),
        ] {
            if let Some(v) = j.get(key).and_then(Json::as_bool) {
                if v != expected {
                    return Err(invalid(path, format!("{key} = {v} is not supported")));
                }
            }
        }
        let eps = j.get("layer_norm_epsilon").and_then(Json::as_f64).unwrap_or(1e-5) as f32;
        let model = Gpt2Config {
            n_vocab: int(&["vocab_size"])?,
            n_ctx: int(&["n_positions", "n_ctx"])?,
            n_embd,
            n_head: int(&["n_head", "num_attention_heads"])?,
            n_layer: int(&["n_layer", "num_hidden_layers"])?,
            n_ff,
            eps,
        };
        if !model.n_embd.is_multiple_of(model.n_head) {
            return Err(invalid(path, format!("n_embd {} is not divisible by n_head {}", model.n_embd, model.n_head)));
        }
        let name = j.get("_name_or_path").and_then(Json::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        Ok(HfConfig { model, name })
    }
}

/// Where one tensor's bytes are.
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A tensor to convert: its llama.cpp name, ggml dims, and where it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct HfTensor {
    /// llama.cpp GGUF name.
    pub name: String,
    /// Hugging Face name.
    pub hf_name: String,
    /// ggml dims (`[cols, rows]` for matrices).
    pub dims: Vec<u64>,
    /// `Conv1D` weights are stored `[in, out]` and must be transposed.
    pub transpose: bool,
}

/// The tokenizer as GGUF stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufVocab {
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    pub eos: u32,
    pub bos: u32,
}

/// A shard's bytes: mapped from disk, or held in memory.
enum Shard {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Shard {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Shard::Mapped(m) => m,
            Shard::Owned(v) => v,
        }
    }
}

/// An opened checkpoint directory.
pub struct HfCheckpoint {
    pub dir: PathBuf,
    pub config: HfConfig,
    maps: Vec<(PathBuf, Shard)>,
    entries: HashMap<String, Entry>,
    /// Prefix of the tensor names (`transformer.` for `GPT2LMHeadModel`, empty for `GPT2Model`).
    prefix: String,
}

fn read_text(path: &Path) -> Result<String, HfError> {
    std::fs::read_to_string(path).map_err(|source| HfError::Io { path: path.to_owned(), source })
}

impl HfCheckpoint {
    /// True if `dir` looks like a Hugging Face checkpoint.
    pub fn is_checkpoint(dir: &Path) -> bool {
        dir.is_dir() && dir.join("config.json").is_file()
    }

    pub fn open(dir: &Path) -> Result<HfCheckpoint, HfError> {
        let config_path = dir.join("config.json");
        let config = HfConfig::parse(&config_path, &read_text(&config_path)?)?;
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            let j: Json = serde_json::from_str(&read_text(&index)?)
                .map_err(|e| invalid(&index, format!("not valid JSON: {e}")))?;
            let map = j.get("weight_map").and_then(Json::as_object).ok_or_else(|| invalid(&index, "no weight_map"))?;
            let mut names: Vec<&str> = map.values().filter_map(Json::as_str).collect();
            names.sort_unstable();
            names.dedup();
            for n in &names {
                if n.contains('/') || n.contains('\\') || *n == ".." {
                    return Err(invalid(&index, format!("shard name '{n}' is not a plain file name")));
                }
            }
            names.into_iter().map(|n| dir.join(n)).collect()
        } else {
            return Err(HfError::NoWeights { dir: dir.to_owned() });
        };
        let mut shards = Vec::with_capacity(files.len());
        for path in files {
            let io = |source| HfError::Io { path: path.clone(), source };
            let file = File::open(&path).map_err(io)?;
            // SAFETY: a read-only private mapping of a checkpoint file; like every mmap-based
            // loader we rely on nobody truncating the file while we convert it.
            let map = unsafe { Mmap::map(&file) }.map_err(io)?;
            shards.push((path, Shard::Mapped(map)));
        }
        Self::index(dir.to_owned(), config, shards)
    }

    /// A checkpoint held in memory: `config.json` text and safetensors shards (for tests and
    /// fuzzing; the tokenizer is not part of it).
    pub fn from_memory(config_json: &str, shards: Vec<Vec<u8>>) -> Result<HfCheckpoint, HfError> {
        let dir = PathBuf::from("<memory>");
        let config = HfConfig::parse(&dir.join("config.json"), config_json)?;
        let shards =
            shards.into_iter().enumerate().map(|(i, b)| (dir.join(format!("shard{i}")), Shard::Owned(b))).collect();
        Self::index(dir, config, shards)
    }

    fn index(dir: PathBuf, config: HfConfig, maps: Vec<(PathBuf, Shard)>) -> Result<HfCheckpoint, HfError> {
        let mut entries = HashMap::new();
        for (fi, (path, bytes)) in maps.iter().enumerate() {
            let st =
                SafeTensors::deserialize(bytes).map_err(|e| invalid(path, format!("not a safetensors file: {e}")))?;
            let base = bytes.as_ptr() as usize;
            for (name, view) in st.iter() {
                let start = view.data().as_ptr() as usize - base;
                let entry = Entry {
                    file: fi,
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    start,
                    end: start + view.data().len(),
                };
                if entries.insert(name.to_owned(), entry).is_some() {
                    return Err(invalid(path, format!("tensor '{name}' appears in two shards")));
                }
            }
        }
        let prefix = if entries.contains_key("transformer.wte.weight") { "transformer." } else { "" }.to_owned();
        Ok(HfCheckpoint { dir, config, maps, entries, prefix })
    }

    /// The tensors to write, in llama.cpp's naming, checked against the config.
    pub fn tensors(&self) -> Result<Vec<HfTensor>, HfError> {
        let c = &self.config.model;
        let (e, f, v) = (c.n_embd, c.n_ff, c.n_vocab);
        let mut out = Vec::new();
        let mut add = |gguf: String, hf: String, hf_shape: Vec<usize>, transpose: bool| -> Result<(), HfError> {
            let entry = self.entries.get(&hf).ok_or_else(|| HfError::MissingTensor { name: hf.clone() })?;
            if entry.shape != hf_shape {
                return Err(HfError::BadShape { name: hf, expected: hf_shape, found: entry.shape.clone() });
            }
            // ggml dims are the row-major shape reversed; Conv1D's [in, out] becomes [out rows][in].
            let mut dims: Vec<u64> = hf_shape.iter().rev().map(|&d| d as u64).collect();
            if transpose {
                dims.reverse();
            }
            out.push(HfTensor { name: gguf, hf_name: hf, dims, transpose });
            Ok(())
        };
        let p = &self.prefix;
        add("token_embd.weight".into(), format!("{p}wte.weight"), vec![v, e], false)?;
        add("position_embd.weight".into(), format!("{p}wpe.weight"), vec![c.n_ctx, e], false)?;
        add("output_norm.weight".into(), format!("{p}ln_f.weight"), vec![e], false)?;
        add("output_norm.bias".into(), format!("{p}ln_f.bias"), vec![e], false)?;
        if self.has_untied_lm_head()? {
            add("output.weight".into(), "lm_head.weight".into(), vec![v, e], false)?;
        }
        for i in 0..c.n_layer {
            let h = |s: &str| format!("{p}h.{i}.{s}");
            let b = |s: &str| format!("blk.{i}.{s}");
            add(b("attn_norm.weight"), h("ln_1.weight"), vec![e], false)?;
            add(b("attn_norm.bias"), h("ln_1.bias"), vec![e], false)?;
            add(b("attn_qkv.weight"), h("attn.c_attn.weight"), vec![e, 3 * e], true)?;
            add(b("attn_qkv.bias"), h("attn.c_attn.bias"), vec![3 * e], false)?;
            add(b("attn_output.weight"), h("attn.c_proj.weight"), vec![e, e], true)?;
            add(b("attn_output.bias"), h("attn.c_proj.bias"), vec![e], false)?;
            add(b("ffn_norm.weight"), h("ln_2.weight"), vec![e], false)?;
            add(b("ffn_norm.bias"), h("ln_2.bias"), vec![e], false)?;
            add(b("ffn_up.weight"), h("mlp.c_fc.weight"), vec![e, f], true)?;
            add(b("ffn_up.bias"), h("mlp.c_fc.bias"), vec![f], false)?;
            add(b("ffn_down.weight"), h("mlp.c_proj.weight"), vec![f, e], true)?;
            add(b("ffn_down.bias"), h("mlp.c_proj.bias"), vec![e], false)?;
        }
        Ok(out)
    }

    /// `lm_head.weight` present and different from `wte` (GPT-2 ties them; most checkpoints omit it).
    fn has_untied_lm_head(&self) -> Result<bool, HfError> {
        let Some(head) = self.entries.get("lm_head.weight") else { return Ok(false) };
        let wte = &self.entries[&format!("{}wte.weight", self.prefix)];
        Ok(!(head.dtype == wte.dtype && head.shape == wte.shape && self.bytes(head) == self.bytes(wte)))
    }

    fn bytes(&self, e: &Entry) -> &[u8] {
        &self.maps[e.file].1[e.start..e.end]
    }

    /// A tensor's values as f32 in ggml order (transposed if needed), checked to be finite.
    pub fn read_f32(&self, t: &HfTensor) -> Result<Vec<f32>, HfError> {
        let e = self.entries.get(&t.hf_name).ok_or_else(|| HfError::MissingTensor { name: t.hf_name.clone() })?;
        let raw = self.bytes(e);
        let vals: Vec<f32> = match e.dtype {
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            d => return Err(HfError::BadDtype { name: t.hf_name.clone(), dtype: format!("{d:?}") }),
        };
        if let Some(i) = vals.iter().position(|v| !v.is_finite()) {
            let what = if vals[i].is_nan() { "NaN" } else { "an infinity" };
            return Err(HfError::NonFinite { name: t.hf_name.clone(), what, index: i });
        }
        if !t.transpose {
            return Ok(vals);
        }
        // Stored [in][out] row-major; ggml wants [out][in] row-major.
        let (n_in, n_out) = (e.shape[0], e.shape[1]);
        let mut out = vec![0.0f32; vals.len()];
        const B: usize = 32; // blocked transpose: both sides stay in cache
        for i0 in (0..n_in).step_by(B) {
            for o0 in (0..n_out).step_by(B) {
                for i in i0..(i0 + B).min(n_in) {
                    for o in o0..(o0 + B).min(n_out) {
                        out[o * n_in + i] = vals[i * n_out + o];
                    }
                }
            }
        }
        Ok(out)
    }

    /// The tokenizer in GGUF form, padded with `[PAD{i}]` entries to the model's vocabulary
    /// (as llama.cpp's converter does).
    pub fn vocab(&self) -> Result<GgufVocab, HfError> {
        let (mut tokens, mut types, merges) = vocab_parts(&self.dir)?;
        let n = self.config.model.n_vocab;
        if tokens.len() > n {
            return Err(invalid(
                &self.dir,
                format!("the tokenizer has {} tokens, more than vocab_size {n}", tokens.len()),
            ));
        }
        for i in tokens.len()..n {
            tokens.push(format!("[PAD{i}]"));
            types.push(TOKEN_TYPE_UNUSED);
        }
        let eos = tokens.iter().position(|t| t == "<|endoftext|>").unwrap_or(n - 1) as u32;
        Ok(GgufVocab { tokens, token_types: types, merges, eos, bos: eos })
    }
}

type VocabParts = (Vec<String>, Vec<i32>, Vec<String>);

/// The tokenizer files of a folder: `tokenizer.json`, else `vocab.json` + `merges.txt`.
fn vocab_parts(dir: &Path) -> Result<VocabParts, HfError> {
    let tj = dir.join("tokenizer.json");
    let (vj, mt) = (dir.join("vocab.json"), dir.join("merges.txt"));
    if tj.is_file() {
        vocab_from_tokenizer_json(&tj, &read_text(&tj)?)
    } else if vj.is_file() && mt.is_file() {
        vocab_from_files(&vj, &read_text(&vj)?, &mt, &read_text(&mt)?)
    } else {
        Err(HfError::NoTokenizer { dir: dir.to_owned() })
    }
}

/// The tokenizer of a folder that holds only tokenizer files (no config or weights needed),
/// unpadded; `<|endoftext|>` (else the last token) is end and start of text.
pub fn tokenizer_vocab(dir: &Path) -> Result<GgufVocab, HfError> {
    let (tokens, token_types, merges) = vocab_parts(dir)?;
    if tokens.is_empty() {
        return Err(invalid(dir, "the tokenizer has no tokens"));
    }
    let eos = tokens.iter().position(|t| t == "<|endoftext|>").unwrap_or(tokens.len() - 1) as u32;
    Ok(GgufVocab { tokens, token_types, merges, eos, bos: eos })
}

fn tokens_from_map(path: &Path, map: &serde_json::Map<String, Json>) -> Result<Vec<String>, HfError> {
    let mut tokens = vec![None; map.len()];
    for (tok, id) in map {
        let id = id.as_u64().ok_or_else(|| invalid(path, format!("id of '{tok}' is not an integer")))? as usize;
        match tokens.get_mut(id) {
            Some(slot @ None) => *slot = Some(tok.clone()),
            Some(Some(_)) => return Err(invalid(path, format!("token id {id} is used twice"))),
            None => return Err(invalid(path, format!("token id {id} of '{tok}' leaves a gap in the vocabulary"))),
        }
    }
    Ok(tokens.into_iter().map(|t| t.expect("every slot filled: ids are unique and below len")).collect())
}

/// From `vocab.json` + `merges.txt`; `<|endoftext|>` is GPT-2's one control token.
pub fn vocab_from_files(vj: &Path, vocab: &str, mt: &Path, merges: &str) -> Result<VocabParts, HfError> {
    let map: serde_json::Map<String, Json> =
        serde_json::from_str(vocab).map_err(|e| invalid(vj, format!("not a JSON object of token ids: {e}")))?;
    let tokens = tokens_from_map(vj, &map)?;
    let types =
        tokens.iter().map(|t| if t == "<|endoftext|>" { TOKEN_TYPE_CONTROL } else { TOKEN_TYPE_NORMAL }).collect();
    let mut out = Vec::new();
    for (i, line) in merges.lines().enumerate() {
        if (i == 0 && line.starts_with("#version")) || line.trim().is_empty() {
            continue;
        }
        if line.split(' ').count() != 2 {
            return Err(invalid(mt, format!("line {} is not two tokens separated by a space", i + 1)));
        }
        out.push(line.to_owned());
    }
    Ok((tokens, types, out))
}

/// From a `tokenizer.json` (BPE model; merges as "a b" strings or [a, b] pairs).
pub fn vocab_from_tokenizer_json(path: &Path, text: &str) -> Result<VocabParts, HfError> {
    let j: Json = serde_json::from_str(text).map_err(|e| invalid(path, format!("not valid JSON: {e}")))?;
    let model = j.get("model").ok_or_else(|| invalid(path, "no model"))?;
    if model.get("type").and_then(Json::as_str) != Some("BPE") {
        return Err(invalid(path, "model.type is not BPE"));
    }
    let map = model.get("vocab").and_then(Json::as_object).ok_or_else(|| invalid(path, "no model.vocab"))?;
    let mut tokens = tokens_from_map(path, map)?;
    let mut types = vec![TOKEN_TYPE_NORMAL; tokens.len()];
    for added in j.get("added_tokens").and_then(Json::as_array).into_iter().flatten() {
        let (Some(id), Some(content)) =
            (added.get("id").and_then(Json::as_u64), added.get("content").and_then(Json::as_str))
        else {
            return Err(invalid(path, "added token without id or content"));
        };
        let special = added.get("special").and_then(Json::as_bool).unwrap_or(false);
        let id = id as usize;
        if id > tokens.len() {
            return Err(invalid(path, format!("added token id {id} leaves a gap in the vocabulary")));
        }
        if id == tokens.len() {
            tokens.push(content.to_owned());
            types.push(TOKEN_TYPE_NORMAL);
        }
        types[id] = if special { TOKEN_TYPE_CONTROL } else { TOKEN_TYPE_USER_DEFINED };
    }
    let mut merges = Vec::new();
    for (i, m) in
        model.get("merges").and_then(Json::as_array).ok_or_else(|| invalid(path, "no model.merges"))?.iter().enumerate()
    {
        match m {
            Json::String(s) if s.split(' ').count() == 2 => merges.push(s.clone()),
            Json::Array(pair) if pair.len() == 2 && pair.iter().all(Json::is_string) => merges.push(format!(
                "{} {}",
                pair[0].as_str().unwrap_or_default(),
                pair[1].as_str().unwrap_or_default()
            )),
            _ => return Err(invalid(path, format!("merge #{i} is neither \"a b\" nor [a, b]"))),
        }
    }
    Ok((tokens, types, merges))
}
