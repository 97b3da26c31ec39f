//! The batched forward pass (`BatchSession`) on every weight format: a sequence's logits are bit
//! for bit the same alone and beside other sequences (prompt chunks and decode rows mixed), on
//! 1 and 3 threads; one span is exactly `Session`'s forward; malformed batches are refused.

mod common;

use common::*;
use quill::gguf::GgufFile;
use quill::gpt2::{Batch, BatchOptions, Gpt2Model, KvType, ModelError, SessionOptions, SpanLogits};
use quill::quant::FileType;

/// Logits rows handed out by a forward pass, in order.
fn forward(s: &mut quill::gpt2::BatchSession<'_, '_>, b: &Batch, n_vocab: usize) -> Vec<Vec<f32>> {
    let mut rows = Vec::new();
    s.forward(b, &mut |_, block| rows.extend(block.chunks_exact(n_vocab).map(<[f32]>::to_vec))).unwrap();
    rows
}

#[test]
fn a_sequence_is_the_same_alone_and_in_a_batch() {
    let meta = golden_meta();
    let spec = spec_of(&meta["models"][1], 50257);
    let cases = [FileType::F32, FileType::F16, FileType::Q8_0, FileType::Q4_0, FileType::Q4_K_M]
        .map(|ft| (ft, KvType::F16))
        .into_iter()
        .chain([(FileType::Q4_0, KvType::Q8_0), (FileType::F32, KvType::Q8_0)]);
    for (ft, kv_type) in cases {
        let path = gguf("h32x4", &spec, ft);
        let file = GgufFile::open(&path).unwrap();
        let model = Gpt2Model::load(&file).unwrap();
        let v = model.config.n_vocab;
        let a = model.tokenizer.encode("It was the best of times, it was the worst of times").unwrap();
        let b = model.tokenizer.encode("Call me Ishmael.").unwrap();
        let opts = BatchOptions { n_seq: 3, n_ctx: 64, n_batch: 32, logit_rows: 2, kv_type, ..Default::default() };
        let run = |threads: usize, crowd: bool| -> Vec<Vec<f32>> {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut s = model.batch_session(opts).unwrap();
                let mut batch = Batch::with_capacity(32, 3);
                let mut out = Vec::new();
                // Sequence `a` in slot 1: its prompt in one chunk, then three decode steps.
                batch.push(1, 0, &a, SpanLogits::Last);
                if crowd {
                    batch.push(0, 0, &b, SpanLogits::From(2));
                    batch.push(2, 0, &b[..3], SpanLogits::None);
                }
                let rows = forward(&mut s, &batch, v);
                out.push(rows[0].clone());
                for step in 0..3u32 {
                    batch.clear();
                    if crowd {
                        batch.push(2, 3 + step as usize, &[10 + step], SpanLogits::Last);
                    }
                    batch.push(1, a.len() + step as usize, &[100 + step], SpanLogits::Last);
                    if crowd && step == 1 {
                        batch.push(0, b.len(), &b, SpanLogits::Last);
                    }
                    let rows = forward(&mut s, &batch, v);
                    out.push(rows[usize::from(crowd)].clone());
                }
                out
            })
        };
        let alone = run(1, false);
        for (threads, crowd) in [(1, true), (3, true), (3, false)] {
            let got = run(threads, crowd);
            for (i, (x, y)) in alone.iter().zip(&got).enumerate() {
                assert!(
                    x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{ft:?} {kv_type:?}: step {i} differs ({threads} threads, crowd {crowd})"
                );
            }
        }
        // One span with row-invariance off is the very forward pass of a Session.
        let mut session = model.session(SessionOptions { n_ctx: 64, n_batch: 32, kv_type }).unwrap();
        let want = session.prefill(&a).unwrap().to_vec();
        let mut s = model.batch_session(BatchOptions { row_invariant: false, ..opts }).unwrap();
        let mut batch = Batch::with_capacity(32, 3);
        batch.push(0, 0, &a, SpanLogits::Last);
        assert_eq!(forward(&mut s, &batch, v)[0], want, "{ft:?} {kv_type:?}");
    }
}

