//! GPT-2's byte-level BPE, built with the `tokenizers` crate from GGUF metadata
//! (`tokenizer.ggml.tokens` + `tokenizer.ggml.merges`) or from a Hugging Face `tokenizer.json`,
//! and a streaming detokenizer that never emits a broken UTF-8 sequence.

use std::collections::HashMap;

use gguf_file::{Array, Metadata};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer as HfTokenizer};

use crate::{ModelError, TokenizerError};

/// llama.cpp's token types (`llama_token_type`): a control token such as `<|endoftext|>`.
pub const TOKEN_TYPE_NORMAL: i32 = 1;
pub const TOKEN_TYPE_CONTROL: i32 = 3;
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// GPT-2's tokenizer.
pub struct Tokenizer {
    inner: HfTokenizer,
    /// Raw bytes of each token (the inverse of the byte-to-unicode map); empty for control tokens.
    bytes: Vec<Vec<u8>>,
    /// The token strings, in id order.
    tokens: Vec<String>,
    eos: Option<u32>,
    bos: Option<u32>,
}

/// GPT-2's reversible byte-to-unicode map (`bytes_to_unicode` in OpenAI's encoder.py): printable
/// bytes map to themselves, the rest to code points from 256 up.
pub fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).expect("valid code point");
            next += 1;
            c
        };
    }
    table
}

