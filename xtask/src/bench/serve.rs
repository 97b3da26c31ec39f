//! `cargo xtask bench serve`: N concurrent streaming clients against `quill serve`, and against
//! llama.cpp's `llama-server -np N -cb` on the same GGUF files when given: aggregate generated
//! tokens/s, time to first token, time between tokens, peak RSS of the server.
//!
//! The client is plain blocking HTTP/1.1 on one thread per connection (no client library
//! between the clock and the socket); each SSE chunk is timestamped as it is read.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value as Json};

use super::{build_quill, git, llama_version, models, svg, warm_page_cache};

/// Options of the serving benchmark.
#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    /// llama.cpp's llama-server, run on the very same files under the same load [env: LLAMA_SERVER].
    #[arg(long, env = "LLAMA_SERVER")]
    pub llama_server: Option<PathBuf>,
    /// More arguments for llama-server, e.g. "--poll 0" (its threads then sleep rather than spin
    /// while they wait, which matters on a machine shared with other work).
    #[arg(long, allow_hyphen_values = true)]
    pub llama_args: Option<String>,
    /// Threads for both servers.
    #[arg(short, long, default_value_t = 2)]
    pub threads: usize,
    /// Concurrent clients (each level runs a fresh server with that many slots).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    pub clients: Vec<usize>,
    /// Tokens each request generates.
    #[arg(long, default_value_t = 128)]
    pub n_gen: usize,
    /// Model shapes (124M, 1558M; tiny with --quick).
    #[arg(long, value_delimiter = ',')]
    pub shapes: Option<Vec<String>>,
    /// Types (quill quantize names).
    #[arg(long, value_delimiter = ',', default_value = "q4_0,q8_0")]
    pub types: Vec<String>,
    /// The tiny model, 1 and 4 clients, 16 tokens: a smoke test of the whole pipeline.
    #[arg(long)]
    pub quick: bool,
    /// Where to write SERVE.md, serve.json and serve.svg.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Do not rewrite the README's serving section.
    #[arg(long)]
    pub no_readme: bool,
    /// Instead: the shared-prefix workload, every client asking a short question after the same
    /// prompt of about this many tokens (quill serve with and without its prefix cache, and
    /// llama-server when given), written to SERVE_PREFIX.md.
    #[arg(long, default_value_t = 0)]
    pub shared_prefix: usize,
}

/// One server under one load.
#[derive(Clone, Debug, Default)]
pub(super) struct Load {
    clients: usize,
    tokens: usize,
    wall_s: f64,
    pub(super) agg_tps: f64,
    pub(super) ttft_ms: (f64, f64),
    tbt_ms: (f64, f64),
    peak_rss: u64,
    /// The server's CPU time (all threads) per generated token, in ms: less sensitive than
    /// wall time to other work on the machine.
    cpu_ms_per_token: f64,
    pub(super) failed: usize,
}

impl Load {
    fn to_json(&self) -> Json {
        json!({
            "clients": self.clients,
            "tokens": self.tokens,
            "wall_s": self.wall_s,
            "aggregate_tps": self.agg_tps,
            "ttft_ms_p50": self.ttft_ms.0,
            "ttft_ms_p99": self.ttft_ms.1,
            "tbt_ms_p50": self.tbt_ms.0,
            "tbt_ms_p99": self.tbt_ms.1,
            "peak_rss_bytes": self.peak_rss,
            "cpu_ms_per_token": self.cpu_ms_per_token,
            "failed_requests": self.failed,
        })
    }
}

/// Everything measured on one model file.
struct Row {
    shape: String,
    file_type: String,
    tg: f64,
    quill: Vec<Load>,
    llama: Vec<Load>,
}

/// What one streamed request saw.
struct Sample {
    tokens: usize,
    ttft: Duration,
    /// Gaps between consecutive chunks that carried text.
    gaps: Vec<Duration>,
    done: Instant,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Sends a request and returns the reader positioned after the response headers, with the
/// status and whether the body is chunked.
fn send(addr: &str, method: &str, path: &str, body: &str) -> Result<(u16, bool, BufReader<TcpStream>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    s.set_nodelay(true)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no HTTP status line")?;
    let mut chunked = false;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let l = line.to_ascii_lowercase();
        chunked |= l.starts_with("transfer-encoding:") && l.contains("chunked");
    }
    Ok((status, chunked, r))
}

