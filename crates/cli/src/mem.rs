//! Resident memory of this process across a run, split into file-backed pages (the mapped
//! weights) and anonymous ones (heap, KV cache); zeros where the system does not say.

pub use quill_sysinfo::ProcessMemory as Rss;

/// Tracks the peaks of file-backed and anonymous memory across samples.
#[derive(Default)]
pub struct RssTracker {
    rss: Rss,
}

impl RssTracker {
    pub fn new() -> Self {
        let mut t = Self::default();
        t.sample();
        t
    }

    /// Reads the current figures and keeps the largest of each.
    pub fn sample(&mut self) {
        if let Some(now) = quill_sysinfo::process_memory() {
            self.rss.peak = self.rss.peak.max(now.peak);
            self.rss.file = self.rss.file.max(now.file);
            self.rss.anon = self.rss.anon.max(now.anon);
        }
    }

    pub fn get(&self) -> Rss {
        self.rss
    }
}

pub fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}
