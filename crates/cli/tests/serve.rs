//! `quill serve` as a process: flags, SIGTERM while a stream is in flight (exit 0), and a
//! request alone on the server giving what `quill generate` gives with the same seed and
//! sampling flags.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A `quill serve` process on an ephemeral port, ready.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str], kernel: Option<&str>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quill"));
        cmd.args(["serve", "--port", "0"]).args(args).env_remove("QUILL_MODEL").stderr(Stdio::piped());
        if let Some(k) = kernel {
            cmd.env("QUILL_KERNEL", k);
        }
        let mut child = cmd.spawn().unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut addr = None;
        let mut line = String::new();
        loop {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "quill serve exited early");
            if let Some(rest) = line.strip_prefix("quill: listening on http://") {
                addr = Some(rest.split(',').next().unwrap().to_owned());
            }
            if line.starts_with("quill: ready") {
                break;
            }
        }
        // Keep draining stderr so that the server never blocks on it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        Server { child, addr: addr.unwrap() }
    }

    /// Sends a POST and returns the connection, its response not yet read.
    fn post(&self, path: &str, body: &Value) -> TcpStream {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.to_string();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        s
    }

    /// A whole JSON response body (chunked encoding undone).
    fn json(&self, path: &str, body: &Value) -> Value {
        let mut raw = String::new();
        self.post(path, body).read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{raw}");
        serde_json::from_str(body).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigterm_ends_streams_in_flight_and_exits_0() {
    let mut s = Server::start(&["--parallel", "2", "--shutdown-timeout", "0.5"], None);
    let conn = s.post(
        "/v1/completions",
        &json!({"prompt": "HAMLET.", "max_tokens": 100000, "ignore_eos": true, "stream": true}),
    );
    let mut r = BufReader::new(conn);
    let (mut line, mut head) = (String::new(), String::new());
    while !line.starts_with("data: ") {
        head.push_str(&line);
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "the response ended before its first event: {head}");
    }
    let t0 = Instant::now();
    let status = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "the stream did not end cleanly: {rest}");
    let code = s.child.wait().unwrap();
    assert!(code.success(), "exit status {code:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_flags_are_refused() {
    let o = quill(&["serve", "--parallel", "0"]);
    assert_fails_with(&o, &["--parallel must be at least 1"]);
    let o = quill(&["serve", "-m", "no/such.gguf", "--port", "0"]);
    assert_fails_with(&o, &["loading the model: no/such.gguf"]);
    let o = quill(&["serve", "--ctx", "100000", "--port", "0"]);
    assert_fails_with(&o, &["larger than the model's 256"]);
}

/// The generated text of `quill generate` with these flags.
fn generate(kernel: &str, prompt: &str, flags: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_quill"))
        .args(["generate", "-p", prompt, "--json"])
        .args(flags)
        .env("QUILL_KERNEL", kernel)
        .env_remove("QUILL_MODEL")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["text"].as_str().unwrap().to_owned()
}

#[test]
fn a_request_alone_gives_what_quill_generate_gives() {
    // Bit for bit only where one-token products (generate's decode) and batched ones (the
    // server's) follow the same float operations: the scalar kernels always, a SIMD backend
    // once its GEMV matches its GEMM (quill_kernels::Kernels::gemv_matches_gemm).
    let mut kernels = vec!["scalar"];
    let active = quill_kernels::Kernels::active();
    let file = gguf_file::GgufFile::open(repo().join("models/quill-shakespeare.gguf")).unwrap();
    let matrices: Vec<_> =
        file.tensors().filter(|t| t.dims().len() == 2 && t.name() != "position_embd.weight").map(|t| t.ty()).collect();
    if matrices.iter().all(|&ty| active.gemv_matches_gemm(ty)) && active.backend().name() != "scalar" {
        kernels.push(active.backend().name());
    }
    for kernel in kernels {
        let s = Server::start(&["--parallel", "4"], Some(kernel));
        for (prompt, seed, temp, top_k, top_p) in
            [("To be, or not to be", 1u64, 0.8, 40, 0.95), ("HAMLET.\n", 7, 1.1, 0, 0.9), ("O", 3, 0.0, 40, 1.0)]
        {
            let flags = [
                "-n",
                "24",
                "--seed",
                &seed.to_string(),
                "--temp",
                &temp.to_string(),
                "--top-k",
                &top_k.to_string(),
                "--top-p",
                &top_p.to_string(),
                "--min-p",
                "0.05",
                "--repeat-penalty",
                "1.1",
                "--ignore-eos",
            ];
            let want = generate(kernel, prompt, &flags);
            let got = s.json(
                "/v1/completions",
                &json!({
                    "prompt": prompt, "max_tokens": 24, "seed": seed, "temperature": temp, "top_k": top_k,
                    "top_p": top_p, "min_p": 0.05, "repeat_penalty": 1.1, "ignore_eos": true,
                }),
            );
            assert_eq!(got["choices"][0]["text"].as_str().unwrap(), want, "{kernel}: {prompt:?} seed {seed}");
        }
    }
}
