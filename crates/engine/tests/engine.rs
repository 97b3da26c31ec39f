//! The engine on the default model: batch invariance (a request's tokens are the same alone,
//! beside 15 others arriving at other steps, and on any number of threads), shared prompts,
//! cancellation, finishing, the bounded queue.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use gguf_file::GgufFile;
use quill_engine::{queue, Engine, EngineConfig, Event, Finish, Request, SubmitError};
use quill_gpt2::{Gpt2Model, KvType};
use quill_sampler::SamplerConfig;

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/quill-shakespeare.gguf")
}

const PROMPTS: [&str; 8] = [
    "To be, or not to be",
    "HAMLET.\n",
    "Now is the winter of our discontent\nMade glorious summer by this sun of York;\nAnd all the clouds that lour'd upon our house\nIn the deep bosom of the ocean buried.",
    "O",
    "Friends, Romans, countrymen, lend me your ears;",
    "ACT I. SCENE I. Elsinore. A platform before the Castle.\n\nEnter Francisco and Barnardo, two sentinels.\n\nBARNARDO.\nWho's there?",
    "Of Man's first disobedience, and the fruit",
    "KING.\nWhat says",
];

/// Sixteen requests that differ in every way the engine cares about.
fn requests(model: &Gpt2Model<'_>) -> Vec<Request> {
    (0..16)
        .map(|i| {
            let prompt = model.tokenizer.encode(PROMPTS[i % PROMPTS.len()]).unwrap();
            let base = match i % 4 {
                0 => SamplerConfig::greedy(),
                1 => SamplerConfig { seed: Some(i as u64), ..SamplerConfig::default() },
                2 => SamplerConfig {
                    seed: Some(100 + i as u64),
                    temperature: 1.2,
                    top_k: 0,
                    top_p: 0.9,
                    repeat_penalty: 1.1,
                    frequency_penalty: 0.2,
                    ..SamplerConfig::default()
                },
                _ => SamplerConfig { seed: Some(7), temperature: 0.6, min_p: 0.1, ..SamplerConfig::default() },
            };
            let n = if i == 5 { 3 } else { 1 };
            let samplers = (0..n).map(|c| SamplerConfig { seed: base.seed.map(|s| s + c), ..base.clone() }).collect();
            Request {
                prompt,
                max_tokens: 24 + (i % 5) * 7,
                samplers,
                logprobs: (i % 3 == 0).then_some(3),
                prompt_logprobs: i == 9,
                ignore_eos: i % 2 == 0,
                end_tokens: None,
            }
        })
        .collect()
}

fn config(n_parallel: usize) -> EngineConfig {
    // A small chunk, so that the longer prompts run in several chunks.
    EngineConfig {
        n_parallel,
        n_ctx: 0,
        chunk: 16,
        max_queue: 64,
        kv_type: KvType::F16,
        row_invariant: true,
        prefix_cache: true,
    }
}

/// Every completion's events, per request.
type Outputs = Vec<Vec<Vec<Event>>>;

/// Runs `reqs` on `threads` threads; request `i` is submitted before step `arrive[i]`.
fn run(model: &Gpt2Model<'_>, n_parallel: usize, reqs: &[Request], arrive: &[usize], threads: usize) -> Outputs {
    run_cfg(model, config(n_parallel), reqs, arrive, threads).0
}

