//! Resident memory of this process, split into file-backed pages (the mapped weights) and
//! anonymous ones (heap, KV cache), from `/proc/self/status` (Linux; zeros elsewhere).

/// Resident set sizes in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rss {
    /// Peak resident set (`VmHWM`).
    pub peak: u64,
    /// File-backed resident pages (`RssFile`), the largest seen.
    pub file: u64,
    /// Anonymous resident pages (`RssAnon`), the largest seen.
    pub anon: u64,
}

fn read_status() -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmHWM:")?, field("RssFile:")?, field("RssAnon:")?))
}

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
        if let Some((peak, file, anon)) = read_status() {
            self.rss.peak = self.rss.peak.max(peak);
            self.rss.file = self.rss.file.max(file);
            self.rss.anon = self.rss.anon.max(anon);
        }
    }

    pub fn get(&self) -> Rss {
        self.rss
    }
}

pub fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}
