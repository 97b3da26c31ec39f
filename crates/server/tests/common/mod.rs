//! A server on an ephemeral loopback port with the default model, and a client.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use quill_server::{serve, ServerConfig, ServerError};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/quill-shakespeare.gguf")
}

pub fn config() -> ServerConfig {
    let mut c = ServerConfig::new(model_path());
    c.engine.n_parallel = 4;
    c.engine.chunk = 32;
    c.engine.max_queue = 8;
    c
}

pub struct TestServer {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
    pub http: reqwest::Client,
}

impl TestServer {
    /// Starts a server and waits until `/health` says it is ready.
    pub async fn start(cfg: ServerConfig) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(serve(cfg, listener, async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::new();
        let s = TestServer { url, stop: Some(tx), done: Some(done), http };
        for _ in 0..500 {
            if let Ok(r) = s.http.get(s.url("/health")).send().await {
                if r.status() == 200 {
                    return s;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the server did not become ready");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.http.post(self.url(path)).json(body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub async fn complete(&self, body: &Value) -> Value {
        let (status, v) = self.post("/v1/completions", body).await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// A streamed completion: every `data:` payload, in order (`[DONE]` as a string).
    pub async fn stream(&self, body: &Value) -> Vec<Value> {
        let r = self.http.post(self.url("/v1/completions")).json(body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let text = r.text().await.unwrap();
        sse_events(&text)
    }

    /// A gauge or counter from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name}"))
            .parse()
            .unwrap()
    }

    /// Waits until a metric has `value` (the engine updates it at its next step).
    pub async fn wait_metric(&self, name: &str, value: f64) {
        for _ in 0..500 {
            if self.metric(name).await == value {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{name} never became {value} (is {})", self.metric(name).await);
    }

    /// Stops the server (as SIGTERM does) and returns what `serve` returned.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        let _ = self.stop.take().unwrap().send(());
        self.done.take().unwrap().await.unwrap()
    }
}

pub fn sse_events(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let d = e.strip_prefix("data: ").unwrap_or_else(|| panic!("not an SSE data line: {e:?}"));
            if d == "[DONE]" {
                Value::String(d.into())
            } else {
                serde_json::from_str(d).unwrap()
            }
        })
        .collect()
}

/// The text of choice `i` of a streamed completion, and its finish reason.
pub fn streamed_text(events: &[Value], i: u64) -> (String, Option<String>) {
    let mut text = String::new();
    let mut finish = None;
    for e in events {
        for c in e["choices"].as_array().into_iter().flatten() {
            if c["index"].as_u64() == Some(i) {
                text += c["text"].as_str().unwrap();
                if let Some(f) = c["finish_reason"].as_str() {
                    finish = Some(f.to_owned());
                }
            }
        }
    }
    (text, finish)
}
