//! Typed errors: one enum for block data ([`QuantError`]), one for the per-tensor policy
//! ([`PolicyError`]). Every variant carries the type and the lengths it was checking.

use gguf_file::GgmlType;

/// What can go wrong handing block data to this crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("type {ty} has no block format in quill-quant (supported: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q8_1, q4_K, q5_K, q6_K, q8_K)")]
    UnsupportedType { ty: GgmlType },

    #[error("{ty}: a row of {n_per_row} elements is not a whole number of {block_size}-element blocks")]
    RowNotWholeBlocks { ty: GgmlType, n_per_row: usize, block_size: usize },

    #[error("{ty}: {n_elements} elements is not a whole number of {n_per_row}-element rows")]
    NotWholeRows { ty: GgmlType, n_elements: usize, n_per_row: usize },

    #[error("{ty}: {n_elements} elements is not a whole number of {block_size}-element blocks")]
    ElementsNotWholeBlocks { ty: GgmlType, n_elements: usize, block_size: usize },

    #[error("{ty}: {len} bytes is not a whole number of {block_bytes}-byte blocks")]
    BytesNotWholeBlocks { ty: GgmlType, len: usize, block_bytes: usize },

    #[error("{ty}: destination holds {found} bytes, {expected} needed for {n_elements} elements")]
    DstBytes { ty: GgmlType, n_elements: usize, expected: usize, found: usize },

    #[error("{ty}: destination holds {found} elements, {expected} needed for {n_blocks} blocks")]
    DstElements { ty: GgmlType, n_blocks: usize, expected: usize, found: usize },

    #[error("{ty}: block data at address {addr:#x} is not aligned to {align} bytes")]
    Misaligned { ty: GgmlType, addr: usize, align: usize },

    #[error("{ty}: size overflows usize for {n_elements} elements")]
    Overflow { ty: GgmlType, n_elements: usize },

    #[error("{ty}: {rows} rows is not a whole number of {group}-row interleaved groups")]
    RowsNotGroups { ty: GgmlType, rows: usize, group: usize },

    #[error("{ty} interleaves the blocks of 8 rows: it is read by whole groups of rows (quill_quant::dequantize_rows), not block by block")]
    Interleaved { ty: GgmlType },

    #[error("vec_dot {ty} x {dot_ty}: {w_elements} weight elements against {x_elements} activation elements")]
    DotLength { ty: GgmlType, dot_ty: GgmlType, w_elements: usize, x_elements: usize },
}

/// What can go wrong choosing per-tensor types.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("unknown file type '{name}' (expected one of: f32, f16, bf16, q8_0, q4_0, q4_0_8_8, q4_1, q5_0, q5_1, q4_k_m, q5_k_m, q6_k)")]
    UnknownFileType { name: String },

    #[error("tensor type override '{spec}': expected REGEX=TYPE")]
    OverrideSyntax { spec: String },

    #[error("tensor type override '{spec}': bad regex: {reason}")]
    OverrideRegex { spec: String, reason: String },

    #[error("tensor type override '{spec}': unknown or unsupported type '{ty}'")]
    OverrideType { spec: String, ty: String },
}
