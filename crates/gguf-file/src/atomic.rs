//! Atomic file output: data goes to a temporary file beside the destination, which is synced and
//! renamed over the destination only when complete. A failure or a kill at any point leaves the
//! destination as it was; temporary files left by a killed process are removed by the next
//! write into the same folder.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

const TMP_SUFFIX: &str = ".quill-tmp";

/// A file being written; becomes visible at `dest` only on [`AtomicFile::commit`].
pub struct AtomicFile {
    dest: PathBuf,
    out: BufWriter<NamedTempFile>,
}

fn tmp_prefix(dest: &Path) -> OsString {
    let mut p = OsString::from(".");
    p.push(dest.file_name().unwrap_or_default());
    p.push(".");
    p
}

/// The pid in the name of a temporary file of ours, `.<name>.<pid>.<random>.quill-tmp`.
fn tmp_pid(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?.strip_suffix(TMP_SUFFIX)?;
    let mut parts = rest.rsplitn(3, '.');
    let (_random, pid, name) = (parts.next()?, parts.next()?, parts.next()?);
    if name.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Removes the temporary files in `dir` left behind by processes that no longer exist (a
/// `quill quantize` killed with SIGKILL, a power cut), whatever their destination: they are
/// recognised by their name and the dead pid in it.
fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(tmp_pid) else { continue };
        if pid != std::process::id() && quill_sysinfo::process_alive(pid) == Some(false) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

impl AtomicFile {
    /// Starts writing a file that will replace `dest` on commit.
    pub fn create(dest: impl AsRef<Path>) -> io::Result<AtomicFile> {
        let dest = dest.as_ref().to_owned();
        if dest.file_name().is_none() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name"));
        }
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        if dest.is_dir() {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, "output path is a directory"));
        }
        remove_stale(&dir);
        let mut prefix = tmp_prefix(&dest);
        prefix.push(format!("{}.", std::process::id()));
        let tmp = tempfile::Builder::new().prefix(&prefix).suffix(TMP_SUFFIX).tempfile_in(&dir)?;
        // Temporary files are created private (0600); the result gets the permissions of the
        // file it replaces, or those of an ordinary new file.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&dest).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
            tmp.as_file().set_permissions(fs::Permissions::from_mode(mode))?;
        }
        Ok(AtomicFile { dest, out: BufWriter::with_capacity(1 << 20, tmp) })
    }

    /// The final destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes, syncs and renames the temporary file over the destination.
    pub fn commit(self) -> io::Result<()> {
        let tmp = self.out.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.dest).map_err(|e| e.error)?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_write_leaves_destination_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.gguf");
        fs::write(&dest, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.write_all(b"new data").unwrap();
            // dropped without commit
        }
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dest), 0o644, "not the temporary file's 0600");
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o640)).unwrap();
            let f = AtomicFile::create(&dest).unwrap();
            f.commit().unwrap();
            assert_eq!(mode(&dest), 0o640, "a replaced file keeps its permissions");
        }
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("m.gguf");
        // no process has pid u32::MAX
        let stale = dir.path().join(format!(".m.gguf.{}.abcdef{TMP_SUFFIX}", u32::MAX));
        let other_dest = dir.path().join(format!(".n.v2.gguf.{}.x{TMP_SUFFIX}", u32::MAX));
        let alive = dir.path().join(format!(".n.gguf.{}.x{TMP_SUFFIX}", std::process::id()));
        let not_ours = dir.path().join(format!(".n.gguf.pid.x{TMP_SUFFIX}"));
        for p in [&stale, &other_dest, &alive, &not_ours] {
            fs::write(p, b"partial").unwrap();
        }
        let f = AtomicFile::create(&dest).unwrap();
        f.commit().unwrap();
        if quill_sysinfo::process_alive(u32::MAX) == Some(false) {
            assert!(!stale.exists());
            assert!(!other_dest.exists(), "any destination's temporaries in the folder go");
        }
        assert!(alive.exists(), "a live process's temporary stays");
        assert!(not_ours.exists(), "a name without a pid is not ours");
    }

    #[test]
    fn temporary_names() {
        assert_eq!(tmp_pid(&format!(".m.gguf.42.Ab3x{TMP_SUFFIX}")), Some(42));
        assert_eq!(tmp_pid(&format!(".a.b.c.7.r{TMP_SUFFIX}")), Some(7));
        assert_eq!(tmp_pid(&format!(".42.r{TMP_SUFFIX}")), None, "no destination name");
        assert_eq!(tmp_pid(&format!("m.gguf.42.r{TMP_SUFFIX}")), None, "not hidden");
        assert_eq!(tmp_pid(".m.gguf.42.r.tmp"), None);
    }
}
