//! Stop strings: text is held back while it might be the start of one.

/// Holds back output that might be the start of a stop string.
#[derive(Clone, Debug, Default)]
pub struct StopFilter {
    stops: Vec<String>,
    pending: String,
}

impl StopFilter {
    /// A filter for `stops` (empty strings are ignored: they would match everywhere).
    pub fn new(stops: &[String]) -> StopFilter {
        StopFilter { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), pending: String::new() }
    }

    /// Adds text and appends to `out` what can no longer be part of a stop string; returns
    /// whether a stop string was found (`out` then ends just before it).
    pub fn push(&mut self, text: &str, out: &mut String) -> bool {
        self.pending.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            out.push_str(&self.pending[..at]);
            self.pending.clear();
            return true;
        }
        // Keep the longest suffix that is a prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.pending.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let cut = self.pending.len() - keep;
        out.push_str(&self.pending[..cut]);
        self.pending.drain(..cut);
        false
    }

    /// Appends whatever is still held back (the text ended without a stop string).
    pub fn finish(&mut self, out: &mut String) {
        out.push_str(&self.pending);
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_prefixes_and_cuts_at_the_stop() {
        let stops = vec!["\n\n".to_owned(), "THE END".to_owned()];
        let mut f = StopFilter::new(&stops);
        let mut out = String::new();
        assert!(!f.push("hello\n", &mut out));
        assert_eq!(out, "hello");
        assert!(!f.push("world THE", &mut out));
        assert_eq!(out, "hello\nworld ");
        assert!(f.push(" END and more", &mut out));
        assert_eq!(out, "hello\nworld ");
        let mut f = StopFilter::new(&stops);
        let mut out = String::new();
        assert!(!f.push("a\n", &mut out));
        f.finish(&mut out);
        assert_eq!(out, "a\n");
    }

    #[test]
    fn no_stops_passes_everything() {
        let mut f = StopFilter::new(&[String::new()]);
        let mut out = String::new();
        assert!(!f.push("abc", &mut out));
        assert_eq!(out, "abc");
    }
}
