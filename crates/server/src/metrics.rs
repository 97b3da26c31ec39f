//! `/metrics`: Prometheus text format, from the server's counters and the engine's.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use quill_engine::{Client, Stats};

/// Upper bounds (seconds) of the time-to-first-token histogram's buckets.
const TTFT_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; TTFT_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters kept by the HTTP side.
#[derive(Default)]
pub struct Metrics {
    /// Completion requests answered, by status class.
    pub requests_ok: AtomicU64,
    pub requests_client_error: AtomicU64,
    pub requests_rejected: AtomicU64,
    /// Prompt tokens of the completions answered (a prompt shared by `n` completions counts once).
    pub prompt_tokens: AtomicU64,
    /// Tokens sent to clients.
    pub completion_tokens: AtomicU64,
    ttft: Mutex<Histogram>,
}

impl Metrics {
    /// Records one time to first token.
    pub fn observe_ttft(&self, secs: f64) {
        let mut h = self.ttft.lock().unwrap_or_else(|e| e.into_inner());
        for (c, &b) in h.counts.iter_mut().zip(&TTFT_BUCKETS) {
            if secs <= b {
                *c += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Counts a finished request by its HTTP status.
    pub fn count_status(&self, status: u16) {
        let c = match status {
            200..=299 => &self.requests_ok,
            503 => &self.requests_rejected,
            _ => &self.requests_client_error,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The whole exposition.
    pub fn render(&self, client: &Client, slots: usize, kv_bytes_per_slot: usize) -> String {
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        };
        let v = |x: u64| vec![(String::new(), x.to_string())];
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        metric(
            "quill_requests_total",
            "counter",
            "Completion requests answered, by outcome (ok, client_error: 4xx, rejected: 503).",
            &[
                ("{outcome=\"ok\"}".into(), ld(&self.requests_ok).to_string()),
                ("{outcome=\"client_error\"}".into(), ld(&self.requests_client_error).to_string()),
                ("{outcome=\"rejected\"}".into(), ld(&self.requests_rejected).to_string()),
            ],
        );
        metric(
            "quill_prompt_tokens_total",
            "counter",
            "Prompt tokens of the requests answered.",
            &v(ld(&self.prompt_tokens)),
        );
        metric(
            "quill_completion_tokens_total",
            "counter",
            "Tokens generated and sent to clients.",
            &v(ld(&self.completion_tokens)),
        );
        let st: &Stats = client.stats();
        metric("quill_queue_depth", "gauge", "Prompts waiting for a KV slot.", &v(client.queue_depth() as u64));
        metric(
            "quill_running_sequences",
            "gauge",
            "Sequences holding a KV slot.",
            &v(st.running.load(Ordering::Relaxed) as u64),
        );
        metric("quill_slots", "gauge", "KV slots (--parallel).", &v(slots as u64));
        metric("quill_kv_bytes_per_slot", "gauge", "Bytes of KV cache per slot.", &v(kv_bytes_per_slot as u64));
        metric(
            "quill_batch_size",
            "gauge",
            "Tokens in the last forward pass.",
            &v(st.last_batch.load(Ordering::Relaxed) as u64),
        );
        metric("quill_steps_total", "counter", "Forward passes run.", &v(ld(&st.steps)));
        metric(
            "quill_batch_tokens_total",
            "counter",
            "Tokens evaluated by forward passes (mean batch size = this / quill_steps_total).",
            &v(ld(&st.batch_tokens)),
        );
        metric(
            "quill_engine_prompt_tokens_total",
            "counter",
            "Prompt tokens evaluated by the engine.",
            &v(ld(&st.prompt_tokens)),
        );
        metric(
            "quill_engine_sampled_tokens_total",
            "counter",
            "Tokens sampled by the engine.",
            &v(ld(&st.generated_tokens)),
        );
        metric(
            "quill_sequences_cancelled_total",
            "counter",
            "Sequences whose client went away.",
            &v(ld(&st.cancelled)),
        );
        metric(
            "quill_prefix_cache_lookups_total",
            "counter",
            "Prompts looked up in the prefix cache.",
            &v(ld(&st.prefix_lookups)),
        );
        metric(
            "quill_prefix_cache_hits_total",
            "counter",
            "Prompts that started after a cached prefix.",
            &v(ld(&st.prefix_hits)),
        );
        metric(
            "quill_prefix_cache_tokens_reused_total",
            "counter",
            "Prompt tokens not evaluated again thanks to the prefix cache.",
            &v(ld(&st.prefix_tokens_reused)),
        );
        let h = self.ttft.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines: Vec<(String, String)> = TTFT_BUCKETS
            .iter()
            .zip(&h.counts)
            .map(|(b, c)| (format!("_bucket{{le=\"{b}\"}}"), c.to_string()))
            .collect();
        lines.push(("_bucket{le=\"+Inf\"}".into(), h.count.to_string()));
        lines.push(("_sum".into(), format!("{:.6}", h.sum)));
        lines.push(("_count".into(), h.count.to_string()));
        metric(
            "quill_time_to_first_token_seconds",
            "histogram",
            "From a completion request's arrival to its first token.",
            &lines,
        );
        s
    }
}
