//! `quill serve`: the OpenAI-compatible server (see the quill-server crate).

use std::time::Duration;

use anyhow::Result;
use quill_engine::EngineConfig;
use quill_server::ServerConfig;

use crate::common::{init_threads, KvTypeArg, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Sequences generated at once (KV slots); more requests wait in the queue.
    #[arg(short = 'P', long = "parallel", default_value_t = 4)]
    parallel: usize,
    /// Context of each slot, in tokens (default: the model's). Unlike llama-server's -c, this
    /// is per slot: the KV cache holds --parallel x --ctx positions.
    #[arg(short = 'c', long = "ctx", default_value_t = 0)]
    ctx: usize,
    /// Prompts are evaluated in chunks of this many tokens, one chunk per step beside the
    /// running sequences' tokens.
    #[arg(long, default_value_t = 256)]
    chunk: usize,
    /// Requests that may wait for a slot; more get 503 with Retry-After.
    #[arg(long = "queue", default_value_t = 64)]
    queue: usize,
    /// Do not keep finished prompts' KV for later prompts that begin the same way (the
    /// automatic prefix cache; results are the same with it or without it).
    #[arg(long)]
    no_prefix_cache: bool,
    /// KV cache storage type.
    #[arg(long, value_enum, default_value_t = KvTypeArg::F16)]
    kv_type: KvTypeArg,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health.
    #[arg(long, env = "QUILL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The model id clients see (default: the file name without .gguf).
    #[arg(long)]
    alias: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Seconds that requests in flight may run on after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 10.0)]
    shutdown_timeout: f64,
}

pub fn run(args: Args) -> Result<()> {
    init_threads(args.model.threads)?;
    if args.api_key.as_deref() == Some("") {
        anyhow::bail!("--api-key must not be empty");
    }
    if !(args.shutdown_timeout >= 0.0 && args.shutdown_timeout.is_finite()) {
        anyhow::bail!("--shutdown-timeout must be a number of seconds >= 0, got {}", args.shutdown_timeout);
    }
    for (flag, v) in [("--parallel", args.parallel), ("--chunk", args.chunk), ("--queue", args.queue)] {
        if v == 0 {
            anyhow::bail!("{flag} must be at least 1");
        }
    }
    let cfg = ServerConfig {
        model: args.model.path()?,
        load_mode: if args.model.no_mmap { gguf_file::LoadMode::Read } else { gguf_file::LoadMode::Mmap },
        model_id: args.alias,
        engine: EngineConfig {
            n_parallel: args.parallel,
            n_ctx: args.ctx,
            chunk: args.chunk,
            max_queue: args.queue,
            kv_type: args.kv_type.into(),
            row_invariant: true,
            prefix_cache: !args.no_prefix_cache,
        },
        api_key: args.api_key,
        max_body: args.max_body,
        shutdown_timeout: Duration::from_secs_f64(args.shutdown_timeout),
        log: true,
    };
    quill_server::run(cfg, &args.host, args.port)?;
    Ok(())
}
