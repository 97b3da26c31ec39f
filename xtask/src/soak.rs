//! `cargo xtask soak`: a crowd against `quill serve` on loopback for a while, mixing what real
//! clients send (plain, streamed, dropped after a few tokens, `n` = 2 with logprobs, echo with
//! stop strings, broken bodies), then checks that the server held up: no 5xx and no connection
//! error, every slot free again, memory within a bound, and a seeded request giving the same
//! text after the storm as before it. Fails (non-zero exit) on any of these.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Clients step through the mix at a stride prime to its length (8), so that they do not move
/// in step.
const STRIDE: usize = 3;

/// Options of the soak test.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 24)]
    clients: usize,
    /// How long the storm lasts, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// The model (default: the repository's default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// KV slots of the server.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Threads of the server.
    #[arg(short, long, default_value_t = 2)]
    threads: usize,
    /// Most growth of the server's resident memory from after the warm-up to the end, in MiB.
    #[arg(long, default_value_t = 64)]
    max_rss_growth_mib: u64,
}

/// One HTTP exchange on a fresh connection (`Connection: close`): the status and the body, or
/// only the first `keep` bytes of the body when given (then the connection is dropped).
fn http(addr: &str, method: &str, path: &str, body: &[u8], keep: Option<usize>) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).context("connect")?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).context("read")?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if keep.is_some_and(|k| buf.len() >= k) {
            break; // a client that goes away mid-stream
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).context("no HTTP status line")?;
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n").map_or(buf.len(), |i| i + 4);
    Ok((status, buf[at..].to_vec()))
}

/// The requests of the mix: body, expected status, bytes to read before dropping (if any).
fn request(kind: usize, i: usize) -> (Vec<u8>, u16, Option<usize>) {
    let j = |v: Value| v.to_string().into_bytes();
    match kind % 8 {
        0 => (j(json!({"prompt": "To be, or not to be", "max_tokens": 24, "seed": i})), 200, None),
        1 => (j(json!({"prompt": "HAMLET.\n", "max_tokens": 32, "stream": true, "temperature": 0.7})), 200, None),
        2 => (j(json!({"prompt": "KING.\n", "max_tokens": 200, "stream": true, "ignore_eos": true})), 200, Some(900)),
        3 => (j(json!({"prompt": ["O", "Enter"], "max_tokens": 12, "n": 2, "logprobs": 3, "seed": i})), 200, None),
        4 => (
            j(json!({"prompt": "Friends, Romans, countrymen", "max_tokens": 40, "echo": true, "logprobs": 1,
                     "stop": ["\n\n", "."]})),
            200,
            None,
        ),
        5 => (b"{\"prompt\": \"unterminated".to_vec(), 400, None),
        6 => (j(json!({"prompt": "x", "max_tokens": "many"})), 400, None),
        _ => (j(json!({"prompt": "word ".repeat(400), "max_tokens": 4})), 400, None),
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A gauge of `/metrics`.
fn gauge(addr: &str, name: &str) -> Result<f64> {
    let (_, body) = http(addr, "GET", "/metrics", b"", None)?;
    let text = String::from_utf8_lossy(&body);
    let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
    line.and_then(|l| l.rsplit(' ').next()?.parse().ok()).with_context(|| format!("no {name} in /metrics"))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(quill: &Path, model: &Path, args: &Args) -> Result<(Server, String)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let queue = (args.clients * 4).to_string();
    let child = Command::new(quill)
        .args(["serve", "-m", model.to_str().context("utf-8 path")?, "--port", &port.to_string()])
        .args(["--parallel", &args.parallel.to_string(), "--queue", &queue, "-t", &args.threads.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting quill serve")?;
    let server = Server(child);
    let addr = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    while !matches!(http(&addr, "GET", "/health", b"", None), Ok((200, _))) {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("quill serve did not get ready in 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((server, addr))
}

/// The seeded request whose text must not change.
fn reference(addr: &str) -> Result<String> {
    let body =
        json!({"prompt": "Now is the winter of our discontent", "max_tokens": 32, "seed": 7, "temperature": 0.9});
    let (status, out) = http(addr, "POST", "/v1/completions", body.to_string().as_bytes(), None)?;
    if status != 200 {
        bail!("the reference request got HTTP {status}");
    }
    let v: Value = serde_json::from_slice(&out)?;
    Ok(v["choices"][0]["text"].as_str().context("no text")?.to_owned())
}

pub fn run(repo: &Path, args: Args) -> Result<()> {
    let quill = crate::bench::build_quill(repo)?;
    let model = args.model.clone().unwrap_or_else(|| repo.join("models/quill-shakespeare.gguf"));
    let (server, addr) = start(&quill, &model, &args)?;
    let pid = server.0.id();
    let before = reference(&addr)?;
    for k in 0..8 {
        let (body, _, keep) = request(k, k);
        http(&addr, "POST", "/v1/completions", &body, keep)?;
    }
    let rss0 = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, problems) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::<String>::new())));
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            let (addr, stop, sent, problems) = (addr.clone(), stop.clone(), sent.clone(), problems.clone());
            std::thread::spawn(move || {
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let (body, want, keep) = request(i, i);
                    let got = http(&addr, "POST", "/v1/completions", &body, keep);
                    sent.fetch_add(1, Ordering::Relaxed);
                    let problem = match got {
                        Ok((status, _)) if status == want => None,
                        Ok((status, out)) => Some(format!(
                            "kind {}: HTTP {status} (wanted {want}): {}",
                            i % 8,
                            String::from_utf8_lossy(&out)
                        )),
                        Err(e) => Some(format!("kind {}: {e:#}", i % 8)),
                    };
                    if let Some(p) = problem {
                        problems.lock().unwrap_or_else(|e| e.into_inner()).push(p);
                    }
                    i += STRIDE;
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let storm = t0.elapsed().as_secs_f64();
    // Every slot free again (dropped clients are noticed at the next step).
    let t1 = Instant::now();
    while gauge(&addr, "quill_running_sequences")? > 0.0 || gauge(&addr, "quill_queue_depth")? > 0.0 {
        if t1.elapsed() > Duration::from_secs(15) {
            problems.lock().unwrap().push("sequences still running 15 s after the last client left".into());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss1 = rss_kib(pid);
    let after = reference(&addr)?;
    let mut problems = std::mem::take(&mut *problems.lock().unwrap());
    if after != before {
        problems.push(format!("the seeded request changed: {before:?} before, {after:?} after"));
    }
    let growth = rss1.saturating_sub(rss0) / 1024;
    if growth > args.max_rss_growth_mib {
        problems.push(format!("resident memory grew by {growth} MiB (at most {})", args.max_rss_growth_mib));
    }
    drop(server);
    eprintln!(
        "soak: {} clients for {storm:.0} s sent {} requests; RSS {} -> {} MiB; {} problems",
        args.clients,
        sent.load(Ordering::Relaxed),
        rss0 / 1024,
        rss1 / 1024,
        problems.len()
    );
    if !problems.is_empty() {
        for p in problems.iter().take(20) {
            eprintln!("  {p}");
        }
        bail!("the server did not hold up ({} problems)", problems.len());
    }
    Ok(())
}
