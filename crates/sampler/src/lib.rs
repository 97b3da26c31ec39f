//! Samplers (filled by the generation issue).