/// Reads the next piece of body (a chunk, or whatever arrives when not chunked); empty at end.
fn next_piece(r: &mut BufReader<TcpStream>, chunked: bool, buf: &mut Vec<u8>) -> Result<bool> {
    buf.clear();
    if !chunked {
        let mut tmp = [0u8; 16384];
        let n = r.read(&mut tmp)?;
        buf.extend_from_slice(&tmp[..n]);
        return Ok(n > 0);
    }
    let mut line = String::new();
    r.read_line(&mut line)?;
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).context("bad chunk size")?;
    if size == 0 {
        return Ok(false);
    }
    buf.resize(size, 0);
    r.read_exact(buf)?;
    let mut crlf = [0u8; 2];
    r.read_exact(&mut crlf)?;
    Ok(true)
}

/// A streamed completion, timed chunk by chunk.
fn stream_request(addr: &str, body: &Json) -> Result<Sample> {
    let t0 = Instant::now();
    let (status, chunked, mut r) = send(addr, "POST", "/v1/completions", &body.to_string())?;
    if status != 200 {
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        bail!("HTTP {status}: {rest}");
    }
    let (mut pending, mut buf) = (Vec::new(), Vec::new());
    let (mut ttft, mut last, mut gaps, mut chunks, mut usage) = (None, None::<Instant>, Vec::new(), 0usize, None);
    while next_piece(&mut r, chunked, &mut buf)? {
        let now = Instant::now();
        pending.extend_from_slice(&buf);
        while let Some(at) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..at + 2).collect();
            let event = String::from_utf8_lossy(&event);
            let Some(data) = event.trim().strip_prefix("data: ") else { continue };
            if data == "[DONE]" {
                continue;
            }
            let v: Json = serde_json::from_str(data).with_context(|| format!("bad event {data}"))?;
            if let Some(e) = v.get("error") {
                bail!("error event: {e}");
            }
            if let Some(u) = v.get("usage").and_then(|u| u["completion_tokens"].as_u64()) {
                usage = Some(u as usize);
            }
            let has_text = v["choices"][0]["text"].as_str().is_some_and(|t| !t.is_empty());
            if has_text {
                chunks += 1;
                ttft.get_or_insert(now - t0);
                if let Some(l) = last {
                    gaps.push(now - l);
                }
                last = Some(now);
            }
        }
    }
    Ok(Sample { tokens: usage.unwrap_or(chunks), ttft: ttft.unwrap_or_default(), gaps, done: Instant::now() })
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A server process, stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn wait_ready(&mut self, what: &str) -> Result<()> {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(300) {
            if let Some(code) = self.child.try_wait()? {
                bail!("{what} exited with {code} before it was ready");
            }
            if let Ok((200, _, _)) = send(&self.addr, "GET", "/health", "") {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("{what} was not ready after 300 s")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Engine {
    Quill,
    Llama,
}

fn start(
    engine: Engine,
    exe: &Path,
    model: &Path,
    clients: usize,
    n_ctx: usize,
    threads: usize,
    extra: &[String],
) -> Result<Server> {
    let port = free_port()?;
    let (m, p, t, np) =
        (model.to_str().context("utf-8 path")?, port.to_string(), threads.to_string(), clients.to_string());
    let mut cmd = Command::new(exe);
    match engine {
        Engine::Quill => {
            let ctx = n_ctx.to_string();
            let queue = (clients * 2).to_string();
            cmd.args(["serve", "-m", m, "--port", &p, "--parallel", &np, "--ctx", &ctx, "-t", &t, "--queue", &queue]);
            cmd.args(extra);
        }
        Engine::Llama => {
            // llama-server's -c is the context of all slots together.
            let total = (n_ctx * clients).to_string();
            cmd.args([
                "-m",
                m,
                "--port",
                &p,
                "-np",
                &np,
                "-c",
                &total,
                "-cb",
                "-t",
                &t,
                "--host",
                "127.0.0.1",
                "--no-webui",
            ]);
            cmd.args(extra);
        }
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut s = Server { child, addr: format!("127.0.0.1:{port}") };
    s.wait_ready(if engine == Engine::Quill { "quill serve" } else { "llama-server" })?;
    Ok(s)
}

/// The request of client `i`: a short prompt (distinct per client, so that no server reuses
/// another's prompt), `n_gen` tokens whatever the model says.
fn body(i: usize, n_gen: usize, short: bool) -> Json {
    let prompt = if short {
        format!("Client {i}:")
    } else {
        format!("Client {i} asks: the history of the old city began long ago, when travellers from the north settled by the river and")
    };
    json!({
        "prompt": prompt,
        "max_tokens": n_gen,
        "stream": true,
        "stream_options": {"include_usage": true},
        "ignore_eos": true,
        "temperature": 0.8,
        "top_k": 40,
        "top_p": 0.95,
        "min_p": 0.05,
        "seed": i,
    })
}

/// The request of client `i` after a prompt every client shares (`cargo xtask bench serve
/// --shared-prefix`): a short question of its own, greedy.
fn body_after(prefix: &str, i: usize, n_gen: usize) -> Json {
    json!({
        "prompt": format!("{prefix}Question {i}: what did the clerk write about item {i}?"),
        "max_tokens": n_gen,
        "stream": true,
        "stream_options": {"include_usage": true},
        "ignore_eos": true,
        "temperature": 0.0,
        "seed": i,
    })
}

/// The shape of one load: clients, tokens each, context per slot, threads, extra server flags,
/// and the prompt every client shares, if any.
#[derive(Clone, Copy)]
pub(super) struct Shape<'a> {
    pub(super) clients: usize,
    pub(super) n_gen: usize,
    pub(super) n_ctx: usize,
    pub(super) threads: usize,
    pub(super) extra: &'a [String],
    pub(super) prefix: Option<&'a str>,
}

/// `clients` concurrent clients, one request each, against a fresh server (warmed with one
/// request first: the weights' pages, first-call buffers, and the shared prompt if any).
pub(super) fn run_load(engine: Engine, exe: &Path, model: &Path, sh: &Shape<'_>) -> Result<Load> {
    let Shape { clients, n_gen, n_ctx, threads, extra, prefix } = *sh;
    let server = start(engine, exe, model, clients, n_ctx, threads, extra)?;
    let addr = server.addr.clone();
    let short = n_ctx < 128; // the tiny model
    let prefix = prefix.map(str::to_owned);
    let request = move |i: usize, n: usize| match &prefix {
        Some(p) => body_after(p, i, n),
        None => body(i, n, short),
    };
    stream_request(&addr, &request(9999, 8))?;
    let pid = server.child.id();
    let cpu0 = quill_sysinfo::cpu_seconds_of(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let (addr, b) = (addr.clone(), request(i, n_gen));
            std::thread::spawn(move || stream_request(&addr, &b))
        })
        .collect();
    let mut samples = Vec::new();
    let mut failed = 0;
    for h in handles {
        match h.join().expect("client thread") {
            Ok(s) => samples.push(s),
            Err(e) => {
                eprintln!("    request failed: {e:#}");
                failed += 1;
            }
        }
    }
    let rss = quill_sysinfo::peak_rss_of(pid).unwrap_or(0);
    let cpu = quill_sysinfo::cpu_seconds_of(pid).unwrap_or(0.0) - cpu0;
    drop(server);
    let end = samples.iter().map(|s| s.done).max().unwrap_or(t0);
    let wall = (end - t0).as_secs_f64();
    let tokens: usize = samples.iter().map(|s| s.tokens).sum();
    let mut ttft: Vec<f64> = samples.iter().map(|s| s.ttft.as_secs_f64() * 1e3).collect();
    let mut tbt: Vec<f64> = samples.iter().flat_map(|s| s.gaps.iter().map(|g| g.as_secs_f64() * 1e3)).collect();
    Ok(Load {
        clients,
        tokens,
        wall_s: wall,
        agg_tps: if wall > 0.0 { tokens as f64 / wall } else { 0.0 },
        ttft_ms: (percentile(&mut ttft, 0.5), percentile(&mut ttft, 0.99)),
        tbt_ms: (percentile(&mut tbt, 0.5), percentile(&mut tbt, 0.99)),
        peak_rss: rss,
        cpu_ms_per_token: if tokens > 0 { cpu * 1e3 / tokens as f64 } else { 0.0 },
        failed,
    })
}

/// Quill's own single-stream generation speed on the file (`quill bench`, tg), for reference.
fn quill_tg(quill: &Path, model: &Path, n_gen: usize, threads: usize) -> Result<f64> {
    let o = Command::new(quill)
        .args(["bench", "-m", model.to_str().context("utf-8 path")?, "-p", "0", "-n", &n_gen.to_string()])
        .args(["-r", "2", "-t", &threads.to_string(), "--json"])
        .output()?;
    if !o.status.success() {
        bail!("quill bench failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let v: Json = serde_json::from_slice(&o.stdout)?;
    Ok(v.as_array()
        .and_then(|rows| rows.iter().find(|r| r["n_gen"].as_u64().unwrap_or(0) > 0))
        .and_then(|r| r["avg_ts"].as_f64())
        .unwrap_or(0.0))
}

pub fn run(repo: &Path, args: ServeArgs) -> Result<()> {
    if args.shared_prefix > 0 {
        return super::serve_prefix::run(repo, &args);
    }
    let started = Instant::now();
    let log = |msg: &str| eprintln!("[{:>6.1}s] {msg}", started.elapsed().as_secs_f64());
    let shapes = args.shapes.clone().unwrap_or_else(|| {
        if args.quick {
            vec!["tiny".into()]
        } else {
            vec!["124M".into(), "1558M".into()]
        }
    });
    let clients = if args.quick { vec![1, 4] } else { args.clients.clone() };
    let n_gen = if args.quick { 16 } else { args.n_gen };
    // Context per slot: the prompt and the completion, with room to spare (the tiny model has 64).
    let n_ctx = if args.quick { 64 } else { 256.max(n_gen + 64) };
    let out_dir = args.out.clone().unwrap_or_else(|| repo.join("bench"));
    log("building quill (release)");
    let quill = build_quill(repo)?;
    let llama_version = args.llama_server.as_deref().map(llama_version).transpose()?;
    let models = models::prepare(repo, &quill, &shapes, &args.types, &log)?;
    let llama_args: Vec<String> =
        args.llama_args.as_deref().unwrap_or("").split_whitespace().map(str::to_owned).collect();
    let load_avg = |when: &str| {
        let l = quill_sysinfo::load_average().unwrap_or_default();
        log(&format!("load average {when}: {:.2} {:.2} {:.2}", l[0], l[1], l[2]));
        l[0]
    };
    let load_before = load_avg("before");
    let mut rows = Vec::new();
    for m in &models {
        warm_page_cache(&m.path)?;
        let tg = quill_tg(&quill, &m.path, n_gen, args.threads)?;
        log(&format!("{} {}: quill bench tg{n_gen} {tg:.1} t/s", m.shape, m.file_type));
        let mut row =
            Row { shape: m.shape.clone(), file_type: m.file_type.clone(), tg, quill: Vec::new(), llama: Vec::new() };
        for &n in &clients {
            warm_page_cache(&m.path)?;
            let q = run_load(
                Engine::Quill,
                &quill,
                &m.path,
                &Shape { clients: n, n_gen, n_ctx, threads: args.threads, extra: &[], prefix: None },
            )?;
            log(&format!(
                "    quill serve   {n:3} clients: {:7.1} t/s, TTFT p50 {:.0} ms p99 {:.0} ms, TBT p50 {:.1} ms p99 {:.1} ms",
                q.agg_tps, q.ttft_ms.0, q.ttft_ms.1, q.tbt_ms.0, q.tbt_ms.1
            ));
            row.quill.push(q);
            if let (Some(ls), Some(lpath)) = (&args.llama_server, super::llama_file(m)) {
                warm_page_cache(&lpath)?;
                let l = run_load(
                    Engine::Llama,
                    ls,
                    &lpath,
                    &Shape { clients: n, n_gen, n_ctx, threads: args.threads, extra: &llama_args, prefix: None },
                )?;
                log(&format!(
                    "    llama-server  {n:3} clients: {:7.1} t/s, TTFT p50 {:.0} ms p99 {:.0} ms, TBT p50 {:.1} ms p99 {:.1} ms",
                    l.agg_tps, l.ttft_ms.0, l.ttft_ms.1, l.tbt_ms.0, l.tbt_ms.1
                ));
                row.llama.push(l);
            }
        }
        rows.push(row);
    }
    let load_after = load_avg("after");
    let quill_sysinfo::Cpu { name: cpu, simd_flags: flags } = quill_sysinfo::cpu();
    let commit = git(repo, &["rev-parse", "--short", "HEAD"]);
    let dirty = !git(repo, &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let commit = if dirty { format!("{commit} (with uncommitted changes)") } else { commit };
    let header = format!(
        "Machine: {cpu} ({}), {} threads per server, load average {load_before:.1} before and {load_after:.1} after the run. \
         Quill {commit}; {}; {}. Each level starts a fresh server with one slot per client ({} tokens of context \
         per slot), warms it with one request, then N clients each stream one completion of {n_gen} tokens after a \
         ~25-token prompt (`ignore_eos`, temperature 0.8, top-k 40, top-p 0.95, min-p 0.05).",
        flags.join(" "),
        args.threads,
        llama_version
            .as_deref()
            .map(|v| {
                let extra = if llama_args.is_empty() { String::new() } else { format!(", run with `{}`", llama_args.join(" ")) };
                format!("llama.cpp {v}{extra}")
            })
            .unwrap_or_else(|| "llama-server not run".into()),
        quill_sysinfo::UtcTime::now().readable(),
        n_ctx,
    );
    let header = if rows.iter().any(|r| r.file_type == "q4_0_8_8" && !r.llama.is_empty()) {
        header
            + " llama-server ran the q4_0_8_8 rows' Q4_0 original (the same values; today's llama.cpp no longer reads \
               interleaved files and repacks Q4_0 into that layout in memory itself)."
    } else {
        header
    };
    std::fs::create_dir_all(&out_dir)?;
    let md = markdown(&header, &rows, n_gen);
    std::fs::write(out_dir.join("SERVE.md"), &md)?;
    let doc = json!({
        "machine": {"cpu": cpu, "flags": flags, "threads": args.threads, "load_before": load_before, "load_after": load_after},
        "commit": commit,
        "llama_cpp": llama_version,
        "n_gen": n_gen,
        "rows": rows.iter().map(|r| json!({
            "shape": r.shape,
            "type": r.file_type,
            "quill_tg_tps": r.tg,
            "quill": r.quill.iter().map(Load::to_json).collect::<Vec<_>>(),
            "llama_cpp": r.llama.iter().map(Load::to_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(out_dir.join("serve.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
    std::fs::write(out_dir.join("serve.svg"), chart(&rows, args.threads))?;
    log(&format!("wrote {}/SERVE.md, serve.json, serve.svg", out_dir.display()));
    if !args.no_readme && !args.quick {
        crate::replace_section(
            &repo.join("README.md"),
            "serve-bench",
            &format!("{md}\n![serving](bench/serve.svg)\n"),
        )?;
        log("updated the README's serving section");
    }
    print!("{md}");
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn markdown(header: &str, rows: &[Row], n_gen: usize) -> String {
    let mut s = String::new();
    s += "<!-- Generated by `cargo xtask bench serve`; do not edit by hand. -->\n";
    s += header;
    s += "\n\n| model | type | clients | Quill t/s | llama-server t/s | ratio | Quill TTFT p50 / p99 ms | llama TTFT p50 / p99 ms | Quill TBT p50 / p99 ms | llama TBT p50 / p99 ms | Quill CPU ms/token | llama CPU ms/token | Quill peak RSS | llama peak RSS |\n";
    s += "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    for r in rows {
        for (i, q) in r.quill.iter().enumerate() {
            let l = r.llama.get(i);
            let dash = || "-".to_owned();
            s += &format!(
                "| GPT-2 {} | {} | {} | {:.1} | {} | {} | {:.0} / {:.0} | {} | {:.1} / {:.1} | {} | {:.2} | {} | {:.0} MiB | {} |\n",
                r.shape,
                r.file_type,
                q.clients,
                q.agg_tps,
                l.map_or_else(dash, |l| format!("{:.1}", l.agg_tps)),
                l.filter(|l| l.agg_tps > 0.0).map_or_else(dash, |l| format!("**{:.2}x**", q.agg_tps / l.agg_tps)),
                q.ttft_ms.0,
                q.ttft_ms.1,
                l.map_or_else(dash, |l| format!("{:.0} / {:.0}", l.ttft_ms.0, l.ttft_ms.1)),
                q.tbt_ms.0,
                q.tbt_ms.1,
                l.map_or_else(dash, |l| format!("{:.1} / {:.1}", l.tbt_ms.0, l.tbt_ms.1)),
                q.cpu_ms_per_token,
                l.map_or_else(dash, |l| format!("{:.2}", l.cpu_ms_per_token)),
                mib(q.peak_rss),
                l.map_or_else(dash, |l| format!("{:.0} MiB", mib(l.peak_rss))),
            );
        }
    }
    s += &format!("\nScaling (aggregate t/s over the same engine's 1-client figure; Quill's single-stream `quill bench` tg{n_gen} beside it):\n\n");
    s += "| model | type | Quill tg (quill bench) | Quill 1 client | ";
    let levels: Vec<usize> = rows.first().map(|r| r.quill.iter().map(|q| q.clients).collect()).unwrap_or_default();
    for n in &levels {
        s += &format!("Quill {n} / 1 | llama {n} / 1 | ");
    }
    s += "\n| --- | --- | ---: | ---: |";
    s += &" ---: | ---: |".repeat(levels.len());
    s += "\n";
    for r in rows {
        let q1 = r.quill.first().map_or(0.0, |q| q.agg_tps);
        let l1 = r.llama.first().map_or(0.0, |l| l.agg_tps);
        s += &format!("| GPT-2 {} | {} | {:.1} | {:.1} | ", r.shape, r.file_type, r.tg, q1);
        for (i, q) in r.quill.iter().enumerate() {
            let l = r.llama.get(i).map_or_else(|| "-".into(), |l| format!("{:.2}x", l.agg_tps / l1.max(1e-9)));
            s += &format!("{:.2}x | {l} | ", q.agg_tps / q1.max(1e-9));
        }
        s += "\n";
    }
    let failed: usize = rows.iter().flat_map(|r| r.quill.iter().chain(&r.llama)).map(|l| l.failed).sum();
    if failed > 0 {
        s += &format!("\n{failed} requests failed (see the log); their tokens are not counted.\n");
    }
    s
}

fn chart(rows: &[Row], threads: usize) -> String {
    let panels: Vec<(String, Vec<svg::Group>)> = rows
        .iter()
        .map(|r| {
            let groups = r
                .quill
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    let mut bars = vec![("Quill".to_owned(), q.agg_tps)];
                    if let Some(l) = r.llama.get(i) {
                        bars.push(("llama-server".to_owned(), l.agg_tps));
                    }
                    svg::Group { label: format!("{} clients", q.clients), bars }
                })
                .collect();
            (format!("GPT-2 {} {} (aggregate tokens/s)", r.shape, r.file_type), groups)
        })
        .collect();
    svg::chart(
        &format!("quill serve vs llama-server, {threads} threads: aggregate generation against concurrent clients"),
        &panels,
    )
}
