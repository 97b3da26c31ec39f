//! Hand-made corrupt files, each with the error it must give; plus every truncation and many
//! byte flips of valid files, none of which may panic.

use gguf_file::{Error, GgmlType, GgufBuilder, GgufFile, ParseError};

/// Little-endian byte assembler for hand-made headers.
#[derive(Default, Clone)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.bytes(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn u32(&mut self, x: u32) -> &mut Self {
        self.bytes(&x.to_le_bytes())
    }
    fn u64(&mut self, x: u64) -> &mut Self {
        self.bytes(&x.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// A key with a u32 value.
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    fn tensor_info(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad_to(&mut self, align: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    fn parse(&self) -> Result<GgufFile, ParseError> {
        GgufFile::from_bytes(&self.0)
    }
}

/// A corrupt file: its name, its bytes, and a check on the error it must give.
type Case = (&'static str, Raw, fn(&ParseError) -> bool);

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = Vec::new();
    v.push(("empty file", Raw::default(), |e| matches!(e, ParseError::BadMagic { .. })));
    let mut r = Raw::default();
    r.bytes(b"GGML").u32(3);
    v.push(("bad magic", r, |e| matches!(e, ParseError::BadMagic { .. })));
    v.push(("version 1", Raw::header(1, 0, 0), |e| matches!(e, ParseError::UnsupportedVersion { version: 1 })));
    v.push(("version 4", Raw::header(4, 0, 0), |e| matches!(e, ParseError::UnsupportedVersion { version: 4 })));
    let mut r = Raw::default();
    r.bytes(b"GGUF").bytes(&3u32.to_be_bytes()).bytes(&0u64.to_be_bytes()).bytes(&0u64.to_be_bytes());
    v.push(("big-endian", r, |e| matches!(e, ParseError::BigEndian { .. })));
    v.push((
        "tensor count larger than the file",
        Raw::header(3, 1 << 40, 0),
        |e| matches!(e, ParseError::CountTooLarge { what, .. } if what == "tensor count"),
    ));
    v.push((
        "metadata count larger than the file",
        Raw::header(3, 0, u64::MAX),
        |e| matches!(e, ParseError::CountTooLarge { what, .. } if what == "metadata count"),
    ));
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX - 3).bytes(b"key and some more bytes");
    v.push(("key length near u64::MAX", r, |e| matches!(e, ParseError::StringTooLong { .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).u64(1 << 20).bytes(b"short");
    v.push(("string value longer than the file", r, |e| matches!(e, ParseError::Truncated { .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(8).str("\u{0}").0.pop();
    r.bytes(&[0xff]);
    v.push(("string value not UTF-8", r, |e| matches!(e, ParseError::InvalidUtf8 { .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(13).u32(0);
    v.push(("unknown value type", r, |e| matches!(e, ParseError::UnknownValueType { id: 13, .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(7).bytes(&[2]);
    v.push(("bool byte 2", r, |e| matches!(e, ParseError::InvalidBool { byte: 2, .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9);
    for _ in 0..100 {
        r.u32(9).u64(1);
    }
    r.u32(0).u64(0);
    v.push(("arrays nested 100 deep", r, |e| matches!(e, ParseError::NestingTooDeep { .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(6).u64(u64::MAX / 2);
    v.push(("array count larger than the file", r, |e| matches!(e, ParseError::CountTooLarge { .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str("k").u32(9).u32(8).u64(1 << 58);
    v.push(("string array count overflowing when multiplied", r, |e| matches!(e, ParseError::CountTooLarge { .. })));
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("k", 1).kv_u32("k", 2);
    v.push(("duplicate key", r, |e| matches!(e, ParseError::DuplicateKey { .. })));
    let mut r = Raw::header(3, 0, 1);
    r.kv_u32("", 1);
    v.push(("empty key", r, |e| matches!(e, ParseError::EmptyKey { .. })));
    let mut r = Raw::header(3, 0, 1);
    r.kv_u32("general.alignment", 0);
    v.push(("alignment 0", r, |e| matches!(e, ParseError::BadAlignment { .. })));
    let mut r = Raw::header(3, 0, 1);
    r.kv_u32("general.alignment", 48);
    v.push(("alignment not a power of two", r, |e| matches!(e, ParseError::BadAlignment { .. })));
    let mut r = Raw::header(3, 0, 1);
    r.str("general.alignment").u32(10).u64(32);
    v.push(("alignment stored as u64", r, |e| matches!(e, ParseError::BadAlignment { .. })));
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info("t", &[1, 1, 1, 1, 1], 0, 0);
    v.push(("five dimensions", r, |e| matches!(e, ParseError::TooManyDims { n_dims: 5, .. })));
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info("t", &[1 << 32, 1 << 32], 0, 0);
    v.push(("dims whose product overflows", r, |e| matches!(e, ParseError::DimsOverflow { .. })));
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info("t", &[u64::MAX], 0, 0);
    v.push(("dim above i64::MAX", r, |e| matches!(e, ParseError::DimsOverflow { .. })));
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info("t", &[32], 5, 0);
    v.push(("retired tensor type id", r, |e| matches!(e, ParseError::UnknownTensorType { id: 5, .. })));
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info("t", &[32], 1000, 0);
    v.push(("unknown tensor type id", r, |e| matches!(e, ParseError::UnknownTensorType { id: 1000, .. })));
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info("t", &[33], 2, 0);
    v.push(("row not a whole number of blocks", r, |e| matches!(e, ParseError::PartialBlock { .. })));
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info(&"n".repeat(64), &[1], 0, 0);
    v.push(("tensor name too long", r, |e| matches!(e, ParseError::TensorNameTooLong { .. })));
    let mut r = Raw::header(3, 2, 0);
    r.tensor_info("t", &[4], 0, 0).tensor_info("t", &[4], 0, 32).pad_to(32).zeros(64);
    v.push(("duplicate tensor name", r, |e| matches!(e, ParseError::DuplicateTensor { .. })));
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info("t", &[4], 0, 4096).pad_to(32).zeros(16);
    v.push(("tensor data past the end", r, |e| matches!(e, ParseError::TensorOutOfBounds { .. })));
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info("t", &[4], 0, u64::MAX - 31).pad_to(32).zeros(16);
    v.push(("tensor offset overflowing", r, |e| matches!(e, ParseError::TensorOutOfBounds { .. })));
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info("t", &[4], 0, 8).pad_to(32).zeros(64);
    v.push(("misaligned tensor data", r, |e| matches!(e, ParseError::MisalignedTensor { .. })));
    let mut r = Raw::header(3, 2, 0);
    r.tensor_info("a", &[16], 0, 0).tensor_info("b", &[16], 0, 32).pad_to(32).zeros(96);
    v.push(("overlapping tensors", r, |e| matches!(e, ParseError::TensorOverlap { .. })));
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info("t", &[4], 0, 0);
    v.push(("truncated before the data section", r, |e| matches!(e, ParseError::TensorOutOfBounds { .. })));
    v
}

#[test]
fn hand_made_corrupt_files_give_their_errors() {
    for (name, raw, check) in cases() {
        match raw.parse() {
            Ok(_) => panic!("{name}: parsed without error"),
            Err(e) => assert!(check(&e), "{name}: wrong error: {e:?}"),
        }
    }
}

#[test]
fn errors_name_the_field_and_offset() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor_info("blk.0.attn_qkv.weight", &[4], 0, 4096).pad_to(32).zeros(16);
    let msg = r.parse().err().unwrap().to_string();
    assert!(msg.contains("blk.0.attn_qkv.weight") && msg.contains("4"), "{msg}");
    let mut r = Raw::header(3, 0, 1);
    r.str("tokenizer.ggml.tokens").u32(9).u32(8).u64(1 << 40);
    let msg = r.parse().err().unwrap().to_string();
    assert!(msg.contains("tokenizer.ggml.tokens") && msg.contains("offset 69"), "{msg}");
}

/// A valid file with several sections: metadata of many types, three tensors.
fn valid_file() -> Vec<u8> {
    let mut b = GgufBuilder::new();
    b.set("general.architecture", "gpt2").unwrap();
    b.set("gpt2.context_length", 1024u32).unwrap();
    b.set("f", 0.5f32).unwrap();
    b.set("flag", true).unwrap();
    b.set("tokens", gguf_file::Array::String(vec!["a".into(), "bc".into(), "\u{0120}x".into()])).unwrap();
    b.set(
        "nested",
        gguf_file::Array::Array(vec![gguf_file::Array::I32(vec![1, 2]), gguf_file::Array::Bool(vec![true])]),
    )
    .unwrap();
    b.add_tensor("a", GgmlType::F32, &[8]).unwrap();
    b.add_tensor("b", GgmlType::Q8_0, &[32, 2]).unwrap();
    b.add_tensor("c", GgmlType::F16, &[3, 5]).unwrap();
    let sizes: Vec<u64> = b.tensors().iter().map(|t| t.n_bytes).collect();
    let mut w = b.write_to(Vec::new()).unwrap();
    for n in sizes {
        w.write_tensor(&vec![0x3c; n as usize]).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = valid_file();
    assert!(GgufFile::from_bytes(&bytes).is_ok());
    // The file ends with tensor c's padding: cutting padding is fine, cutting data is not.
    let last = GgufFile::from_bytes(&bytes).unwrap();
    let c = last.tensor("c").unwrap();
    let end_of_data = (last.data_offset() + c.info.offset + c.info.n_bytes) as usize;
    for len in 0..end_of_data {
        assert!(GgufFile::from_bytes(&bytes[..len]).is_err(), "truncated to {len} bytes parsed");
    }
}

#[test]
fn byte_flips_never_panic() {
    let bytes = valid_file();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let header_len = GgufFile::from_bytes(&bytes).unwrap().data_offset() as usize;
    for _ in 0..20_000 {
        let mut b = bytes.clone();
        for _ in 0..(1 + next() % 4) {
            let i = (next() as usize) % header_len;
            b[i] = match next() % 4 {
                0 => 0xff,
                1 => 0,
                2 => b[i] ^ (1 << (next() % 8)),
                _ => next() as u8,
            };
        }
        let _ = GgufFile::from_bytes(&b);
    }
}

#[test]
fn open_refuses_directories_fifos_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    match GgufFile::open(dir.path()) {
        Err(Error::NotAFile { .. }) => {}
        other => panic!("directory: {:?}", other.err()),
    }
    match GgufFile::open(dir.path().join("missing.gguf")) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("missing.gguf")),
        other => panic!("missing: {:?}", other.err()),
    }
    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    match GgufFile::open(&empty) {
        Err(e @ Error::Parse { .. }) => assert!(e.to_string().contains("empty.gguf"), "{e}"),
        other => panic!("empty: {:?}", other.err()),
    }
    #[cfg(unix)]
    {
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        if status.is_ok_and(|s| s.success()) {
            match GgufFile::open(&fifo) {
                Err(Error::NotAFile { .. }) => {}
                other => panic!("fifo: {:?}", other.err()),
            }
        }
    }
}
