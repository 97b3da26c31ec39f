//! Compute kernels (filled by the kernels issue).
