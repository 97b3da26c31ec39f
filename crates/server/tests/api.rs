//! `quill serve` over real HTTP (reqwest) on an ephemeral loopback port, with the default
//! model: completions whole and streamed, 16 concurrent clients, every bad request,
//! cancellation, the full queue, the small endpoints, shutdown.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completes_and_streams() {
    let s = TestServer::start(config()).await;
    let body = json!({"model": "anything", "prompt": "To be, or not to be", "max_tokens": 12, "seed": 3});
    let v = s.complete(&body).await;
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "quill-shakespeare");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    let c = &v["choices"][0];
    assert_eq!((c["index"].as_u64(), c["finish_reason"].as_str()), (Some(0), Some("length")));
    assert!(c["logprobs"].is_null());
    let prompt_tokens =
        s.post("/tokenize", &json!({"content": "To be, or not to be"})).await.1["tokens"].as_array().unwrap().len()
            as u64;
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": prompt_tokens, "completion_tokens": 12, "total_tokens": prompt_tokens + 12})
    );
    let text = c["text"].as_str().unwrap().to_owned();
    assert!(!text.is_empty());

    // The same request streamed: the same text, chunk by chunk, then usage and [DONE].
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let events = s.stream(&sbody).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let usage = &events[events.len() - 2];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 12);
    assert_eq!(streamed_text(&events, 0), (text.clone(), Some("length".into())));
    assert!(events.len() >= 5, "tokens come in several chunks: {events:?}");
    // One chunk per token, as OpenAI streams.
    sbody["logprobs"] = json!(0);
    let events = s.stream(&sbody).await;
    let per_chunk: Vec<usize> =
        events.iter().filter_map(|e| e["choices"][0]["logprobs"]["tokens"].as_array().map(Vec::len)).collect();
    assert_eq!(per_chunk, vec![1; 12]);
    sbody["logprobs"] = Value::Null;
    // Without include_usage there is no usage chunk.
    sbody["stream_options"] = Value::Null;
    let events = s.stream(&sbody).await;
    assert!(events.iter().all(|e| e.get("usage").is_none()));

    // Greedy: temperature 0 is the model's likeliest continuation, whatever the seed.
    let g = |seed| json!({"prompt": "HAMLET.\n", "max_tokens": 8, "temperature": 0, "seed": seed});
    let (a, b) = (s.complete(&g(1)).await, s.complete(&g(2)).await);
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);

    // A stop string ends the text before it, with finish_reason "stop".
    let full = s.complete(&json!({"prompt": "HAMLET.\n", "max_tokens": 40, "temperature": 0})).await;
    let full = full["choices"][0]["text"].as_str().unwrap().to_owned();
    let stop = full.split_whitespace().nth(2).unwrap().to_owned();
    let cut = s
        .complete(&json!({"prompt": "HAMLET.\n", "max_tokens": 40, "temperature": 0, "stop": [stop.clone(), "zzzz"]}))
        .await;
    let cut_text = cut["choices"][0]["text"].as_str().unwrap();
    assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    assert_eq!(cut_text, &full[..full.find(&stop).unwrap()]);
    let events = s
        .stream(&json!({"prompt": "HAMLET.\n", "max_tokens": 40, "temperature": 0, "stop": stop, "stream": true}))
        .await;
    assert_eq!(streamed_text(&events, 0), (cut_text.to_owned(), Some("stop".into())));

    // n completions of each of two prompts: indexes prompt * n + c; completion c of a prompt
    // is what a request with seed + c gives.
    let v = s.complete(&json!({"prompt": ["O", "KING.\n"], "n": 2, "max_tokens": 6, "seed": 10})).await;
    let texts: Vec<&str> = v["choices"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    assert_eq!(
        v["choices"].as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let one = s.complete(&json!({"prompt": "KING.\n", "max_tokens": 6, "seed": 11})).await;
    assert_eq!(texts[3], one["choices"][0]["text"]);
    assert_eq!(v["usage"]["completion_tokens"], 24);

    // Token ids as the prompt; echo; logprobs.
    let ids = s.post("/tokenize", &json!({"content": "KING.\n"})).await.1["tokens"].clone();
    let v = s.complete(&json!({"prompt": ids, "max_tokens": 6, "seed": 11, "echo": true})).await;
    assert_eq!(v["choices"][0]["text"].as_str().unwrap(), format!("KING.\n{}", texts[3]));
    let v =
        s.complete(&json!({"prompt": "KING.\n", "max_tokens": 4, "logprobs": 3, "echo": true, "temperature": 0})).await;
    let lp = &v["choices"][0]["logprobs"];
    let n_prompt = ids.as_array().unwrap().len();
    assert_eq!(lp["tokens"].as_array().unwrap().len(), n_prompt + 4);
    assert!(lp["token_logprobs"][0].is_null() && lp["top_logprobs"][0].is_null());
    for i in n_prompt..n_prompt + 4 {
        // Greedy: the chosen token is the likeliest alternative.
        let chosen = lp["token_logprobs"][i].as_f64().unwrap();
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert_eq!(top.len(), 3);
        let best = top.values().map(|x| x.as_f64().unwrap()).fold(f64::MIN, f64::max);
        assert!(chosen <= 0.0 && (chosen - best).abs() < 1e-6, "{lp}");
    }
    // max_tokens 0 with echo: the prompt back, nothing generated.
    let v = s.complete(&json!({"prompt": "KING.\n", "max_tokens": 0, "echo": true})).await;
    assert_eq!(
        (v["choices"][0]["text"].as_str(), v["usage"]["completion_tokens"].as_u64()),
        (Some("KING.\n"), Some(0))
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_clients_get_exactly_what_they_get_alone() {
    let mut cfg = config();
    cfg.engine.n_parallel = 16;
    cfg.engine.chunk = 8;
    cfg.engine.max_queue = 32;
    let s = TestServer::start(cfg).await;
    let prompts = [
        "To be, or not to be",
        "HAMLET.\n",
        "Now is the winter of our discontent\nMade glorious summer by this sun of York;",
        "O",
    ];
    let bodies: Vec<Value> = (0..16)
        .map(|i| {
            let temperature = [0.0, 0.7, 1.0, 1.3][i % 4];
            let mut b = json!({
                "prompt": prompts[i % 4],
                "max_tokens": 20 + i,
                "logprobs": 2,
                "seed": 1000 + i,
                "temperature": temperature,
                "top_p": if i % 3 == 0 { 0.9 } else { 1.0 },
                "frequency_penalty": if i % 5 == 0 { 0.5 } else { 0.0 },
                "ignore_eos": true,
            });
            if i % 2 == 1 {
                b["stream"] = json!(true);
            }
            b
        })
        .collect();
    // Text and per-token log-probabilities (as JSON numbers: bit for bit as f32).
    async fn result(s: &TestServer, b: &Value) -> (String, Value) {
        if b["stream"] == json!(true) {
            let events = s.stream(b).await;
            let lps: Vec<Value> = events
                .iter()
                .filter_map(|e| e.get("choices")?.get(0)?.get("logprobs")?.get("token_logprobs").cloned())
                .collect();
            (
                streamed_text(&events, 0).0,
                json!(lps.into_iter().flat_map(|v| v.as_array().unwrap().clone()).collect::<Vec<_>>()),
            )
        } else {
            let v = s.complete(b).await;
            (
                v["choices"][0]["text"].as_str().unwrap().to_owned(),
                v["choices"][0]["logprobs"]["token_logprobs"].clone(),
            )
        }
    }
    let mut alone = Vec::new();
    for b in &bodies {
        alone.push(result(&s, b).await);
    }
    // All at once, arriving a few milliseconds apart, twice.
    for round in 0..2 {
        let together = futures_util::future::join_all(bodies.iter().enumerate().map(|(i, b)| {
            let s = &s;
            async move {
                tokio::time::sleep(Duration::from_millis(((i * 7 + round * 3) % 16) as u64 * 3)).await;
                result(s, b).await
            }
        }))
        .await;
        for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
            assert_eq!(a, t, "client {i} got other tokens beside 15 others (round {round})");
        }
    }
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_naming_the_field() {
    let mut cfg = config();
    cfg.max_body = 4096;
    let s = TestServer::start(cfg).await;
    let long_prompt: Vec<u32> = vec![13; 257];
    let cases: Vec<(Value, u16, Option<&str>, &str)> = vec![
        (
            json!({"prompt": "a", "max_tokens": "ten"}),
            400,
            Some("max_tokens"),
            "max_tokens must be an integer, got a string",
        ),
        (
            json!({"prompt": "a", "max_tokens": -1}),
            400,
            Some("max_tokens"),
            "max_tokens must be an integer >= 0, got -1",
        ),
        (json!({"prompt": "a", "max_tokens": 1.5}), 400, Some("max_tokens"), "max_tokens must be an integer, got 1.5"),
        (
            json!({"prompt": 42}),
            400,
            Some("prompt"),
            "prompt must be a string, a list of strings or token ids, got a number",
        ),
        (json!({"prompt": []}), 400, Some("prompt"), "prompt is an empty list"),
        (
            json!({"prompt": [1, 99999999]}),
            400,
            Some("prompt"),
            "token id 99999999 is outside the vocabulary (0..50257)",
        ),
        (json!({"prompt": [1, -2]}), 400, Some("prompt"), "token ids must be integers >= 0, got -2"),
        (
            json!({"prompt": long_prompt}),
            400,
            Some("prompt"),
            "the prompt has 257 tokens, more than the context of 256",
        ),
        (
            json!({"prompt": "a", "temperature": -1}),
            400,
            Some("temperature"),
            "temperature must be a number in [0, 100], got -1",
        ),
        (
            json!({"prompt": "a", "temperature": "hot"}),
            400,
            Some("temperature"),
            "temperature must be a number, got a string",
        ),
        (json!({"prompt": "a", "top_p": 0}), 400, Some("top_p"), "top_p must be in (0, 1], got 0"),
        (json!({"prompt": "a", "top_k": -5}), 400, Some("top_k"), "top_k must be an integer >= 0"),
        (json!({"prompt": "a", "min_p": 2}), 400, Some("min_p"), "min_p must be in [0, 1], got 2"),
        (json!({"prompt": "a", "presence_penalty": 3}), 400, Some("presence_penalty"), "in [-2, 2]"),
        (json!({"prompt": "a", "frequency_penalty": -3}), 400, Some("frequency_penalty"), "in [-2, 2]"),
        (
            json!({"prompt": "a", "repeat_penalty": 0}),
            400,
            Some("repeat_penalty"),
            "repeat_penalty must be in (0, 100], got 0",
        ),
        (json!({"prompt": "a", "n": 0}), 400, Some("n"), "n must be an integer in 1..=128, got 0"),
        (
            json!({"prompt": "a", "n": 5}),
            400,
            Some("n"),
            "n = 5 completions need 5 sequences at once; the server runs 4 (--parallel)",
        ),
        (
            json!({"prompt": "a", "logprobs": 21}),
            400,
            Some("logprobs"),
            "logprobs must be an integer in 0..=20, got 21",
        ),
        (
            json!({"prompt": "a", "stop": 5}),
            400,
            Some("stop"),
            "stop must be a string or a list of strings, got a number",
        ),
        (json!({"prompt": "a", "stop": [""]}), 400, Some("stop"), "stop strings must not be empty"),
        (json!({"prompt": "a", "stream": "yes"}), 400, Some("stream"), "stream must be a boolean, got a string"),
        (json!({"prompt": "a", "seed": "x"}), 400, Some("seed"), "seed must be an integer, got a string"),
        (json!({"prompt": "a", "logit_bias": {"abc": 1}}), 400, Some("logit_bias"), "'abc' is not a token id"),
        (json!({"prompt": "a", "logit_bias": {"5": 500}}), 400, Some("logit_bias"), "must be a number in [-100, 100]"),
        (json!({"prompt": "a", "suffix": "b"}), 400, Some("suffix"), "suffix is not supported"),
        (json!({"prompt": "a", "best_of": 3}), 400, Some("best_of"), "best_of is not supported"),
        (json!({"prompt": "a", "model": 3}), 400, Some("model"), "model must be a string, got a number"),
        (json!(["not", "an", "object"]), 400, None, "the request body must be a JSON object, got an array"),
    ];
    for (body, status, param, msg) in cases {
        let (st, v) = s.post("/v1/completions", &body).await;
        assert_eq!(st, status, "{body} -> {v}");
        let e = &v["error"];
        assert_eq!(e["param"].as_str(), param, "{body} -> {v}");
        assert!(e["message"].as_str().unwrap().contains(msg), "{body} -> {v}, expected {msg:?}");
        assert_eq!(e["type"], "invalid_request_error");
        assert_eq!(e["code"], status);
    }
    let raw = |path: &'static str, body: &'static str| {
        let s = &s;
        async move {
            let r = s.http.post(s.url(path)).body(body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, v) = raw("/v1/completions", "{not json").await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"].as_str().unwrap().starts_with("the request body is not valid JSON"), "{v}");
    // Over the body limit: 413, as JSON.
    let big = format!("{{\"prompt\": \"{}\"}}", "a".repeat(5000));
    let r = s.http.post(s.url("/v1/completions")).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "the request body is larger than the limit of 4096 bytes");
    // Chat: 400 naming /v1/completions.
    let (st, v) = s.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(st, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("/v1/completions"));
    // Unknown path, wrong method.
    let (st, v) = s.post("/v2/nothing", &json!({})).await;
    assert_eq!((st, v["error"]["type"].as_str()), (404, Some("not_found_error")));
    let r = s.http.get(s.url("/v1/completions")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("GET is not allowed"));
    // tokenize / detokenize.
    let (st, v) = s.post("/tokenize", &json!({"content": 5})).await;
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("content")));
    let (st, v) = s.post("/detokenize", &json!({"tokens": [1, 70000]})).await;
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("tokens")));
    // The server is still fine, and counted the errors.
    s.complete(&json!({"prompt": "a", "max_tokens": 2})).await;
    assert!(s.metric("quill_requests_total{outcome=\"client_error\"}").await >= 30.0);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_required_except_for_health() {
    let mut cfg = config();
    cfg.api_key = Some("sekrit".into());
    let s = TestServer::start(cfg).await; // /health answers without a key
    let body = json!({"prompt": "a", "max_tokens": 2});
    let r = s.http.post(s.url("/v1/completions")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    assert!(v["error"]["message"].as_str().unwrap().starts_with("Missing API key"));
    let r = s.http.post(s.url("/v1/completions")).bearer_auth("wrong").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["message"], "Invalid API key");
    let r = s.http.get(s.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s.http.post(s.url("/v1/completions")).bearer_auth("sekrit").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_frees_its_slot() {
    let s = TestServer::start(config()).await;
    let body = json!({"prompt": "HAMLET.\n", "max_tokens": 100000, "ignore_eos": true, "stream": true});
    let mut r = s.http.post(s.url("/v1/completions")).json(&body).send().await.unwrap();
    assert!(r.chunk().await.unwrap().is_some());
    s.wait_metric("quill_running_sequences", 1.0).await;
    drop(r);
    s.wait_metric("quill_running_sequences", 0.0).await;
    // Not streamed: the client gives up waiting.
    let quick = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let body = json!({"prompt": "HAMLET.\n", "max_tokens": 100000, "ignore_eos": true});
    assert!(quick.post(s.url("/v1/completions")).json(&body).send().await.is_err());
    s.wait_metric("quill_running_sequences", 0.0).await;
    assert_eq!(s.metric("quill_sequences_cancelled_total").await, 2.0);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    let mut cfg = config();
    cfg.engine.n_parallel = 1;
    cfg.engine.max_queue = 1;
    let s = TestServer::start(cfg).await;
    let long = json!({"prompt": "HAMLET.\n", "max_tokens": 100000, "ignore_eos": true, "stream": true});
    let mut running = s.http.post(s.url("/v1/completions")).json(&long).send().await.unwrap();
    assert!(running.chunk().await.unwrap().is_some());
    let waiting = s.http.post(s.url("/v1/completions")).json(&long).send();
    let waiting = tokio::spawn(waiting);
    s.wait_metric("quill_queue_depth", 1.0).await;
    let r = s.http.post(s.url("/v1/completions")).json(&json!({"prompt": "a"})).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().starts_with("the queue is full"), "{v}");
    assert_eq!(v["error"]["type"], "unavailable_error");
    drop(running);
    // The waiting request gets the slot.
    let mut w = waiting.await.unwrap().unwrap();
    assert!(w.chunk().await.unwrap().is_some());
    drop(w);
    s.wait_metric("quill_running_sequences", 0.0).await;
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_health_metrics_tokenize() {
    let s = TestServer::start(config()).await;
    let v: Value = s.http.get(s.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "quill-shakespeare");
    assert_eq!(v["data"][0]["meta"]["slots"], 4);
    assert_eq!(v["data"][0]["meta"]["n_ctx_per_slot"], 256);
    // 12 layers x 256 positions x 256 wide x (K + V) x 2 bytes (F16).
    assert_eq!(v["data"][0]["meta"]["kv_bytes_per_slot"], 12 * 256 * 256 * 2 * 2);
    assert_eq!(v["data"][0]["meta"]["kv_type"], "f16");
    let v: Value = s.http.get(s.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({"status": "ok"}));
    let (st, v) = s.post("/tokenize", &json!({"content": "Hello world"})).await;
    assert_eq!((st, &v), (200, &json!({"tokens": [15496, 995]})));
    let (_, v) = s.post("/tokenize", &json!({"content": "Hello world", "with_pieces": true})).await;
    assert_eq!(v, json!({"tokens": [{"id": 15496, "piece": "Hello"}, {"id": 995, "piece": " world"}]}));
    let (_, v) = s.post("/detokenize", &json!({"tokens": [15496, 995]})).await;
    assert_eq!(v, json!({"content": "Hello world"}));
    s.complete(&json!({"prompt": "Hello", "max_tokens": 3})).await;
    let text = s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for name in [
        "quill_requests_total{outcome=\"ok\"} 1",
        "quill_completion_tokens_total 3",
        "quill_queue_depth 0",
        "quill_batch_size 1",
        "quill_time_to_first_token_seconds_count 1",
        "# TYPE quill_time_to_first_token_seconds histogram",
    ] {
        assert!(text.contains(name), "no {name:?} in\n{text}");
    }
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_work_and_ends_what_runs() {
    let mut cfg = config();
    cfg.shutdown_timeout = Duration::from_millis(300);
    let s = TestServer::start(cfg).await;
    let url = s.url("/v1/completions");
    let http = s.http.clone();
    let mut r = http
        .post(&url)
        .json(&json!({"prompt": "HAMLET.\n", "max_tokens": 100000, "ignore_eos": true, "stream": true}))
        .send()
        .await
        .unwrap();
    assert!(r.chunk().await.unwrap().is_some());
    let t0 = std::time::Instant::now();
    let done = tokio::spawn(s.shutdown());
    // The stream in flight is ended after the deadline: an error event, then [DONE].
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    assert!(rest.contains("shutting down"), "{rest}");
    done.await.unwrap().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    // Nothing listens any more.
    assert!(http.post(&url).json(&json!({"prompt": "a"})).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_does_not_load_stops_the_server_with_its_error() {
    let cfg = quill_server::ServerConfig::new("no/such/model.gguf".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = quill_server::serve(cfg, listener, std::future::pending()).await.unwrap_err();
    assert!(err.to_string().starts_with("loading the model: no/such/model.gguf"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_prompt_reuses_its_chunks_and_gets_the_same_text() {
    let mut cfg = config();
    cfg.engine.chunk = 8;
    let s = TestServer::start(cfg).await;
    let body = json!({
        "prompt": "Now is the winter of our discontent\nMade glorious summer by this sun of York;\nAnd all the clouds",
        "max_tokens": 12, "seed": 5, "temperature": 0.9, "logprobs": 1,
    });
    let first = s.complete(&body).await;
    let again = s.complete(&body).await;
    assert_eq!(first["choices"], again["choices"], "the cached prefix changed the text or its log-probabilities");
    let text = s.http.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("quill_prefix_cache_lookups_total"), 2.0);
    assert_eq!(value("quill_prefix_cache_hits_total"), 1.0);
    let reused = value("quill_prefix_cache_tokens_reused_total");
    assert!(reused >= 16.0 && reused % 8.0 == 0.0, "reused {reused}");
    s.shutdown().await.unwrap();
}
