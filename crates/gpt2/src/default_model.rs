//! Where the default model shipped in the repository's `models/` folder is found.

use std::path::PathBuf;

/// File name of the default model inside `models/`.
pub const FILE_NAME: &str = "quill-shakespeare.gguf";

/// The shipped default model: in the workspace these crates were built from (a `cargo run`,
/// `target/*/quill` or a `pip install` of a clone), next to the running executable, or in the
/// current directory's `models/`. `None` when none of those holds it.
pub fn path() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    // Compile-time location of this workspace.
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models").join(FILE_NAME));
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(4) {
            candidates.push(dir.join("models").join(FILE_NAME));
        }
    }
    candidates.push(PathBuf::from("models").join(FILE_NAME));
    let found = candidates.into_iter().find(|c| c.is_file())?;
    Some(found.canonicalize().unwrap_or(found))
}