/// [`run`] with these settings; also returns the prefix cache's (hits, tokens reused).
fn run_cfg(
    model: &Gpt2Model<'_>,
    cfg: EngineConfig,
    reqs: &[Request],
    arrive: &[usize],
    threads: usize,
) -> (Outputs, (u64, u64)) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let (client, inbox) = queue(64);
        let mut engine = Engine::new(model, cfg, &inbox).unwrap();
        let mut streams: Vec<Option<Vec<quill_engine::SeqStream>>> = reqs.iter().map(|_| None).collect();
        let mut step = 0;
        loop {
            for (i, r) in reqs.iter().enumerate() {
                if arrive[i] == step {
                    streams[i] = Some(client.submit(vec![r.clone()]).unwrap().pop().unwrap());
                }
            }
            let worked = engine.step(&inbox);
            step += 1;
            if !worked && arrive.iter().all(|&a| a < step) {
                break;
            }
            assert!(step < 10_000, "the engine does not finish");
        }
        let st = client.stats();
        let cache = (st.prefix_hits.load(Ordering::Relaxed), st.prefix_tokens_reused.load(Ordering::Relaxed));
        let out = streams
            .into_iter()
            .map(|s| {
                s.unwrap()
                    .into_iter()
                    .map(|mut s| {
                        let mut evs = Vec::new();
                        s.drain_into(&mut evs);
                        assert!(matches!(evs.last(), Some(Event::Done(_))), "unfinished: {evs:?}");
                        evs
                    })
                    .collect()
            })
            .collect();
        (out, cache)
    })
}

/// Events as comparable bits (a prompt's first token has a NaN log-probability).
fn bits(out: &[Vec<Event>]) -> Vec<Vec<String>> {
    let tok = |t: &quill_engine::TokenOut| {
        let top: Vec<(u32, u32)> = t.top().iter().map(|&(id, lp)| (id, lp.to_bits())).collect();
        format!("{} {:08x} {top:?}", t.id, t.logprob.to_bits())
    };
    out.iter()
        .map(|evs| {
            evs.iter()
                .map(|e| match e {
                    Event::Prompt(t) => format!("prompt {}", tok(t)),
                    Event::Token(t) => format!("token {}", tok(t)),
                    Event::Done(f) => format!("done {f:?}"),
                })
                .collect()
        })
        .collect()
}

fn tokens(evs: &[Event]) -> Vec<u32> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Token(t) => Some(t.id),
            _ => None,
        })
        .collect()
}

#[test]
fn tokens_do_not_depend_on_the_batch_nor_the_threads() {
    let file = GgufFile::open(model_path()).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let reqs = requests(&model);
    // Alone: one request at a time, one thread, one more slot than its completions need.
    let alone: Outputs = reqs.iter().map(|r| run(&model, 3, std::slice::from_ref(r), &[0], 1).remove(0)).collect();
    for (i, out) in alone.iter().enumerate() {
        for evs in out {
            assert!(!tokens(evs).is_empty(), "request {i} generated nothing: {evs:?}");
        }
    }
    // Together: 16 requests (18 completions) on 18 slots, arriving at different steps, on 2
    // and 3 threads; and all at once on fewer slots than completions (some wait in the queue).
    let staggered: Vec<usize> = (0..16).map(|i| (i * 7) % 23).collect();
    for (n_parallel, arrive, threads) in [(18, staggered.clone(), 2), (18, staggered, 3), (6, vec![0; 16], 2)] {
        let together = run(&model, n_parallel, &reqs, &arrive, threads);
        for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
            // Events carry token ids, logprobs and finish reasons: compared bit for bit.
            assert!(
                bits(a) == bits(t),
                "request {i} differs beside others ({n_parallel} slots, {threads} threads):\n{:?}\n{:?}",
                bits(a),
                bits(t)
            );
        }
    }
    // The completions of one prompt are those of separate requests with their seeds.
    let r5 = &reqs[5];
    for (c, s) in r5.samplers.iter().enumerate() {
        let single = Request { samplers: vec![s.clone()], ..r5.clone() };
        let out = run(&model, 1, &[single], &[0], 1);
        assert_eq!(bits(&out[0]), bits(&alone[5][c..c + 1]), "completion {c} of a shared prompt");
    }
    // Prompt scores come first, one per prompt token, then the generated tokens.
    let scored = &alone[9][0];
    let n_prompt = reqs[9].prompt.len();
    assert!(scored[..n_prompt].iter().all(|e| matches!(e, Event::Prompt(_))));
    assert!(matches!(scored[n_prompt], Event::Token(_)));
    let Event::Prompt(first) = &scored[0] else { unreachable!() };
    assert!(first.logprob.is_nan());
    for e in &scored[1..n_prompt] {
        let Event::Prompt(t) = e else { unreachable!() };
        assert!(t.logprob <= 0.0 && t.logprob.is_finite(), "{t:?}");
    }
}

