//! Perplexity and KL divergence with llama.cpp's method (`tools/perplexity/perplexity.cpp`):
//! the text is cut into windows of `n_ctx` tokens, each evaluated from an empty cache and
//! scored on its second half (or, with a stride, on its last `stride` tokens), so that every
//! scored token has at least `n_ctx / 2` tokens of context.

use std::io::{Read, Write};
use std::path::Path;

use half::f16;

/// One evaluation window: `tokens[start..start + len]`, scoring the predictions made at
/// window positions `first..len - 1` (each predicts the token after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub len: usize,
    pub first: usize,
}

impl Window {
    /// Tokens scored in this window.
    pub fn scored(&self) -> usize {
        self.len - 1 - self.first
    }
}

/// Errors of setting up a perplexity run.
#[derive(Debug, thiserror::Error)]
pub enum PplError {
    #[error("the text has {n_tokens} tokens: at least {needed} are needed for a context of {n_ctx}")]
    TooShort { n_tokens: usize, needed: usize, n_ctx: usize },
    #[error("a context of {0} tokens is too small: at least 4 are needed")]
    CtxTooSmall(usize),
    #[error("a stride of {stride} is not between 1 and the context minus 1 ({max})")]
    BadStride { stride: usize, max: usize },
    #[error("{path}: {msg}")]
    LogitsFile { path: String, msg: String },
}

/// The windows llama-perplexity evaluates: non-overlapping chunks scored on their second half,
/// or with `stride`, windows every `stride` tokens scored on their last `stride` tokens.
pub fn windows(n_tokens: usize, n_ctx: usize, stride: Option<usize>) -> Result<Vec<Window>, PplError> {
    if n_ctx < 4 {
        return Err(PplError::CtxTooSmall(n_ctx));
    }
    if n_tokens < 2 * n_ctx {
        return Err(PplError::TooShort { n_tokens, needed: 2 * n_ctx, n_ctx });
    }
    Ok(match stride {
        None => (0..n_tokens / n_ctx).map(|i| Window { start: i * n_ctx, len: n_ctx, first: n_ctx / 2 }).collect(),
        Some(s) => {
            if s == 0 || s >= n_ctx {
                return Err(PplError::BadStride { stride: s, max: n_ctx - 1 });
            }
            let n = (n_tokens - n_ctx).div_ceil(s);
            (0..n).map(|i| Window { start: i * s, len: n_ctx, first: n_ctx - s - 1 }).collect()
        }
    })
}

/// Log-probabilities of a logits row in f64: `log p_i = l_i - max - ln(sum exp(l_j - max))`.
pub fn log_softmax(logits: &[f32], out: &mut [f64]) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = l as f64 - lse;
    }
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Running sums of a perplexity (and KL divergence) run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub count: usize,
    nll: f64,
    nll2: f64,
    nll_base: f64,
    kld: f64,
    kld2: f64,
    same_top: usize,
    kl_count: usize,
}

impl Stats {
    /// Adds one scored token: the model's log-probs and the token that came next.
    pub fn add(&mut self, logp: &[f64], next: u32) {
        let v = -logp[next as usize];
        self.nll += v;
        self.nll2 += v * v;
        self.count += 1;
    }

    /// Adds the comparison with the base model's log-probs at the same position.
    pub fn add_kl(&mut self, logp: &[f64], base: &[f64], next: u32) {
        let kld: f64 = base.iter().zip(logp).map(|(&b, &m)| b.exp() * (b - m)).sum();
        self.kld += kld;
        self.kld2 += kld * kld;
        self.nll_base -= base[next as usize];
        self.same_top += usize::from(argmax(logp) == argmax(base));
        self.kl_count += 1;
    }

    /// exp(mean negative log-likelihood).
    pub fn ppl(&self) -> f64 {
        (self.nll / self.count as f64).exp()
    }

    /// llama.cpp's uncertainty: ppl x the standard error of the mean NLL.
    pub fn ppl_stderr(&self) -> f64 {
        let n = self.count as f64;
        let mean = self.nll / n;
        let var = self.nll2 / n - mean * mean;
        if var > 0.0 && self.count > 1 {
            (var / (n - 1.0)).sqrt() * self.ppl()
        } else {
            0.0
        }
    }

    pub fn has_kl(&self) -> bool {
        self.kl_count > 0
    }

    pub fn ppl_base(&self) -> f64 {
        (self.nll_base / self.kl_count as f64).exp()
    }

    pub fn kld_mean(&self) -> f64 {
        self.kld / self.kl_count as f64
    }

    pub fn kld_stderr(&self) -> f64 {
        let n = self.kl_count as f64;
        let mean = self.kld / n;
        let var = self.kld2 / n - mean * mean;
        if var > 0.0 && self.kl_count > 1 {
            (var / (n - 1.0)).sqrt()
        } else {
            0.0
        }
    }

    pub fn same_top_pct(&self) -> f64 {
        100.0 * self.same_top as f64 / self.kl_count as f64
    }

    pub fn ppl_ratio(&self) -> f64 {
        self.ppl() / self.ppl_base()
    }
}

const MAGIC: &[u8; 8] = b"QUILLLGP";
const VERSION: u32 = 1;
/// Log-probs below this are stored as this (their probability is below 1e-26).
const LOGP_FLOOR: f64 = -60.0;

/// Base log-probabilities saved by `quill perplexity --save-logits` for later KL divergence
/// runs: a header naming the text (its tokens) and windowing, then for every scored position
/// the full log-probability row as f16 (rows are renormalised when read).
pub struct LogitsWriter<W: Write> {
    out: W,
}

