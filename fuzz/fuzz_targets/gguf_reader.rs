//! The GGUF reader on arbitrary bytes: must return Ok or Err, never panic, and every tensor view
//! of an accepted file must lie inside the file with exactly its size.
#![no_main]

use gguf_file::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = GgufFile::from_bytes(data) {
        let mut total = 0u64;
        for t in file.tensors() {
            assert_eq!(t.data.len() as u64, t.info.n_bytes);
            total += t.info.n_bytes;
        }
        assert!(total <= data.len() as u64);
        for (k, v) in file.metadata().iter() {
            let _ = (k.len(), v.to_string().len());
        }
    }
});