fn token_bytes(token: &str, inverse: &HashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match inverse.get(&c) {
            Some(&b) => out.push(b),
            // Not a byte-level character (an added token written as plain text): its UTF-8.
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// Wraps an error of the `tokenizers` library, saying what was being done.
fn library<E: std::fmt::Display>(stage: &'static str) -> impl Fn(E) -> TokenizerError {
    move |e| TokenizerError::Library { stage, message: e.to_string() }
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(m: &Metadata) -> Result<Tokenizer, ModelError> {
        let model = m.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_owned()).into());
        }
        let tokens = m.get_strings("tokenizer.ggml.tokens")?.to_vec();
        let merges = m.get_strings("tokenizer.ggml.merges")?;
        let types: Vec<i32> = match m.get("tokenizer.ggml.token_type") {
            None => vec![TOKEN_TYPE_NORMAL; tokens.len()],
            Some(v) => match v.as_array() {
                Some(Array::I32(t)) if t.len() == tokens.len() => t.clone(),
                _ => return Err(TokenizerError::BadTokenTypes { n_tokens: tokens.len() }.into()),
            },
        };
        let id = |key: &'static str| -> Result<Option<u32>, ModelError> {
            match m.get(key) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(id) if (id as usize) < tokens.len() => Ok(Some(id as u32)),
                    _ => Err(TokenizerError::BadSpecialId { key, value: v.to_string(), n_tokens: tokens.len() }.into()),
                },
            }
        };
        let (bos, eos) = (id("tokenizer.ggml.bos_token_id")?, id("tokenizer.ggml.eos_token_id")?);
        let mut merge_pairs = Vec::with_capacity(merges.len());
        for (i, mg) in merges.iter().enumerate() {
            let (a, b) =
                mg.split_once(' ').ok_or_else(|| TokenizerError::MalformedMerge { index: i, merge: mg.clone() })?;
            merge_pairs.push((a.to_owned(), b.to_owned()));
        }
        let specials: Vec<usize> =
            (0..tokens.len()).filter(|&i| matches!(types[i], TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED)).collect();
        Self::build(tokens, merge_pairs, &specials, &types, bos, eos)
    }

    /// Builds the tokenizer from a Hugging Face `tokenizer.json`.
    pub fn from_tokenizer_json(json: &[u8]) -> Result<Tokenizer, ModelError> {
        let inner = HfTokenizer::from_bytes(json).map_err(library("reading tokenizer.json"))?;
        let n = inner.get_vocab_size(true);
        let mut tokens = vec![String::new(); n];
        for (tok, id) in inner.get_vocab(true) {
            match tokens.get_mut(id as usize) {
                Some(slot) => *slot = tok,
                None => return Err(TokenizerError::IdBeyondVocab { id, token: tok, n_vocab: n }.into()),
            }
        }
        let eos = inner.token_to_id("<|endoftext|>");
        let mut types = vec![TOKEN_TYPE_NORMAL; n];
        for (id, added) in inner.get_added_tokens_decoder() {
            if let Some(t) = types.get_mut(id as usize) {
                *t = if added.special { TOKEN_TYPE_CONTROL } else { TOKEN_TYPE_USER_DEFINED };
            }
        }
        Ok(Self::finish(inner, tokens, &types, eos, eos))
    }

    fn build(
        tokens: Vec<String>,
        merges: Vec<(String, String)>,
        specials: &[usize],
        types: &[i32],
        bos: Option<u32>,
        eos: Option<u32>,
    ) -> Result<Tokenizer, ModelError> {
        let mut vocab = Vocab::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            if vocab.insert(t.clone(), i as u32).is_some() {
                return Err(TokenizerError::DuplicateToken(t.clone()).into());
            }
        }
        // Check every merge ourselves: tokenizers 0.23 panics (a slice out of range) instead of
        // erring when a merge's result is longer than every token (found by fuzzing).
        let mut joined = String::new();
        for (i, (a, b)) in merges.iter().enumerate() {
            for part in [a, b] {
                if !vocab.contains_key(part.as_str()) {
                    let (merge, part) = (format!("{a} {b}"), part.clone());
                    return Err(TokenizerError::MergeOfUnknown { index: i, merge, part }.into());
                }
            }
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            if !vocab.contains_key(joined.as_str()) {
                let (merge, result) = (format!("{a} {b}"), joined.clone());
                return Err(TokenizerError::MergeMakesUnknown { index: i, merge, result }.into());
            }
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            // tokenizers 0.23 keeps each BPE's word cache in a thread-local map keyed by
            // instance and never frees it when the BPE is dropped: every tokenizer built leaks
            // its cache (found by fuzzing). Encoding measured as fast without it.
            .cache_capacity(0)
            .build()
            .map_err(library("building the BPE"))?;
        let mut inner = HfTokenizer::new(bpe);
        // GPT-2's tokenizer.json: no prefix space, trimmed offsets, GPT-2's split regex.
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let added: Vec<AddedToken> = specials.iter().map(|&i| AddedToken::from(tokens[i].clone(), true)).collect();
        inner.add_special_tokens(added).map_err(library("adding special tokens"))?;
        Ok(Self::finish(inner, tokens, types, bos, eos))
    }

    fn finish(inner: HfTokenizer, tokens: Vec<String>, types: &[i32], bos: Option<u32>, eos: Option<u32>) -> Tokenizer {
        let table = byte_to_char();
        let inverse: HashMap<char, u8> = table.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        let bytes = tokens
            .iter()
            .zip(types)
            .map(|(t, &ty)| if ty == TOKEN_TYPE_CONTROL { Vec::new() } else { token_bytes(t, &inverse) })
            .collect();
        Tokenizer { inner, bytes, tokens, eos, bos }
    }

    /// Token ids of `text`, exactly as GPT-2's tokenizer (special tokens such as
    /// `<|endoftext|>` written in the text are recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self.inner.encode_fast(text, false).map_err(library("encoding"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids` (control tokens are skipped; invalid UTF-8 becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if let Some(b) = self.bytes.get(id as usize) {
                bytes.extend_from_slice(b);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The raw bytes of one token (empty for control tokens and unknown ids).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The token strings in id order (byte-level form, as stored in GGUF).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
}

/// Turns a stream of tokens into text, holding back bytes until they form whole UTF-8
/// characters, so a character split across tokens is never printed broken.
#[derive(Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token's bytes and appends to `out` the text that is complete so far.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        self.pending.extend_from_slice(bytes);
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).expect("valid prefix"));
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return;
                        }
                        // Bytes that can never become valid: replace them and go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is still held back, with incomplete sequences replaced by U+FFFD.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// Holds back streamed text that might be the start of a stop string, and cuts the text at
