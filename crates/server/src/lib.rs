//! `quill serve`: an OpenAI-compatible HTTP server (axum on a tokio runtime) in front of the
//! multi-sequence engine, which runs on its own thread and computes on rayon's pool.
//!
//! Endpoints: `POST /v1/completions` (whole or streamed as server-sent events),
//! `GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus), `POST /tokenize`,
//! `POST /detokenize` (llama-server's shapes), and `POST /v1/chat/completions`, which answers
//! 400: GPT-2 has no chat template. Errors are OpenAI's error object.

mod completions;
mod error;
mod metrics;
pub mod params;
mod routes;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use gguf_file::LoadMode;
use quill_engine::EngineConfig;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use state::AppState;

/// Everything `quill serve` is told.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub model: PathBuf,
    pub load_mode: LoadMode,
    /// The model id clients see; the file's stem by default.
    pub model_id: Option<String>,
    pub engine: EngineConfig,
    /// Clients must send `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Largest request body, in bytes (413 above).
    pub max_body: usize,
    /// How long in-flight requests may run on after SIGTERM / Ctrl-C before they are ended.
    pub shutdown_timeout: Duration,
    /// Print a line to stderr when the model is ready.
    pub log: bool,
}

impl ServerConfig {
    pub fn new(model: PathBuf) -> ServerConfig {
        ServerConfig {
            model,
            load_mode: LoadMode::Mmap,
            model_id: None,
            engine: EngineConfig::default(),
            api_key: None,
            max_body: 1 << 20,
            shutdown_timeout: Duration::from_secs(10),
            log: false,
        }
    }
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("loading the model: {0}")]
    Load(String),
}

/// A request body, with OpenAI-shaped errors for one over the limit (413) or unreadable.
struct Body(Bytes);

impl FromRequest<Arc<AppState>> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &Arc<AppState>) -> Result<Self, ApiError> {
        Bytes::from_request(req, st).await.map(Body).map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than the limit of {} bytes", st.max_body),
                )
            } else {
                ApiError::new(e.status(), format!("cannot read the request body: {}", e.body_text()))
            }
        })
    }
}

async fn completions(State(st): State<Arc<AppState>>, Body(b): Body) -> axum::response::Response {
    completions::handle(st, b).await
}

async fn tokenize(st: State<Arc<AppState>>, Body(b): Body) -> Result<axum::response::Response, ApiError> {
    routes::tokenize(st, b).await
}

async fn detokenize(st: State<Arc<AppState>>, Body(b): Body) -> Result<axum::response::Response, ApiError> {
    routes::detokenize(st, b).await
}

/// The routes, with the body limit and the API-key check.
fn router(state: Arc<AppState>) -> Router {
    let max_body = state.max_body;
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/v1/chat/completions", post(routes::chat))
        .route("/chat/completions", post(routes::chat))
        .route("/v1/models", get(routes::models))
        .route("/models", get(routes::models))
        .route("/health", get(routes::health))
        .route("/v1/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::wrong_method)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), routes::auth))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` completes (or the model fails to load): then stops
/// accepting, lets in-flight requests finish for up to `shutdown_timeout`, ends the rest, and
/// returns once the engine thread has stopped.
pub async fn serve(
    cfg: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<()>();
    let id = cfg.model_id.clone().unwrap_or_else(|| {
        cfg.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "gpt2".into())
    });
    let (state, engine) = state::spawn_engine(
        &cfg,
        id,
        Box::new(move || {
            let _ = fail_tx.send(());
        }),
    )?;
    let stopping = Arc::new(tokio::sync::Notify::new());
    let (st, stop) = (state.clone(), stopping.clone());
    let deadline = cfg.shutdown_timeout;
    let signal = async move {
        tokio::select! {
            _ = shutdown => {}
            Ok(()) = fail_rx => {}
        }
        // New requests get 503; running ones go on until done or until the deadline.
        st.client.close();
        stop.notify_one();
        tokio::time::sleep(deadline).await;
        st.client.abort();
    };
    let (sig_tx, sig_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        signal.await;
        let _ = sig_tx.send(());
    });
    let served = axum::serve(listener, router(state.clone())).with_graceful_shutdown(async move {
        stopping.notified().await;
    });
    // Graceful shutdown waits for open connections; after the deadline (when every sequence
    // has been ended) give them a moment more, then stop regardless.
    tokio::select! {
        r = served => r?,
        _ = async { let _ = sig_rx.await; tokio::time::sleep(Duration::from_secs(2)).await } => {}
    }
    watcher.abort();
    state.client.abort();
    let _ = tokio::task::spawn_blocking(move || engine.join()).await;
    match state.load_error.get() {
        Some(e) => Err(ServerError::Load(e.clone())),
        None => Ok(()),
    }
}

/// Binds `host:port`, prints where it listens and when the model is ready, and serves until
/// SIGTERM or Ctrl-C (exit status 0 once in-flight requests are done or ended).
pub fn run(mut cfg: ServerConfig, host: &str, port: u16) -> Result<(), ServerError> {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("quill-http").enable_all().build()?;
    cfg.log = true;
    rt.block_on(async move {
        let addr = format!("{host}:{port}");
        let listener = TcpListener::bind(&addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        let local: SocketAddr = listener.local_addr()?;
        eprintln!("quill: listening on http://{local}, loading {}", cfg.model.display());
        let shutdown = async move {
            #[cfg(unix)]
            let term = async {
                use tokio::signal::unix::{signal, SignalKind};
                match signal(SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let term = std::future::pending::<()>();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
            eprintln!("quill: shutting down: refusing new requests, finishing those in flight");
        };
        serve(cfg, listener, shutdown).await
    })
}
