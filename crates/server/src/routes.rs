//! The small endpoints: models, health, metrics, tokenize, detokenize, chat (refused), and
//! the API-key check.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::completions::{parse_json, ready};
use crate::error::ApiError;
use crate::params::type_name;
use crate::state::AppState;

type St = State<Arc<AppState>>;

/// `--api-key`: every endpoint but `/health` needs `Authorization: Bearer KEY` (or
/// `X-Api-Key: KEY`, as llama-server accepts).
pub async fn auth(State(st): St, req: Request, next: Next) -> Response {
    let Some(key) = st.api_key.as_deref() else { return next.run(req).await };
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let h = req.headers();
    let given = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| h.get("x-api-key").and_then(|v| v.to_str().ok()));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), key.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "Invalid API key").into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Missing API key: send it as 'Authorization: Bearer KEY' (the server runs with --api-key)",
        )
        .into_response(),
    }
}

/// Compares without stopping at the first difference (no timing hint about the key).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /health`: 200 `{"status": "ok"}` once the model is loaded, 503 while loading (as
/// llama-server).
pub async fn health(State(st): St) -> Response {
    match ready(&st) {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/models`.
pub async fn models(State(st): St) -> Result<Response, ApiError> {
    let info = ready(&st)?;
    Ok(Json(json!({
        "object": "list",
        "data": [{
            "id": info.id,
            "object": "model",
            "created": info.created,
            "owned_by": "quill",
            "meta": {
                "n_params": info.n_params,
                "n_vocab": info.limits.n_vocab,
                "n_ctx_train": info.n_ctx_train,
                "n_ctx_per_slot": info.limits.n_ctx,
                "slots": info.limits.n_parallel,
                "kv_bytes_per_slot": info.limits.kv_bytes_per_slot,
                "kv_type": info.limits.kv_type.name(),
            },
        }],
    }))
    .into_response())
}

/// `GET /metrics` (Prometheus text format).
pub async fn metrics(State(st): St) -> Response {
    let (slots, kv) = st.info.get().map_or((0, 0), |i| (i.limits.n_parallel, i.limits.kv_bytes_per_slot));
    let text = st.metrics.render(&st.client, slots, kv);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

fn object(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    match parse_json(body)? {
        Value::Object(o) => Ok(o),
        v => Err(ApiError::bad_request(format!("the request body must be a JSON object, got {}", type_name(&v)))),
    }
}

/// `POST /tokenize` (llama-server's shape): `{"content": TEXT, "with_pieces": false}` ->
/// `{"tokens": [ids]}`, or `[{"id", "piece"}]` with pieces (a piece that is not valid UTF-8
/// is a list of bytes).
pub async fn tokenize(State(st): St, body: Bytes) -> Result<Response, ApiError> {
    let info = ready(&st)?;
    let o = object(&body)?;
    let content = match o.get("content") {
        None => return Ok(Json(json!({"tokens": []})).into_response()),
        Some(Value::String(s)) => s.as_str(),
        Some(v) => return Err(ApiError::field("content", format!("content must be a string, got {}", type_name(v)))),
    };
    let with_pieces = match o.get("with_pieces") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(ApiError::field("with_pieces", format!("with_pieces must be a boolean, got {}", type_name(v))))
        }
    };
    let tok = &info.tokenizer;
    let ids = tok.encode(content).map_err(|e| ApiError::field("content", e.to_string()))?;
    let tokens: Vec<Value> = if with_pieces {
        ids.iter()
            .map(|&id| {
                let b = tok.token_bytes(id);
                let piece = match std::str::from_utf8(b) {
                    Ok(s) => json!(s),
                    Err(_) => json!(b),
                };
                json!({"id": id, "piece": piece})
            })
            .collect()
    } else {
        ids.iter().map(|&id| json!(id)).collect()
    };
    Ok(Json(json!({"tokens": tokens})).into_response())
}

/// `POST /detokenize` (llama-server's shape): `{"tokens": [ids]}` -> `{"content": TEXT}`.
pub async fn detokenize(State(st): St, body: Bytes) -> Result<Response, ApiError> {
    let info = ready(&st)?;
    let o = object(&body)?;
    let n_vocab = info.limits.n_vocab;
    let ids: Vec<u32> = match o.get("tokens") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v.as_u64() {
                Some(id) if (id as usize) < n_vocab => Ok(id as u32),
                _ => Err(ApiError::field("tokens", format!("tokens: {v} is not a token id in 0..{n_vocab}"))),
            })
            .collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(ApiError::field("tokens", format!("tokens must be a list of token ids, got {}", type_name(v))))
        }
    };
    Ok(Json(json!({"content": info.tokenizer.decode(&ids)})).into_response())
}

/// `POST /v1/chat/completions`: GPT-2 has no chat template.
pub async fn chat() -> ApiError {
    ApiError::bad_request(
        "this model (GPT-2) has no chat template, so /v1/chat/completions is not served: \
         send a plain-text prompt to /v1/completions instead",
    )
}

/// Any other path.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no such endpoint: {} {}", req.method(), req.uri().path()))
}

/// A known path with the wrong method.
pub async fn wrong_method(req: Request) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed on {}", req.method(), req.uri().path()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn health_is_503_while_loading_then_500_if_loading_failed() {
        let (client, _inbox) = quill_engine::queue(1);
        let st = Arc::new(AppState {
            client,
            info: Default::default(),
            load_error: Default::default(),
            api_key: None,
            metrics: Metrics::default(),
            max_body: 1024,
        });
        let res = health(State(st.clone())).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "Loading model");
        assert_eq!(v["error"]["type"], "unavailable_error");
        // Every endpoint that needs the model says the same meanwhile.
        assert_eq!(models(State(st.clone())).await.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
        st.load_error.set("bad file".into()).unwrap();
        let res = health(State(st)).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
