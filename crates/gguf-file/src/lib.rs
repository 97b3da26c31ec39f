//! The GGUF container: a validating, zero-copy reader over a read-only memory map, typed
//! metadata, and an atomic streaming writer. It knows ggml type ids and block sizes, nothing
//! about models.
//!
//! ```no_run
//! let file = gguf_file::GgufFile::open("model.gguf")?;
//! let arch = file.metadata().get_str("general.architecture")?;
//! let wte = file.tensor("token_embd.weight").expect("tensor");
//! println!("{arch}: {} is {} {:?}, {} bytes", wte.name(), wte.ty(), wte.dims(), wte.data.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod atomic;
mod error;
mod file;
mod metadata;
mod reader;
mod types;
mod value;
mod writer;

pub use atomic::AtomicFile;
pub use error::{Error, MetadataError, ParseError, WriteError};
pub use file::{GgufFile, LoadMode, TensorView};
pub use metadata::Metadata;
pub use reader::{parse, Header};
pub use types::{GgmlType, TypeInfo, TYPE_TABLE};
pub use value::{Array, Value, ValueType};
pub use writer::{GgufBuilder, GgufWriter, TensorSpec};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Longest tensor name in bytes (`GGML_MAX_NAME` is 64 including the terminating NUL).
pub const MAX_TENSOR_NAME_LEN: usize = 63;
/// Longest string accepted anywhere in the header, whatever the file size.
pub const MAX_STRING_LEN: u64 = 1 << 30;
/// Deepest nesting of arrays of arrays.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// One tensor's entry in the header, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub ty: GgmlType,
    /// Shape, `dims[0]` contiguous (ggml's `ne` order).
    pub dims: Vec<u64>,
    /// Offset of the data within the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
    /// Where this info starts in the file (for error messages).
    pub info_offset: u64,
}
