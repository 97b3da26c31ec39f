//! An opened GGUF file: the bytes (a read-only memory map or an aligned heap copy), the parsed
//! header, and zero-copy tensor views into the bytes.

use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, ParseError};
use crate::metadata::Metadata;
use crate::reader::{parse, Header};
use crate::TensorInfo;

/// How the file's bytes are brought into memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoadMode {
    /// Map the file read-only: pages are read on first touch and shared with the page cache.
    #[default]
    Mmap,
    /// Read the whole file into an anonymous, 64-byte aligned buffer.
    Read,
}

/// A heap buffer aligned to 64 bytes, so tensor data keeps the alignment the file promises.
struct AlignedBytes {
    words: Vec<Align64>,
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Align64([u8; 64]);

impl AlignedBytes {
    fn zeroed(len: usize) -> Self {
        AlignedBytes { words: vec![Align64([0; 64]); len.div_ceil(64)], len }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `words` is a live, initialised allocation of `words.len() * 64 >= len` bytes;
        // `Align64` is plain bytes with no padding, so viewing it as `u8` is valid, and the
        // mutable borrow of `self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: as in `as_mut_slice`, for a shared borrow.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

enum Bytes {
    Mapped(Mmap),
    Heap(AlignedBytes),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Heap(h) => h.as_slice(),
        }
    }
}

/// A validated GGUF file. Tensor data is never copied: [`GgufFile::tensor`] returns views.
pub struct GgufFile {
    bytes: Bytes,
    header: Header,
    path: Option<PathBuf>,
}

/// A zero-copy view of one tensor: its info and exactly its bytes.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub fn name(&self) -> &'a str {
        &self.info.name
    }
    pub fn ty(&self) -> crate::GgmlType {
        self.info.ty
    }
    pub fn dims(&self) -> &'a [u64] {
        &self.info.dims
    }
}

impl GgufFile {
    /// Opens and validates `path`, memory-mapping it.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, Error> {
        Self::open_with(path, LoadMode::Mmap)
    }

    /// Opens and validates `path` with the given load mode.
    pub fn open_with(path: impl AsRef<Path>, mode: LoadMode) -> Result<GgufFile, Error> {
        let path = path.as_ref();
        let io_err = |source| Error::Io { path: path.to_owned(), source };
        // Check the kind before opening: opening a FIFO for reading would block.
        let meta = std::fs::metadata(path).map_err(io_err)?;
        if !meta.is_file() {
            return Err(Error::NotAFile { path: path.to_owned() });
        }
        let mut file = File::open(path).map_err(io_err)?;
        let len = usize::try_from(meta.len()).map_err(|_| Error::NotAFile { path: path.to_owned() })?;
        let bytes = if mode == LoadMode::Read || len == 0 {
            let mut buf = AlignedBytes::zeroed(len);
            file.read_exact(buf.as_mut_slice()).map_err(io_err)?;
            Bytes::Heap(buf)
        } else {
            // SAFETY: the mapping is read-only and private to this process. Another process
            // truncating or rewriting the file while it is mapped is outside what we can
            // guard against (the same contract as every mmap-based loader, llama.cpp's too);
            // Quill's own writer never modifies a file in place, it renames a new one over it.
            let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
            Bytes::Mapped(map)
        };
        let header = parse(&bytes).map_err(|source| Error::Parse { path: path.to_owned(), source })?;
        Ok(GgufFile { bytes, header, path: Some(path.to_owned()) })
    }

    /// Parses a GGUF held in memory (copied into an aligned buffer).
    pub fn from_bytes(data: &[u8]) -> Result<GgufFile, ParseError> {
        let mut buf = AlignedBytes::zeroed(data.len());
        buf.as_mut_slice().copy_from_slice(data);
        let bytes = Bytes::Heap(buf);
        let header = parse(&bytes)?;
        Ok(GgufFile { bytes, header, path: None })
    }

    /// The path this file was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// True when the tensor data is a memory map of the file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(_))
    }

    pub fn version(&self) -> u32 {
        self.header.version
    }

    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Offset of the data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.header.data_offset
    }

    /// Size of the whole file in bytes.
    pub fn file_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Tensor infos in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// Views of every tensor, in file order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorView<'_>> {
        self.header.tensors.iter().map(|info| self.view(info))
    }

    /// The tensor named `name`, or `None`.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        self.header.tensors.iter().find(|t| t.name == name).map(|info| self.view(info))
    }

    fn view<'a>(&'a self, info: &'a TensorInfo) -> TensorView<'a> {
        // The parser checked that every tensor's range lies inside the file.
        let start = (self.header.data_offset + info.offset) as usize;
        TensorView { info, data: &self.bytes[start..start + info.n_bytes as usize] }
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}