/// the first stop string found.
#[derive(Clone, Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    pending: String,
}

impl StopFilter {
    /// A filter for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> StopFilter {
        StopFilter { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), pending: String::new() }
    }

    /// Adds text and appends to `out` what is safe to show; returns whether a stop string was
    /// found (the text from it on is dropped).
    pub fn push(&mut self, text: &str, out: &mut String) -> bool {
        self.pending.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            out.push_str(&self.pending[..at]);
            self.pending.clear();
            return true;
        }
        // Keep the longest suffix that is a prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.pending.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let cut = self.pending.len() - keep;
        out.push_str(&self.pending[..cut]);
        self.pending.drain(..cut);
        false
    }

    /// Appends whatever is held back (the stream ended without a stop string).
    pub fn finish(&mut self, out: &mut String) {
        out.push_str(&self.pending);
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_filter_holds_back_prefixes_and_cuts_at_the_stop() {
        let stops = vec!["\n\n".to_owned(), "THE END".to_owned()];
        let mut f = StopFilter::new(&stops);
        let mut out = String::new();
        assert!(!f.push("hello\n", &mut out));
        assert_eq!(out, "hello");
        assert!(!f.push("world THE", &mut out));
        assert_eq!(out, "hello\nworld ");
        assert!(f.push(" END and more", &mut out));
        assert_eq!(out, "hello\nworld ");
        let mut f = StopFilter::new(&stops);
        let mut out = String::new();
        assert!(!f.push("a\n", &mut out));
        f.finish(&mut out);
        assert_eq!(out, "a\n");
    }

    #[test]
    fn stop_filter_without_stops_passes_everything() {
        let mut f = StopFilter::new(&[String::new()]);
        let mut out = String::new();
        assert!(!f.push("abc", &mut out));
        assert_eq!(out, "abc");
    }

    #[test]
    fn byte_table_is_gpt2s() {
        let t = byte_to_char();
        assert_eq!(t[b' ' as usize], '\u{120}');
        assert_eq!(t[b'\n' as usize], '\u{10A}');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0], '\u{100}');
        let mut seen: Vec<char> = t.to_vec();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 256);
    }

    fn metadata(tokens: &[&str], merges: &[&str]) -> Metadata {
        let mut m = Metadata::new();
        m.insert("tokenizer.ggml.model", "gpt2");
        m.insert("tokenizer.ggml.tokens", Array::String(tokens.iter().map(|t| t.to_string()).collect()));
        m.insert("tokenizer.ggml.merges", Array::String(merges.iter().map(|t| t.to_string()).collect()));
        m
    }

    #[test]
    fn merges_outside_the_vocabulary_are_errors_not_panics() {
        // Regression (fuzz/artifacts/tokenizer): a merge whose result is longer than every token
        // made tokenizers panic.
        let err = Tokenizer::from_gguf(&metadata(&["a", "b"], &["a b"])).err().unwrap().to_string();
        assert!(err.contains("makes 'ab'"), "{err}");
        let err = Tokenizer::from_gguf(&metadata(&["a", "b", "ab"], &["a c"])).err().unwrap().to_string();
        assert!(err.contains("'c', which is not a token"), "{err}");
        let t = Tokenizer::from_gguf(&metadata(&["a", "b", "ab"], &["a b"])).unwrap();
        assert_eq!(t.encode("ab").unwrap(), [2]);
    }

    #[test]
    fn stream_decoder_holds_back_split_characters() {
        let mut d = StreamDecoder::new();
        let mut push = |b: &[u8]| {
            let mut s = String::new();
            d.push(b, &mut s);
            s
        };
        let snowman = "☃".as_bytes(); // 3 bytes
        assert_eq!(push(b"a"), "a");
        assert_eq!(push(&snowman[..1]), "");
        assert_eq!(push(&snowman[1..2]), "");
        assert_eq!(push(&[snowman[2], b'b']), "☃b");
        assert_eq!(push(&[0xff, b'c']), "\u{FFFD}c");
        assert_eq!(push(&snowman[..2]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
