//! The streaming writer, mirroring the reader section by section: header, metadata, tensor
//! infos, padding, then each tensor's data in order, each padded to the alignment.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::atomic::AtomicFile;
use crate::error::WriteError;
use crate::metadata::Metadata;
use crate::types::GgmlType;
use crate::value::{Array, Value, ValueType};
use crate::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_TENSOR_NAME_LEN};

/// A tensor to be written: name, type and shape (`dims[0]` is the contiguous dimension).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub ty: GgmlType,
    pub dims: Vec<u64>,
    /// Bytes of data.
    pub n_bytes: u64,
    /// Offset within the data section.
    pub offset: u64,
}

/// Collects metadata and tensor infos; [`GgufBuilder::write_to`] or [`GgufBuilder::create`]
/// then stream the file.
#[derive(Clone, Debug)]
pub struct GgufBuilder {
    metadata: Metadata,
    tensors: Vec<TensorSpec>,
    alignment: u64,
}

impl Default for GgufBuilder {
    fn default() -> Self {
        GgufBuilder { metadata: Metadata::new(), tensors: Vec::new(), alignment: DEFAULT_ALIGNMENT }
    }
}

fn array_depth(a: &Array) -> usize {
    match a {
        Array::Array(inner) => 1 + inner.iter().map(array_depth).max().unwrap_or(0),
        _ => 1,
    }
}

impl GgufBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a metadata key (replacing any earlier value, keeping its position).
    /// `general.alignment` must be a u32 power of two and sets the data alignment.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<Value>) -> Result<&mut Self, WriteError> {
        let key = key.into();
        let value = value.into();
        if key.is_empty() {
            return Err(WriteError::EmptyKey);
        }
        if let Value::Array(a) = &value {
            if array_depth(a) > MAX_ARRAY_DEPTH {
                return Err(WriteError::NestingTooDeep { max: MAX_ARRAY_DEPTH });
            }
        }
        if key == "general.alignment" {
            match value {
                Value::U32(a) if a != 0 && a.is_power_of_two() => {
                    self.alignment = u64::from(a);
                    self.relayout();
                }
                Value::U32(a) => return Err(WriteError::BadAlignment(u64::from(a))),
                ref v => return Err(WriteError::WrongKeyType { key, expected: ValueType::U32, found: v.value_type() }),
            }
        }
        self.metadata.insert(key, value);
        Ok(self)
    }

    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    /// Adds a tensor info; data must later be written in the order tensors were added.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ty: GgmlType,
        dims: &[u64],
    ) -> Result<&TensorSpec, WriteError> {
        let name = name.into();
        if name.len() > MAX_TENSOR_NAME_LEN {
            return Err(WriteError::TensorNameTooLong { len: name.len(), name, max: MAX_TENSOR_NAME_LEN });
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(WriteError::DuplicateTensor(name));
        }
        let bad = |reason| WriteError::BadShape { name: name.clone(), dims: dims.to_vec(), ty, reason };
        if dims.len() > MAX_DIMS {
            return Err(bad("more than 4 dimensions"));
        }
        let n = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| bad("element count overflows"))?;
        let ne0 = dims.first().copied().unwrap_or(1);
        if ne0 % ty.block_size() != 0 {
            return Err(bad("row length is not a multiple of the block size"));
        }
        let n_bytes = (n / ty.block_size()).checked_mul(ty.block_bytes()).ok_or_else(|| bad("byte size overflows"))?;
        self.tensors.push(TensorSpec { name, ty, dims: dims.to_vec(), n_bytes, offset: 0 });
        self.relayout();
        Ok(self.tensors.last().expect("just pushed"))
    }

    fn relayout(&mut self) {
        let mut offset = 0u64;
        for t in &mut self.tensors {
            t.offset = offset;
            offset += t.n_bytes.div_ceil(self.alignment) * self.alignment;
        }
    }

    /// Writes the header, metadata, tensor infos and padding to `out`, returning a writer that
    /// takes each tensor's data in order.
    pub fn write_to<W: Write>(self, mut out: W) -> io::Result<GgufWriter<W>> {
        // The header is small next to the data (tokenizer arrays are a few MB at most):
        // encode it whole, then write it in one go.
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(&GGUF_MAGIC);
        buf.extend_from_slice(&3u32.to_le_bytes());
        buf.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        buf.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in self.metadata.iter() {
            encode_string(&mut buf, key);
            buf.extend_from_slice(&value.value_type().id().to_le_bytes());
            encode_value(&mut buf, value);
        }
        for t in &self.tensors {
            encode_string(&mut buf, &t.name);
            buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                buf.extend_from_slice(&d.to_le_bytes());
            }
            buf.extend_from_slice(&t.ty.id().to_le_bytes());
            buf.extend_from_slice(&t.offset.to_le_bytes());
        }
        let len = buf.len() as u64;
        buf.resize((len.div_ceil(self.alignment) * self.alignment) as usize, 0);
        out.write_all(&buf)?;
        Ok(GgufWriter {
            out,
            tensors: self.tensors,
            alignment: self.alignment,
            next: 0,
            written: 0,
            label: PathBuf::from("<gguf output>"),
        })
    }

    /// Starts an atomic write to `path` (temporary file, renamed on [`GgufWriter::commit`]).
    pub fn create(self, path: impl AsRef<Path>) -> Result<GgufWriter<AtomicFile>, WriteError> {
        let path = path.as_ref();
        let io_err = |source| WriteError::Io { path: path.to_owned(), source };
        let file = AtomicFile::create(path).map_err(io_err)?;
        let mut writer = self.write_to(file).map_err(io_err)?;
        writer.label = path.to_owned();
        Ok(writer)
    }
}