#[test]
fn finished_and_cancelled_sequences_free_their_slot_in_the_same_step() {
    let file = GgufFile::open(model_path()).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let (client, inbox) = queue(4);
    let mut engine = Engine::new(&model, config(2), &inbox).unwrap();
    let prompt = model.tokenizer.encode("To be, or not to be").unwrap();
    let req = |max_tokens| Request {
        prompt: prompt.clone(),
        max_tokens,
        samplers: vec![SamplerConfig::greedy()],
        logprobs: None,
        prompt_logprobs: false,
        ignore_eos: true,
        end_tokens: None,
    };
    let mut short = client.submit(vec![req(2)]).unwrap().pop().unwrap().pop().unwrap();
    let long = client.submit(vec![req(1000)]).unwrap().pop().unwrap().pop().unwrap();
    assert!(engine.step(&inbox)); // both prompts, first tokens
    assert_eq!(engine.running(), 2);
    assert!(engine.step(&inbox)); // the short one's second and last token
    assert_eq!(engine.running(), 1, "a finished sequence frees its slot in its last step");
    let mut evs = Vec::new();
    short.drain_into(&mut evs);
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[2], Event::Done(Finish::Length));
    drop(long); // the client goes away
    engine.step(&inbox);
    assert_eq!(engine.running(), 0, "a cancelled sequence frees its slot at the next step");
    assert_eq!(client.stats().cancelled.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(!engine.step(&inbox));

    // The context fills up: the sequence ends with `Context`.
    let n_ctx = engine.config().n_ctx;
    let mut s = client.submit(vec![req(usize::MAX)]).unwrap().pop().unwrap().pop().unwrap();
    while engine.step(&inbox) {}
    let mut evs = Vec::new();
    s.drain_into(&mut evs);
    assert_eq!(evs.last(), Some(&Event::Done(Finish::Context)));
    assert_eq!(tokens(&evs).len(), n_ctx - prompt.len() + 1);
}

#[test]
fn the_queue_is_bounded_and_requests_are_checked() {
    let file = GgufFile::open(model_path()).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let (client, inbox) = queue(2);
    let req = Request {
        prompt: vec![1, 2, 3],
        max_tokens: 4,
        samplers: vec![SamplerConfig::greedy()],
        logprobs: None,
        prompt_logprobs: false,
        ignore_eos: false,
        end_tokens: None,
    };
    assert_eq!(client.submit(vec![req.clone()]).err(), Some(SubmitError::Loading));
    let mut engine = Engine::new(&model, config(1), &inbox).unwrap();
    let a = client.submit(vec![req.clone(), req.clone()]).unwrap();
    assert!(matches!(client.submit(vec![req.clone()]), Err(SubmitError::QueueFull { waiting: 2, max: 2 })));
    let n_vocab = model.config.n_vocab as u32;
    let bad = |r: Request| client.submit(vec![r]).err().unwrap().to_string();
    assert_eq!(bad(Request { prompt: vec![], ..req.clone() }), "the prompt is empty: it has no tokens");
    assert_eq!(
        client.submit(vec![req.clone(); 3]).err().unwrap().to_string(),
        "3 prompts in one request, more than can ever wait at once (2, --queue)"
    );
    assert_eq!(
        bad(Request { prompt: vec![n_vocab], ..req.clone() }),
        format!("token id {n_vocab} is outside the vocabulary ({n_vocab} tokens)")
    );
    assert_eq!(
        bad(Request { prompt: vec![1; 257], ..req.clone() }),
        "the prompt has 257 tokens, more than the context of 256"
    );
    assert_eq!(
        bad(Request { samplers: vec![SamplerConfig::greedy(); 2], ..req.clone() }),
        "n = 2 completions need 2 sequences at once; the server runs 1 (--parallel)"
    );
    while engine.step(&inbox) {}
    for mut s in a.into_iter().flatten() {
        let mut evs = Vec::new();
        s.drain_into(&mut evs);
        assert_eq!(evs.len(), 5, "{evs:?}");
    }
    client.close();
    assert_eq!(client.submit(vec![req]).err(), Some(SubmitError::Closed));
    engine.run(&inbox); // closed and idle: returns at once
}

