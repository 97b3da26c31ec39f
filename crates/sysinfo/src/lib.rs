//! Facts about the machine and this process, for sizing decisions and reports: the memory the
//! system can still give (`/proc/meminfo`), this process's resident memory
//! (`/proc/self/status`), the CPU's name and SIMD flags (`/proc/cpuinfo`), whether a process
//! is alive (`/proc/<pid>`), another process's peak memory and CPU time, the load average,
//! and the UTC date. Linux reads `/proc`; elsewhere every answer is
//! "unknown" (`None`, zeros or "unknown"). This is the only code that reads `/proc`.

use std::path::Path;

/// The value of a `Key:   123 kB` line of a `/proc` file, in bytes.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    let kb: u64 = line[key.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    kb.checked_mul(1024)
}

/// Memory the system can still give this process (`MemAvailable`), if known.
pub fn mem_available() -> Option<u64> {
    kb_field(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemAvailable")
}

/// Resident memory of this process, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessMemory {
    /// Peak resident set (`VmHWM`).
    pub peak: u64,
    /// File-backed resident pages (`RssFile`): mapped files, such as model weights.
    pub file: u64,
    /// Anonymous resident pages (`RssAnon`): heap and stacks.
    pub anon: u64,
}

/// This process's resident memory now, if known.
pub fn process_memory() -> Option<ProcessMemory> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    Some(ProcessMemory { peak: kb_field(&s, "VmHWM")?, file: kb_field(&s, "RssFile")?, anon: kb_field(&s, "RssAnon")? })
}

/// Peak resident memory (`VmHWM`) of process `pid`, in bytes, if known (a server measured
/// from outside).
pub fn peak_rss_of(pid: u32) -> Option<u64> {
    kb_field(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmHWM")
}

/// CPU time (user + system) process `pid` has used so far, in seconds, if known. Linux counts
/// it in clock ticks of 1/100 s (`USER_HZ`).
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    parse_stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat_cpu(stat: &str) -> Option<f64> {
    // Fields after the command name (which may hold spaces, inside parentheses): utime and
    // stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The system's load averages over 1, 5 and 15 minutes (`/proc/loadavg`), if known.
pub fn load_average() -> Option<[f64; 3]> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// The CPU's model name and the SIMD flags among those Quill's kernels care about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// `model name`, or "unknown".
    pub name: String,
    /// The flags of [`SIMD_FLAGS`] this CPU lists, in `/proc/cpuinfo`'s order.
    pub simd_flags: Vec<String>,
}

/// The `/proc/cpuinfo` flags reported with benchmark results.
pub const SIMD_FLAGS: [&str; 9] =
    ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni"];

/// The first CPU of `/proc/cpuinfo`.
pub fn cpu() -> Cpu {
    parse_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
}

fn parse_cpuinfo(info: &str) -> Cpu {
    let value = |key: &str| {
        info.lines()
            .find(|l| l.split_once(':').is_some_and(|(k, _)| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let name = value("model name").unwrap_or_else(|| "unknown".into());
    let flags = value("flags").unwrap_or_default();
    let simd_flags = flags.split_whitespace().filter(|f| SIMD_FLAGS.contains(f)).map(str::to_owned).collect();
    Cpu { name, simd_flags }
}

/// Whether process `pid` exists: `Some(false)` only when it surely does not (`None` where
/// there is no cheap way to tell).
pub fn process_alive(pid: u32) -> Option<bool> {
    if cfg!(target_os = "linux") && Path::new("/proc/self").exists() {
        Some(Path::new("/proc").join(pid.to_string()).exists())
    } else {
        None
    }
}

/// A UTC time of day and date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    /// The current time (the epoch if the clock is before it).
    pub fn now() -> UtcTime {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        UtcTime::from_unix(secs)
    }

    /// The civil date of `secs` since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    pub fn from_unix(secs: u64) -> UtcTime {
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let (hour, minute, second) = ((rem / 3600) as u32, (rem % 3600 / 60) as u32, (rem % 60) as u32);
        UtcTime { year, month, day, hour, minute, second }
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, as llama-bench's `test_time`).
    pub fn rfc3339(&self) -> String {
        let UtcTime { year, month, day, hour, minute, second } = *self;
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
    }

    /// `YYYY-MM-DD HH:MM UTC`, for reports read by people.
    pub fn readable(&self) -> String {
        let UtcTime { year, month, day, hour, minute, .. } = *self;
        format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kb_fields() {
        let s = "MemTotal:       16384 kB\nMemAvailable:    8192 kB\nVmHWM:\t  100 kB\n";
        assert_eq!(kb_field(s, "MemAvailable"), Some(8192 * 1024));
        assert_eq!(kb_field(s, "VmHWM"), Some(100 * 1024));
        assert_eq!(kb_field(s, "Mem"), None, "a prefix of a key is not the key");
        assert_eq!(kb_field(s, "Missing"), None);
    }

    #[test]
    fn loadavg() {
        assert_eq!(parse_loadavg("0.52 1.00 2.25 3/512 12345\n"), Some([0.52, 1.0, 2.25]));
        assert_eq!(parse_loadavg("0.5"), None);
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0 1000 0 0";
        assert_eq!(parse_stat_cpu(stat), Some(2.8));
        if cfg!(target_os = "linux") {
            assert!(load_average().is_some());
            assert!(peak_rss_of(std::process::id()).unwrap() > 0);
            assert!(cpu_seconds_of(std::process::id()).is_some());
        }
    }

    #[test]
    fn cpuinfo() {
        let c = parse_cpuinfo("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 fma avx512f\n");
        assert_eq!(c, Cpu { name: "AMD EPYC".into(), simd_flags: vec!["avx2".into(), "fma".into(), "avx512f".into()] });
        assert_eq!(parse_cpuinfo("").name, "unknown");
    }

    #[test]
    fn dates() {
        let t = UtcTime::from_unix(1_700_000_000);
        assert_eq!(t.rfc3339(), "2023-11-14T22:13:20Z");
        assert_eq!(t.readable(), "2023-11-14 22:13 UTC");
        assert_eq!(UtcTime::from_unix(951_782_400).rfc3339(), "2000-02-29T00:00:00Z");
        assert!(UtcTime::now().year >= 2024);
    }

    #[test]
    fn this_process_is_alive() {
        if let Some(alive) = process_alive(std::process::id()) {
            assert!(alive);
            assert_eq!(process_alive(u32::MAX), Some(false));
        }
    }
}