fn encode_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn encode_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I8(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => buf.push(u8::from(*x)),
        Value::String(s) => encode_string(buf, s),
        Value::Array(a) => encode_array(buf, a),
    }
}

fn encode_array(buf: &mut Vec<u8>, a: &Array) {
    buf.extend_from_slice(&a.elem_type().id().to_le_bytes());
    buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => buf.extend_from_slice(v),
        Array::I8(v) => each!(v),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
        Array::Bool(v) => buf.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => v.iter().for_each(|s| encode_string(buf, s)),
        Array::Array(v) => v.iter().for_each(|inner| encode_array(buf, inner)),
    }
}

/// Streams tensor data, in the order the tensors were added, each padded to the alignment.
pub struct GgufWriter<W: Write> {
    out: W,
    tensors: Vec<TensorSpec>,
    alignment: u64,
    next: usize,
    written: u64,
    /// Names the output in I/O errors.
    label: PathBuf,
}

impl<W: Write> GgufWriter<W> {
    /// The tensor whose data is expected next, if any.
    pub fn next_tensor(&self) -> Option<&TensorSpec> {
        self.tensors.get(self.next)
    }

    /// Appends bytes to the current tensor's data; may be called repeatedly for one tensor.
    pub fn write_chunk(&mut self, data: &[u8]) -> Result<(), WriteError> {
        let count = self.tensors.len();
        let t = self.tensors.get(self.next).ok_or(WriteError::TooManyTensors { count })?;
        let after = self.written + data.len() as u64;
        if after > t.n_bytes {
            return Err(WriteError::WrongTensorSize { name: t.name.clone(), expected: t.n_bytes, written: after });
        }
        self.out.write_all(data).map_err(|source| self.io(source))?;
        self.written = after;
        Ok(())
    }

    /// Ends the current tensor (which must be complete) and writes its padding.
    pub fn end_tensor(&mut self) -> Result<(), WriteError> {
        let count = self.tensors.len();
        let t = self.tensors.get(self.next).ok_or(WriteError::TooManyTensors { count })?;
        if self.written != t.n_bytes {
            return Err(WriteError::WrongTensorSize {
                name: t.name.clone(),
                expected: t.n_bytes,
                written: self.written,
            });
        }
        let pad = t.n_bytes.div_ceil(self.alignment) * self.alignment - t.n_bytes;
        self.out.write_all(&vec![0u8; pad as usize]).map_err(|source| self.io(source))?;
        self.next += 1;
        self.written = 0;
        Ok(())
    }

    /// Writes one whole tensor's data.
    pub fn write_tensor(&mut self, data: &[u8]) -> Result<(), WriteError> {
        self.write_chunk(data)?;
        self.end_tensor()
    }

    fn io(&self, source: io::Error) -> WriteError {
        WriteError::Io { path: self.label.clone(), source }
    }

    /// Checks that every tensor has its data and flushes; returns the underlying writer.
    pub fn finish(mut self) -> Result<W, WriteError> {
        if let Some(t) = self.tensors.get(self.next) {
            return Err(WriteError::MissingTensorData {
                name: t.name.clone(),
                missing: self.tensors.len() - self.next - 1,
            });
        }
        self.out.flush().map_err(|source| self.io(source))?;
        Ok(self.out)
    }
}

impl GgufWriter<AtomicFile> {
    /// Finishes the file and renames it over the destination.
    pub fn commit(self) -> Result<(), WriteError> {
        let file = self.finish()?;
        let path = file.dest().to_owned();
        file.commit().map_err(|source| WriteError::Io { path, source })
    }
}
