//! The GPT-2 model (filled by the model issue).