#[test]
fn malformed_batches_are_refused() {
    let meta = golden_meta();
    let spec = spec_of(&meta["models"][1], 50257);
    let file = GgufFile::open(gguf("h32x4", &spec, FileType::Q8_0)).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let opts = BatchOptions { n_seq: 2, n_ctx: 16, n_batch: 8, ..Default::default() };
    let mut s = model.batch_session(opts).unwrap();
    let err =
        |s: &mut quill::gpt2::BatchSession<'_, '_>, b: &Batch| s.forward(b, &mut |_, _| {}).unwrap_err().to_string();
    let mut b = Batch::with_capacity(8, 2);
    assert_eq!(err(&mut s, &b), "empty input: nothing to evaluate");
    b.push(0, 0, &[1, 2], SpanLogits::Last);
    b.push(0, 2, &[3], SpanLogits::Last);
    assert_eq!(err(&mut s, &b), "bad batch: slot 0 appears twice in one batch");
    b.clear();
    b.push(2, 0, &[1], SpanLogits::Last);
    assert_eq!(err(&mut s, &b), "bad batch: slot 2 does not exist (the session has 2)");
    b.clear();
    b.push(1, 3, &[1], SpanLogits::Last);
    assert_eq!(err(&mut s, &b), "bad batch: slot 1 holds 0 positions, a batch cannot start it at 3");
    b.clear();
    b.push(1, 0, &[1; 9], SpanLogits::Last);
    assert_eq!(err(&mut s, &b), "bad batch: 9 tokens, the session takes at most 8");
    b.clear();
    b.push(1, 0, &[99_999], SpanLogits::Last);
    assert!(matches!(s.forward(&b, &mut |_, _| {}), Err(ModelError::BadToken { id: 99_999, .. })));
    b.clear();
    b.push(1, 0, &[1; 8], SpanLogits::None);
    s.forward(&b, &mut |_, _| {}).unwrap();
    b.clear();
    b.push(1, 8, &[1; 8], SpanLogits::None);
    s.forward(&b, &mut |_, _| {}).unwrap();
    b.clear();
    b.push(1, 16, &[1], SpanLogits::Last);
    assert!(matches!(s.forward(&b, &mut |_, _| {}), Err(ModelError::ContextFull { needed: 17, .. })));
    assert_eq!(s.seq_len(1), 16);
    s.copy_seq(1, 0, 10).unwrap();
    assert_eq!(s.seq_len(0), 10);
    assert!(s.copy_seq(0, 1, 11).is_err());
    s.clear_seq(0);
    assert_eq!(s.seq_len(0), 0);
    assert_eq!(s.kv_bytes_per_seq() * 2, s.kv_bytes());
}

#[test]
fn scoring_packs_texts_without_changing_their_numbers() {
    use quill::gpt2::score::{Scorer, TextScore};
    let meta = golden_meta();
    let spec = spec_of(&meta["models"][1], 50257);
    let text = "It was the best of times, it was the worst of times, it was the age of wisdom, it was the \
                age of foolishness, it was the epoch of belief, it was the epoch of incredulity.";
    for ft in [FileType::F32, FileType::F16, FileType::Q4_0] {
        let path = gguf("h32x4", &spec, ft);
        let file = GgufFile::open(&path).unwrap();
        let model = Gpt2Model::load(&file).unwrap();
        let all = model.tokenizer.encode(text).unwrap();
        assert!(all.len() > 40);
        // Texts of 1 to 41 tokens: none scored, one window in one chunk or two (batches of 16
        // tokens), several windows (context 32).
        let texts: Vec<Vec<u32>> = [1, 2, 5, 17, 41, 16, 33, 3].iter().map(|&n| all[..n].to_vec()).collect();
        let score = |threads: usize, texts: Vec<Vec<u32>>, slots: usize| -> Vec<TextScore> {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut s = Scorer::with_batch(&model, texts, 32, 16, slots).unwrap();
                while s.step().unwrap() {}
                s.finish()
            })
        };
        let alone: Vec<TextScore> = texts.iter().flat_map(|t| score(1, vec![t.clone()], 1)).collect();
        for (t, a) in texts.iter().zip(&alone) {
            assert_eq!(a.logprobs.len(), t.len().saturating_sub(1));
            assert!(a.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0), "{ft:?}");
        }
        for (threads, slots) in [(1, 64), (3, 64), (3, 3)] {
            let packed = score(threads, texts.clone(), slots);
            for (i, (a, p)) in alone.iter().zip(&packed).enumerate() {
                assert_eq!(a.ids, p.ids);
                let same = a.logprobs.iter().zip(&p.logprobs).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{ft:?}: text {i} differs packed ({threads} threads, {slots} slots)");
            }
        }
    }
}