impl<W: Write> LogitsWriter<W> {
    pub fn new(mut out: W, n_vocab: usize, n_ctx: usize, stride: usize, tokens: &[u32]) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        for v in [VERSION, n_vocab as u32, n_ctx as u32, stride as u32, tokens.len() as u32] {
            out.write_all(&v.to_le_bytes())?;
        }
        for t in tokens {
            out.write_all(&t.to_le_bytes())?;
        }
        Ok(LogitsWriter { out })
    }

    pub fn write_row(&mut self, logp: &[f64], buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        for &l in logp {
            buf.extend_from_slice(&f16::from_f64(l.max(LOGP_FLOOR)).to_le_bytes());
        }
        self.out.write_all(buf)
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads rows written by [`LogitsWriter`], after checking that the file was made from the same
/// tokens, vocabulary and windowing.
pub struct LogitsReader<R: Read> {
    inp: R,
    n_vocab: usize,
    buf: Vec<u8>,
}

impl<R: Read> LogitsReader<R> {
    pub fn open(
        mut inp: R,
        path: &Path,
        n_vocab: usize,
        n_ctx: usize,
        stride: usize,
        tokens: &[u32],
    ) -> Result<Self, PplError> {
        let err = |msg: String| PplError::LogitsFile { path: path.display().to_string(), msg };
        let mut magic = [0u8; 8];
        inp.read_exact(&mut magic).map_err(|e| err(e.to_string()))?;
        if &magic != MAGIC {
            return Err(err("not a file written by quill perplexity --save-logits".into()));
        }
        let mut word = || -> Result<u32, PplError> {
            let mut b = [0u8; 4];
            inp.read_exact(&mut b).map_err(|e| err(format!("truncated header: {e}")))?;
            Ok(u32::from_le_bytes(b))
        };
        let (version, v, c, s, n) = (word()?, word()?, word()?, word()?, word()?);
        if version != VERSION {
            return Err(err(format!("version {version}, expected {VERSION}")));
        }
        if (v as usize, c as usize, s as usize) != (n_vocab, n_ctx, stride) {
            return Err(err(format!(
                "made with vocabulary {v}, context {c}, stride {s}; this run has {n_vocab}, {n_ctx}, {stride}"
            )));
        }
        if n as usize != tokens.len() {
            return Err(err(format!("made from a text of {n} tokens, this one has {}", tokens.len())));
        }
        let mut b = vec![0u8; n as usize * 4];
        inp.read_exact(&mut b).map_err(|e| err(format!("truncated token list: {e}")))?;
        if b.chunks_exact(4).zip(tokens).any(|(x, &t)| u32::from_le_bytes([x[0], x[1], x[2], x[3]]) != t) {
            return Err(err("made from a different text".into()));
        }
        Ok(LogitsReader { inp, n_vocab, buf: vec![0u8; n_vocab * 2] })
    }

    /// The next row of log-probs (renormalised).
    pub fn read_row(&mut self, out: &mut [f64]) -> std::io::Result<()> {
        self.inp.read_exact(&mut self.buf)?;
        let mut sum = 0.0;
        for (o, b) in out.iter_mut().zip(self.buf.chunks_exact(2)) {
            *o = f16::from_le_bytes([b[0], b[1]]).to_f64();
            sum += o.exp();
        }
        let lse = sum.ln();
        for o in out.iter_mut().take(self.n_vocab) {
            *o -= lse;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_llama_perplexity() {
        let w = windows(100, 32, None).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w[1], Window { start: 32, len: 32, first: 16 });
        assert_eq!(w[0].scored(), 15);
        let s = windows(100, 32, Some(8)).unwrap();
        assert_eq!(s.len(), 9); // ceil((100 - 32) / 8)
        assert_eq!(s[2], Window { start: 16, len: 32, first: 23 });
        assert_eq!(s[0].scored(), 8);
        assert!(windows(63, 32, None).is_err());
        assert!(windows(100, 32, Some(32)).is_err());
    }

    #[test]
    fn stats_of_a_uniform_model() {
        let mut s = Stats::default();
        let mut lp = vec![0.0; 4];
        log_softmax(&[1.0, 1.0, 1.0, 1.0], &mut lp);
        for t in 0..4 {
            s.add(&lp, t);
            s.add_kl(&lp, &lp, t);
        }
        assert!((s.ppl() - 4.0).abs() < 1e-12);
        assert_eq!(s.ppl_stderr(), 0.0);
        assert!(s.kld_mean().abs() < 1e-15);
        assert_eq!(s.same_top_pct(), 100.0);
        assert!((s.ppl_ratio() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn logits_file_round_trip_and_checks() {
        let tokens = [5u32, 6, 7, 8];
        let mut w = LogitsWriter::new(Vec::new(), 3, 2, 0, &tokens).unwrap();
        let mut lp = vec![0.0; 3];
        log_softmax(&[0.5, -1.0, 2.0], &mut lp);
        let mut buf = Vec::new();
        w.write_row(&lp, &mut buf).unwrap();
        let bytes = w.finish().unwrap();
        let p = Path::new("x.lgp");
        let mut r = LogitsReader::open(&bytes[..], p, 3, 2, 0, &tokens).unwrap();
        let mut back = vec![0.0; 3];
        r.read_row(&mut back).unwrap();
        for (a, b) in back.iter().zip(&lp) {
            assert!((a - b).abs() < 2e-3, "{a} vs {b}");
        }
        assert!(LogitsReader::open(&bytes[..], p, 3, 2, 0, &[5, 6, 7, 9]).is_err());
        assert!(LogitsReader::open(&bytes[..], p, 4, 2, 0, &tokens).is_err());
        assert!(LogitsReader::open(&b"nonsense"[..], p, 3, 2, 0, &tokens).is_err());
    }
}
