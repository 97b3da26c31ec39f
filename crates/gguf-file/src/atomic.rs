//! Atomic file output: data goes to a temporary file beside the destination, which is synced and
//! renamed over the destination only when complete. A failure or a kill at any point leaves the
//! destination as it was; temporary files left by a killed process are removed by the next
//! write to the same destination.

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

/// Removes temporary files for `dest` left behind by processes that no longer exist.
fn remove_stale(dir: &Path, dest: &Path) {
    let prefix = tmp_prefix(dest);
    let prefix = prefix.to_string_lossy();
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(rest) = name.strip_prefix(prefix.as_ref()).and_then(|r| r.strip_suffix(TMP_SUFFIX)) else {
            continue;
        };
        // `rest` is "<pid>.<random>".
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
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
        remove_stale(&dir, &dest);
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
        fs::write(&stale, b"partial").unwrap();
        let other = dir.path().join(".n.gguf.1.x.quill-tmp");
        fs::write(&other, b"someone else's").unwrap();
        let f = AtomicFile::create(&dest).unwrap();
        f.commit().unwrap();
        assert!(!stale.exists());
        assert!(other.exists(), "only this destination's temporaries are touched");
    }
}
