//! How an error reaches the user: one line, each cause once, and advice naming the option to
//! change (the libraries state what is wrong; only the CLI knows its flags).

use quill_gpt2::perplexity::PplError;
use quill_gpt2::ModelError;

/// The error line: the chain of causes joined by ": ", skipping a cause whose text the line
/// already holds (a library error that prints its source, as `path: No such file`, has that
/// source again as the next cause), then advice if some cause calls for it.
pub fn message(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    if let Some(hint) = e.chain().find_map(advice) {
        line.push_str("; ");
        line.push_str(&hint);
    }
    line
}

/// Which option fixes the error, if one does.
fn advice(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(e) = cause.downcast_ref::<ModelError>() {
        return match e {
            ModelError::ContextFull { max, .. } => Some(format!("use a larger --ctx, at most {max}")),
            ModelError::ContextTooLarge { max, .. } => Some(format!("--ctx can be at most {max}")),
            ModelError::OutOfMemory { .. } => Some("use a smaller --ctx or --kv-type q8_0".into()),
            _ => None,
        };
    }
    match cause.downcast_ref::<PplError>()? {
        PplError::CtxTooSmall(_) => Some("give --ctx 4 or more".into()),
        PplError::BadStride { max, .. } => Some(format!("give --stride between 1 and {max}")),
        PplError::TooShort { .. } => Some("use a longer text or a smaller --ctx".into()),
        PplError::LogitsFile { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let e = gguf_file::Error::Io { path: "/x.gguf".into(), source: io };
        assert_eq!(message(&e.into()), "/x.gguf: No such file or directory (os error 2)");
        let e = anyhow::Error::from(std::io::Error::other("disk full")).context("writing out.gguf");
        assert_eq!(message(&e), "writing out.gguf: disk full");
    }

    #[test]
    fn advice_names_the_flag() {
        let e = anyhow::Error::from(ModelError::ContextFull { needed: 300, n_ctx: 256, max: 1024 });
        assert_eq!(
            message(&e),
            "context is full: 300 positions needed, the session holds 256 (the model's context is 1024); \
             use a larger --ctx, at most 1024"
        );
    }
}
