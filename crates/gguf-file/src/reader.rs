//! The bounded parser: reads a GGUF header from a byte slice, refusing any read, count or
//! allocation that the bytes left cannot back. Checks run in file order, each with its own
//! error naming the field and offset (the approach of ggml's `gguf.cpp`).

use std::collections::HashSet;

use crate::error::ParseError;
use crate::metadata::Metadata;
use crate::types::GgmlType;
use crate::value::{Array, Value, ValueType};
use crate::{
    TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_STRING_LEN, MAX_TENSOR_NAME_LEN,
};

/// Everything before the data section.
#[derive(Clone, Debug)]
pub struct Header {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    /// `general.alignment`, or 32.
    pub alignment: u64,
    /// Offset of the data section from the start of the file.
    pub data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn left(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], ParseError> {
        if n > self.left() {
            return Err(ParseError::Truncated {
                what: what(),
                offset: self.offset(),
                needed: n,
                available: self.left(),
            });
        }
        let n = n as usize; // n <= left, which fits in usize
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], ParseError> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Checks that `count` elements of at least `min_size` bytes each can fit in what is left.
    fn check_count(&self, count: u64, min_size: u64, what: &dyn Fn() -> String) -> Result<usize, ParseError> {
        let fits = count.checked_mul(min_size).is_some_and(|b| b <= self.left());
        if !fits {
            return Err(ParseError::CountTooLarge {
                what: what(),
                offset: self.offset(),
                count,
                available: self.left(),
            });
        }
        // count * min_size <= left <= usize::MAX and min_size >= 1.
        Ok(count as usize)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, ParseError> {
        let start = self.offset();
        let len = self.u64(what)?;
        if len > MAX_STRING_LEN {
            return Err(ParseError::StringTooLong { what: what(), offset: start, len, max: MAX_STRING_LEN });
        }
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(ParseError::InvalidUtf8 { what: what(), offset: start }),
        }
    }
}

fn read_vec<T, const N: usize>(
    c: &mut Cursor<'_>,
    n: usize,
    what: &dyn Fn() -> String,
    f: fn([u8; N]) -> T,
) -> Result<Vec<T>, ParseError> {
    // The count was checked against the bytes left, so this allocation is backed by the file.
    let bytes = c.take((n * N) as u64, what)?;
    Ok(bytes.chunks_exact(N).map(|ch| f(ch.try_into().expect("chunk of N bytes"))).collect())
}

fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<Array, ParseError> {
    let start = c.offset();
    if depth > MAX_ARRAY_DEPTH {
        return Err(ParseError::NestingTooDeep { key: key.to_owned(), offset: start, max: MAX_ARRAY_DEPTH });
    }
    let what = || format!("metadata key '{key}' array");
    let type_id = c.u32(&what)?;
    let elem = ValueType::from_id(type_id).ok_or_else(|| ParseError::UnknownValueType {
        key: key.to_owned(),
        offset: start,
        id: type_id,
    })?;
    let count = c.u64(&what)?;
    let n = c.check_count(count, elem.min_encoded_size(), &|| format!("metadata key '{key}' array of {elem}"))?;
    let elem_what = || format!("metadata key '{key}' array element");
    Ok(match elem {
        ValueType::U8 => Array::U8(read_vec(c, n, &elem_what, u8::from_le_bytes)?),
        ValueType::I8 => Array::I8(read_vec(c, n, &elem_what, i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(read_vec(c, n, &elem_what, u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(read_vec(c, n, &elem_what, i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(read_vec(c, n, &elem_what, u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(read_vec(c, n, &elem_what, i32::from_le_bytes)?),
        ValueType::F32 => Array::F32(read_vec(c, n, &elem_what, f32::from_le_bytes)?),
        ValueType::U64 => Array::U64(read_vec(c, n, &elem_what, u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(read_vec(c, n, &elem_what, i64::from_le_bytes)?),
        ValueType::F64 => Array::F64(read_vec(c, n, &elem_what, f64::from_le_bytes)?),
        ValueType::Bool => {
            let bytes = c.take(n as u64, &elem_what)?;
            let mut out = Vec::with_capacity(n);
            for (i, &b) in bytes.iter().enumerate() {
                out.push(parse_bool(b, key, start + 12 + i as u64)?);
            }
            Array::Bool(out)
        }
        ValueType::String => {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(c.string(&elem_what)?);
            }
            Array::String(out)
        }
        ValueType::Array => {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(read_array(c, key, depth + 1)?);
            }
            Array::Array(out)
        }
    })
}

fn parse_bool(b: u8, key: &str, offset: u64) -> Result<bool, ParseError> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        byte => Err(ParseError::InvalidBool { key: key.to_owned(), offset, byte }),
    }
}

fn read_value(c: &mut Cursor<'_>, key: &str, ty: ValueType) -> Result<Value, ParseError> {
    let start = c.offset();
    let what = || format!("metadata key '{key}' value");
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(c.array(&what)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array(&what)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(&what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(&what)?)),
        ValueType::U32 => Value::U32(c.u32(&what)?),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(&what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(&what)?)),
        ValueType::U64 => Value::U64(c.u64(&what)?),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(&what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(&what)?)),
        ValueType::Bool => Value::Bool(parse_bool(c.array::<1>(&what)?[0], key, start)?),
        ValueType::String => Value::String(c.string(&what)?),
        ValueType::Array => Value::Array(read_array(c, key, 1)?),
    })
}

/// Parses the header (everything but tensor data) of a GGUF file held in `buf`, and checks that
/// every tensor's data lies inside `buf`, aligned, without overlap.
pub fn parse(buf: &[u8]) -> Result<Header, ParseError> {
    let mut c = Cursor { buf, pos: 0 };
    let (version, n_tensors_raw, n_kv) = read_preamble(&mut c)?;
    let metadata = read_metadata(&mut c, n_kv)?;
    let alignment = alignment_of(&metadata)?;
    let n_tensors = c.check_count(n_tensors_raw, 24, &|| "tensor count".into())?;
    let mut tensors = Vec::with_capacity(n_tensors);
    let mut names = HashSet::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let t = read_tensor_info(&mut c, i)?;
        if !names.insert(t.name.clone()) {
            return Err(ParseError::DuplicateTensor { tensor: t.name, offset: t.info_offset });
        }
        tensors.push(t);
    }
    // Data section: starts at the next multiple of the alignment.
    let data_offset = c.offset().div_ceil(alignment).checked_mul(alignment).ok_or_else(|| {
        ParseError::BadAlignment { reason: format!("data section offset overflows with alignment {alignment}") }
    })?;
    check_data(&tensors, data_offset, alignment, buf.len() as u64)?;
    Ok(Header { version, metadata, tensors, alignment, data_offset })
}

/// Magic, version and the two counts; returns (version, raw tensor count, metadata count).
fn read_preamble(c: &mut Cursor<'_>) -> Result<(u32, u64, usize), ParseError> {
    let buf = c.buf;
    let magic =
        c.take(4, &|| "magic".into()).map_err(|_| ParseError::BadMagic { found: buf[..buf.len().min(4)].to_vec() })?;
    if magic != GGUF_MAGIC {
        return Err(ParseError::BadMagic { found: magic.to_vec() });
    }
    let version = c.u32(&|| "version".into())?;
    match version {
        2 | 3 => {}
        v if v.swap_bytes() <= 3 && v.swap_bytes() != 0 && v & 0xffff == 0 => {
            return Err(ParseError::BigEndian { version: v });
        }
        v => return Err(ParseError::UnsupportedVersion { version: v }),
    }
    let n_tensors_raw = c.u64(&|| "tensor count".into())?;
    let n_kv_raw = c.u64(&|| "metadata count".into())?;
    // Each key/value pair takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info
    // at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
    let n_kv = c.check_count(n_kv_raw, 13, &|| "metadata count".into())?;
    // Tensor infos come after the metadata, so this is a first, loose bound.
    c.check_count(n_tensors_raw, 24, &|| "tensor count".into())?;
    Ok((version, n_tensors_raw, n_kv))
}

fn read_metadata(c: &mut Cursor<'_>, n_kv: usize) -> Result<Metadata, ParseError> {
    let mut metadata = Metadata::with_capacity(n_kv);
    for i in 0..n_kv {
        let key_offset = c.offset();
        let key = c.string(&|| format!("metadata key #{i}"))?;
        if key.is_empty() {
            return Err(ParseError::EmptyKey { offset: key_offset });
        }
        let type_offset = c.offset();
        let type_id = c.u32(&|| format!("metadata key '{key}' type"))?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| ParseError::UnknownValueType {
            key: key.clone(),
            offset: type_offset,
            id: type_id,
        })?;
        let value = read_value(c, &key, ty)?;
        if metadata.get(&key).is_some() {
            return Err(ParseError::DuplicateKey { key, offset: key_offset });
        }
        metadata.insert(key, value);
    }
    Ok(metadata)
}

