//! Weights as zero-copy views into the GGUF mapping, checked against the config.

use gguf_file::{GgmlType, GgufFile};
use half::{bf16, f16};
use quill_kernels::Matrix;

use crate::{Gpt2Config, ModelError};

/// One transformer block. Matrices are views into the file; the small 1-D tensors (norms and
/// biases, 0.1% of the parameters) are converted to f32 once at load.
pub struct Layer<'a> {
    pub ln1_w: Vec<f32>,      // [n_embd]
    pub ln1_b: Vec<f32>,      // [n_embd]
    pub attn_qkv: Matrix<'a>, // [3 * n_embd rows][n_embd]
    pub attn_qkv_b: Vec<f32>, // [3 * n_embd]
    pub attn_out: Matrix<'a>, // [n_embd][n_embd]
    pub attn_out_b: Vec<f32>, // [n_embd]
    pub ln2_w: Vec<f32>,      // [n_embd]
    pub ln2_b: Vec<f32>,      // [n_embd]
    pub ffn_up: Matrix<'a>,   // [n_ff][n_embd]
    pub ffn_up_b: Vec<f32>,   // [n_ff]
    pub ffn_down: Matrix<'a>, // [n_embd][n_ff]
    pub ffn_down_b: Vec<f32>, // [n_embd]
}

/// All weights of a GPT-2 model.
pub struct Gpt2Weights<'a> {
    pub token_embd: Matrix<'a>,    // [n_vocab][n_embd]
    pub position_embd: Matrix<'a>, // [n_ctx][n_embd]
    pub layers: Vec<Layer<'a>>,    // [n_layer]
    pub ln_f_w: Vec<f32>,          // [n_embd]
    pub ln_f_b: Vec<f32>,          // [n_embd]
    /// The output projection: `output.weight` if present, else the tied `token_embd`.
    pub output: Matrix<'a>, // [n_vocab][n_embd]
}

struct Loader<'a> {
    file: &'a GgufFile,
}

impl<'a> Loader<'a> {
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix<'a>, ModelError> {
        let t = self.file.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.to_owned()))?;
        let want = [cols as u64, rows as u64];
        if t.dims() != want {
            return Err(ModelError::BadTensorShape {
                name: name.to_owned(),
                expected: want.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Matrix::new(t.ty(), rows, cols, t.data).map_err(|source| ModelError::Kernel { name: name.to_owned(), source })
    }

    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let t = self.file.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.to_owned()))?;
        if t.dims() != [n as u64] {
            return Err(ModelError::BadTensorShape {
                name: name.to_owned(),
                expected: vec![n as u64],
                found: t.dims().to_vec(),
            });
        }
        let v: Vec<f32> = match t.ty() {
            GgmlType::F32 => t.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            GgmlType::F16 => t.data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            GgmlType::BF16 => t.data.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            ty => {
                return Err(ModelError::BadTensorType {
                    name: name.to_owned(),
                    ty,
                    reason: "1-D tensors must be f32, f16 or bf16",
                })
            }
        };
        Ok(v)
    }
}

impl<'a> Gpt2Weights<'a> {
    /// Views every tensor the config calls for, checking names, shapes and types.
    pub fn load(file: &'a GgufFile, cfg: &Gpt2Config) -> Result<Gpt2Weights<'a>, ModelError> {
        let l = Loader { file };
        let (e, f) = (cfg.n_embd, cfg.n_ff);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            layers.push(Layer {
                ln1_w: l.vector(&n("attn_norm.weight"), e)?,
                ln1_b: l.vector(&n("attn_norm.bias"), e)?,
                attn_qkv: l.matrix(&n("attn_qkv.weight"), 3 * e, e)?,
                attn_qkv_b: l.vector(&n("attn_qkv.bias"), 3 * e)?,
                attn_out: l.matrix(&n("attn_output.weight"), e, e)?,
                attn_out_b: l.vector(&n("attn_output.bias"), e)?,
                ln2_w: l.vector(&n("ffn_norm.weight"), e)?,
                ln2_b: l.vector(&n("ffn_norm.bias"), e)?,
                ffn_up: l.matrix(&n("ffn_up.weight"), f, e)?,
                ffn_up_b: l.vector(&n("ffn_up.bias"), f)?,
                ffn_down: l.matrix(&n("ffn_down.weight"), e, f)?,
                ffn_down_b: l.vector(&n("ffn_down.bias"), e)?,
            });
        }
        let token_embd = l.matrix("token_embd.weight", cfg.n_vocab, e)?;
        let output = match file.tensor("output.weight") {
            Some(_) => l.matrix("output.weight", cfg.n_vocab, e)?,
            None => token_embd,
        };
        Ok(Gpt2Weights {
            token_embd,
            position_embd: l.matrix("position_embd.weight", cfg.n_ctx, e)?,
            layers,
            ln_f_w: l.vector("output_norm.weight", e)?,
            ln_f_b: l.vector("output_norm.bias", e)?,
            output,
        })
    }
}
