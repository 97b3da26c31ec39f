//! Typed errors. Every parse error names the field it was reading and the byte offset.

use std::io;
use std::path::PathBuf;

use crate::types::GgmlType;
use crate::value::ValueType;

/// A GGUF byte stream that is not a valid file. Offsets are from the start of the file.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ParseError {
    #[error("truncated file: {what} at offset {offset} needs {needed} bytes, only {available} left")]
    Truncated { what: String, offset: u64, needed: u64, available: u64 },

    #[error("not a GGUF file: magic {found:02x?} at offset 0, expected \"GGUF\"")]
    BadMagic { found: Vec<u8> },

    #[error("big-endian GGUF (version field reads {version:#010x} little-endian) is not supported")]
    BigEndian { version: u32 },

    #[error("GGUF version {version} is not supported: quill reads versions 2 and 3")]
    UnsupportedVersion { version: u32 },

    #[error("{what} at offset {offset}: count {count} is more than the {available} bytes left could hold")]
    CountTooLarge { what: String, offset: u64, count: u64, available: u64 },

    #[error("{what} at offset {offset}: string length {len} exceeds {max}")]
    StringTooLong { what: String, offset: u64, len: u64, max: u64 },

    #[error("{what} at offset {offset}: string is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },

    #[error("metadata key '{key}' at offset {offset}: unknown value type id {id}")]
    UnknownValueType { key: String, offset: u64, id: u32 },

    #[error("metadata key '{key}' at offset {offset}: bool byte is {byte}, expected 0 or 1")]
    InvalidBool { key: String, offset: u64, byte: u8 },

    #[error("metadata key '{key}' at offset {offset}: arrays nested deeper than {max}")]
    NestingTooDeep { key: String, offset: u64, max: usize },

    #[error("metadata key '{key}' at offset {offset} appears twice")]
    DuplicateKey { key: String, offset: u64 },

    #[error("metadata key at offset {offset} is empty")]
    EmptyKey { offset: u64 },

    #[error("general.alignment: {reason}")]
    BadAlignment { reason: String },

    #[error("tensor '{tensor}' at offset {offset}: {n_dims} dimensions, at most {max} allowed")]
    TooManyDims { tensor: String, offset: u64, n_dims: u32, max: usize },

    #[error("tensor '{tensor}' at offset {offset}: dimensions {dims:?} overflow")]
    DimsOverflow { tensor: String, offset: u64, dims: Vec<u64> },

    #[error("tensor '{tensor}' at offset {offset}: unknown tensor type id {id}")]
    UnknownTensorType { tensor: String, offset: u64, id: u32 },

    #[error(
        "tensor '{tensor}' at offset {offset}: row length {ne0} is not a multiple of the {ty} block size {block_size}"
    )]
    PartialBlock { tensor: String, offset: u64, ty: GgmlType, ne0: u64, block_size: u64 },

    #[error("tensor '{tensor}' at offset {offset}: name is {len} bytes, at most {max} allowed")]
    TensorNameTooLong { tensor: String, offset: u64, len: usize, max: usize },

    #[error("tensor '{tensor}' at offset {offset}: name appears twice")]
    DuplicateTensor { tensor: String, offset: u64 },

    #[error("tensor '{tensor}': data offset {data_offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor { tensor: String, data_offset: u64, alignment: u64 },

    #[error("tensor '{tensor}': data bytes {start}..{end} lie outside the file ({file_len} bytes)")]
    TensorOutOfBounds { tensor: String, start: u64, end: u64, file_len: u64 },

    #[error("tensors '{first}' and '{second}' overlap in the data section")]
    TensorOverlap { first: String, second: String },
}

/// Errors of the writer.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },

    #[error("tensor '{0}' is added twice")]
    DuplicateTensor(String),

    #[error("tensor name '{name}' is {len} bytes, at most {max} allowed")]
    TensorNameTooLong { name: String, len: usize, max: usize },

    #[error("tensor '{name}': shape {dims:?} is not valid for type {ty} ({reason})")]
    BadShape { name: String, dims: Vec<u64>, ty: GgmlType, reason: &'static str },

    #[error("metadata key must not be empty")]
    EmptyKey,

    #[error("metadata key '{key}' must be {expected} (found {found})")]
    WrongKeyType { key: String, expected: ValueType, found: ValueType },

    #[error("general.alignment must be a non-zero power of two, got {0}")]
    BadAlignment(u64),

    #[error("tensor '{name}': {written} bytes of data written, expected {expected}")]
    WrongTensorSize { name: String, expected: u64, written: u64 },

    #[error("all {count} tensors are written; there is no tensor to write data for")]
    TooManyTensors { count: usize },

    #[error("tensor '{name}' (and {missing} more) have no data yet")]
    MissingTensorData { name: String, missing: usize },

    #[error("arrays nested deeper than {max}")]
    NestingTooDeep { max: usize },
}

/// Errors of opening a GGUF file from disk.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },

    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },

    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: ParseError },

    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Errors of the typed metadata getters.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum MetadataError {
    #[error("metadata key '{key}' is missing")]
    Missing { key: String },

    #[error("metadata key '{key}' has type {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: String },
}