/// `general.alignment`: a non-zero power of two stored as u32, or the default.
fn alignment_of(metadata: &Metadata) -> Result<u64, ParseError> {
    match metadata.get("general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) if *a != 0 && a.is_power_of_two() => Ok(u64::from(*a)),
        Some(Value::U32(a)) => Err(ParseError::BadAlignment { reason: format!("{a} is not a non-zero power of two") }),
        Some(v) => Err(ParseError::BadAlignment { reason: format!("stored as {}, expected u32", v.value_type()) }),
    }
}

/// Tensor info `#i`: name, dimensions, type and data offset, with its sizes checked.
fn read_tensor_info(c: &mut Cursor<'_>, i: usize) -> Result<TensorInfo, ParseError> {
    let info_offset = c.offset();
    let name = c.string(&|| format!("tensor #{i} name"))?;
    if name.len() > MAX_TENSOR_NAME_LEN {
        return Err(ParseError::TensorNameTooLong {
            tensor: name.clone(),
            offset: info_offset,
            len: name.len(),
            max: MAX_TENSOR_NAME_LEN,
        });
    }
    let what = || format!("tensor '{name}' info");
    let n_dims = c.u32(&what)?;
    if n_dims as usize > MAX_DIMS {
        return Err(ParseError::TooManyDims { tensor: name, offset: info_offset, n_dims, max: MAX_DIMS });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(c.u64(&what)?);
    }
    let type_offset = c.offset();
    let type_id = c.u32(&what)?;
    let data_offset = c.u64(&what)?;
    let ty = GgmlType::from_id(type_id).ok_or_else(|| ParseError::UnknownTensorType {
        tensor: name.clone(),
        offset: type_offset,
        id: type_id,
    })?;
    // ggml stores element counts as int64: every dimension and their product must fit.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64 && dims.iter().all(|&d| d <= i64::MAX as u64));
    let Some(n_elements) = n_elements else {
        return Err(ParseError::DimsOverflow { tensor: name, offset: info_offset, dims });
    };
    let ne0 = dims.first().copied().unwrap_or(1);
    if ne0 % ty.block_size() != 0 {
        return Err(ParseError::PartialBlock {
            tensor: name,
            offset: info_offset,
            ty,
            ne0,
            block_size: ty.block_size(),
        });
    }
    // Whole blocks in every row, so the byte count is exact.
    let n_bytes = (n_elements / ty.block_size())
        .checked_mul(ty.block_bytes())
        .ok_or_else(|| ParseError::DimsOverflow { tensor: name.clone(), offset: info_offset, dims: dims.clone() })?;
    Ok(TensorInfo { name, ty, dims, offset: data_offset, n_elements, n_bytes, info_offset })
}

/// Every tensor's data: aligned, inside the file, and overlapping no other.
fn check_data(tensors: &[TensorInfo], data_offset: u64, alignment: u64, file_len: u64) -> Result<(), ParseError> {
    let mut ranges: Vec<(u64, u64, usize)> = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        if t.offset % alignment != 0 {
            return Err(ParseError::MisalignedTensor { tensor: t.name.clone(), data_offset: t.offset, alignment });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_len => {
                if t.n_bytes > 0 {
                    ranges.push((start, end, i));
                }
            }
            _ => {
                return Err(ParseError::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    start: data_offset.saturating_add(t.offset),
                    end: data_offset.saturating_add(t.offset).saturating_add(t.n_bytes),
                    file_len,
                })
            }
        }
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(ParseError::TensorOverlap {
                first: tensors[w[0].2].name.clone(),
                second: tensors[w[1].2].name.clone(),
            });
        }
    }
    Ok(())
}