#[test]
fn the_prefix_cache_reuses_whole_chunks_and_changes_nothing() {
    let file = GgufFile::open(model_path()).unwrap();
    let model = Gpt2Model::load(&file).unwrap();
    let enc = |t: &str| model.tokenizer.encode(t).unwrap();
    let shared = [enc(PROMPTS[5]), enc(PROMPTS[2])].concat();
    assert!(shared.len() > 3 * 16, "the shared part spans several chunks");
    let suffixes = ["\nFRANCISCO.", "\nHORATIO.\nFriends", "", "\nMARCELLUS.", "\nFRANCISCO.", " And"];
    let mut reqs: Vec<Request> = suffixes
        .iter()
        .enumerate()
        .map(|(i, s)| Request {
            prompt: [shared.clone(), enc(s)].concat(),
            max_tokens: 10 + i,
            samplers: vec![if i % 2 == 0 {
                SamplerConfig::greedy()
            } else {
                SamplerConfig { seed: Some(i as u64), ..SamplerConfig::default() }
            }],
            logprobs: (i % 3 == 0).then_some(2),
            ..Request::default()
        })
        .collect();
    // A prompt that shares less than a chunk, one scored from its start, and two completions.
    reqs.push(Request {
        prompt: shared[..10].to_vec(),
        max_tokens: 6,
        samplers: vec![SamplerConfig::greedy()],
        ..Request::default()
    });
    reqs.push(Request { prompt_logprobs: true, ..reqs[1].clone() });
    reqs.push(Request {
        samplers: vec![
            SamplerConfig { seed: Some(9), ..SamplerConfig::default() },
            SamplerConfig { seed: Some(10), ..SamplerConfig::default() },
        ],
        ..reqs[3].clone()
    });
    let n = reqs.len();
    let one_by_one: Vec<usize> = (0..n).map(|i| i * 40).collect();
    // A Q8_0 cache is copied between slots as blocks, as any other type.
    for (n_parallel, arrive, kv_type) in
        [(2, one_by_one, KvType::F16), (3, vec![0; n], KvType::F16), (3, vec![0; n], KvType::Q8_0)]
    {
        let on = EngineConfig { prefix_cache: true, kv_type, ..config(n_parallel) };
        let off = EngineConfig { prefix_cache: false, kv_type, ..config(n_parallel) };
        let (with, (hits, reused)) = run_cfg(&model, on, &reqs, &arrive, 2);
        let (without, (hits_off, _)) = run_cfg(&model, off, &reqs, &arrive, 2);
        for (i, (a, b)) in with.iter().zip(&without).enumerate() {
            // And each is what it gives alone (a scored prompt beside others once broke this).
            let alone = run_cfg(&model, off, std::slice::from_ref(&reqs[i]), &[0], 1).0.remove(0);
            assert!(bits(b) == bits(&alone), "request {i} differs beside others ({n_parallel} slots, {kv_type:?})");
            assert!(bits(a) == bits(b), "request {i} differs with the prefix cache ({n_parallel} slots, {kv_type:?})");
        }
        assert_eq!(hits_off, 0);
        assert!(hits > 0 && reused > 0, "{n_parallel} slots: no reuse");
        assert_eq!(reused % 16, 0, "only whole chunks are reused");
    }
}
