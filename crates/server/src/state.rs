//! What the handlers share, and the engine thread that loads the model and runs it.

use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use gguf_file::GgufFile;
use quill_engine::{queue, Client, Engine, Limits};
use quill_gpt2::{Gpt2Model, Tokenizer};

use crate::metrics::Metrics;
use crate::ServerConfig;

/// The model as the HTTP side sees it (the engine thread owns the model itself).
pub struct ModelInfo {
    /// The id clients see (`/v1/models`, `model` in responses).
    pub id: String,
    pub tokenizer: Tokenizer,
    pub limits: Limits,
    pub n_params: u64,
    pub n_ctx_train: usize,
    /// Unix time of loading.
    pub created: u64,
}

/// Shared by every handler.
pub struct AppState {
    pub client: Client,
    pub info: OnceLock<ModelInfo>,
    pub load_error: OnceLock<String>,
    pub api_key: Option<String>,
    pub metrics: Metrics,
    pub max_body: usize,
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Starts the engine thread: it opens and loads the model, publishes [`ModelInfo`] (from
/// then on `/health` is 200), and serves the queue until it is closed or aborted. A load
/// error is published in `load_error` and calls `on_fail`.
pub fn spawn_engine(
    config: &ServerConfig,
    id: String,
    on_fail: Box<dyn FnOnce() + Send>,
) -> std::io::Result<(Arc<AppState>, JoinHandle<()>)> {
    let (path, mode, cfg, log) = (config.model.clone(), config.load_mode, config.engine, config.log);
    let (api_key, max_body) = (config.api_key.clone(), config.max_body);
    let (client, inbox) = queue(cfg.max_queue.max(1));
    let state = Arc::new(AppState {
        client,
        info: OnceLock::new(),
        load_error: OnceLock::new(),
        api_key,
        metrics: Metrics::default(),
        max_body,
    });
    let st = state.clone();
    let handle = std::thread::Builder::new().name("quill-engine".into()).spawn(move || {
        let fail = |msg: String| {
            let _ = st.load_error.set(msg);
            st.client.close();
            on_fail();
        };
        let file = match GgufFile::open_with(&path, mode) {
            Ok(f) => f,
            Err(e) => return fail(format!("{}: {e}", path.display())),
        };
        let model = match Gpt2Model::load(&file) {
            Ok(m) => m,
            Err(e) => return fail(format!("{}: {e}", path.display())),
        };
        // The HTTP side tokenizes on its own threads, with its own copy.
        let tokenizer = match Tokenizer::from_gguf(file.metadata()) {
            Ok(t) => t,
            Err(e) => return fail(format!("{}: {e}", path.display())),
        };
        let mut engine = match Engine::new(&model, cfg, &inbox) {
            Ok(e) => e,
            Err(e) => return fail(e.to_string()),
        };
        let limits = st.client.limits().expect("Engine::new sets the limits");
        let n_params = file.tensors().map(|t| t.dims().iter().product::<u64>()).sum();
        let _ = st.info.set(ModelInfo {
            id,
            tokenizer,
            limits,
            n_params,
            n_ctx_train: model.config.n_ctx,
            created: unix_now(),
        });
        // Ready only once requests are accepted: whoever waits for this line may send at once.
        if log {
            eprintln!(
                "quill: ready: {} slots x {} positions, {:.1} MiB of {} KV cache per slot, prefill chunks of {}",
                limits.n_parallel,
                limits.n_ctx,
                limits.kv_bytes_per_slot as f64 / (1 << 20) as f64,
                limits.kv_type.name(),
                engine.config().chunk
            );
        }
        engine.run(&inbox);
    })?;
    Ok((state, handle))
}
