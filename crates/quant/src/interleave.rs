//! `Q4_0_8_8` (ggml's `block_q4_0x8`, type id 33): Q4_0 blocks of 8 rows stored interleaved,
//! so that a kernel reads the same block of 8 rows with a few wide loads and multiplies the
//! rows side by side. The values are Q4_0's, bit for bit: quantizing is Q4_0's reference
//! quantizer followed by [`interleave_q4_0x8`], and [`deinterleave_q4_0x8`] gives back the
//! Q4_0 bytes llama-quantize writes.
//!
//! Layout, per group of 8 rows (groups in row order) and per block column `b` of the group (in
//! order): 144 bytes = the 8 rows' F16 scales (row order), then 128 bytes of codes in sixteen
//! 8-byte chunks, chunk `i` holding bytes `8 * (i / 8)..8 * (i / 8) + 8` of row `i % 8`'s block
//! `b` XOR 0x88 (each nibble as a signed 4-bit value). A tensor of this type therefore has a
//! multiple of 8 rows, and its bytes are as many as Q4_0's.

use crate::{GgmlType, QuantError};

/// Rows per interleaved group.
pub const GROUP_ROWS: usize = 8;

const BLOCK: usize = 18;
/// Bytes of one block column of a group.
const GROUP_BLOCK: usize = GROUP_ROWS * BLOCK;

/// Checks that `len` bytes are whole groups of 8 rows of `n_per_row` elements and returns the
/// bytes of one row.
fn row_bytes_of(n_per_row: usize, len: usize) -> Result<usize, QuantError> {
    let ty = GgmlType::Q4_0_8_8;
    let rb =
        crate::row_bytes(ty, n_per_row).map_err(|_| QuantError::RowNotWholeBlocks { ty, n_per_row, block_size: 32 })?;
    if rb == 0 || !len.is_multiple_of(rb) {
        return Err(QuantError::BytesNotWholeBlocks { ty, len, block_bytes: rb.max(BLOCK) });
    }
    if !(len / rb).is_multiple_of(GROUP_ROWS) {
        return Err(QuantError::RowsNotGroups { ty, rows: len / rb, group: GROUP_ROWS });
    }
    Ok(rb)
}

/// Q4_0 rows (`src`, whole groups of 8 rows of `n_per_row` elements) as `Q4_0_8_8` into `dst`
/// (as long as `src`).
pub fn interleave_q4_0x8(src: &[u8], n_per_row: usize, dst: &mut [u8]) -> Result<(), QuantError> {
    by_groups(src, n_per_row, dst, interleave_group)
}

/// `Q4_0_8_8` bytes (`src`, whole groups of 8 rows of `n_per_row` elements) as the Q4_0 rows
/// they interleave, into `dst` (as long as `src`).
pub fn deinterleave_q4_0x8(src: &[u8], n_per_row: usize, dst: &mut [u8]) -> Result<(), QuantError> {
    by_groups(src, n_per_row, dst, deinterleave_group)
}

/// `group` over every group of 8 rows of `src` into `dst`, after checking both lengths.
fn by_groups(src: &[u8], n_per_row: usize, dst: &mut [u8], group: fn(&[u8], &mut [u8])) -> Result<(), QuantError> {
    let rb = row_bytes_of(n_per_row, src.len())?;
    check_dst(src.len(), dst.len())?;
    for (s, d) in src.chunks_exact(GROUP_ROWS * rb).zip(dst.chunks_exact_mut(GROUP_ROWS * rb)) {
        group(s, d);
    }
    Ok(())
}

fn check_dst(expected: usize, found: usize) -> Result<(), QuantError> {
    if expected != found {
        let n_elements = expected / BLOCK * 32;
        return Err(QuantError::DstBytes { ty: GgmlType::Q4_0_8_8, n_elements, expected, found });
    }
    Ok(())
}

/// The XOR that turns a chunk's 16 signed nibbles back into Q4_0's unsigned ones (and back).
const FLIP: u64 = 0x8888_8888_8888_8888;

/// 8 bytes at `at` as a little-endian u64.
fn chunk(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Block `b` of row `r` (< 8) of one group (`group`, whole block columns) as Q4_0 bytes into
/// `out`.
pub fn row_block_into(group: &[u8], r: usize, b: usize, out: &mut [u8; BLOCK]) {
    let col = &group[b * GROUP_BLOCK..][..GROUP_BLOCK];
    out[..2].copy_from_slice(&col[2 * r..2 * r + 2]);
    out[2..10].copy_from_slice(&(chunk(col, 16 + 8 * r) ^ FLIP).to_le_bytes());
    out[10..18].copy_from_slice(&(chunk(col, 16 + 8 * (8 + r)) ^ FLIP).to_le_bytes());
}

/// The Q4_0 bytes of block `b` of row `r` (< 8) of one group (`group`, whole block columns).
pub fn row_block(group: &[u8], r: usize, b: usize) -> [u8; BLOCK] {
    let mut blk = [0u8; BLOCK];
    row_block_into(group, r, b, &mut blk);
    blk
}

/// One group: 8 Q4_0 rows (`src`, `8 * nb * 18` bytes) interleaved into `dst` (as long).
///
/// # Panics
/// If the lengths differ or are not whole block columns.
pub fn interleave_group(src: &[u8], dst: &mut [u8]) {
    assert!(src.len() == dst.len() && src.len().is_multiple_of(GROUP_BLOCK), "whole block columns of a group");
    let rb = src.len() / GROUP_ROWS;
    for (b, col) in dst.chunks_exact_mut(GROUP_BLOCK).enumerate() {
        for r in 0..GROUP_ROWS {
            let blk = &src[r * rb + b * BLOCK..][..BLOCK];
            col[2 * r..2 * r + 2].copy_from_slice(&blk[..2]);
            col[16 + 8 * r..][..8].copy_from_slice(&(chunk(blk, 2) ^ FLIP).to_le_bytes());
            col[16 + 8 * (8 + r)..][..8].copy_from_slice(&(chunk(blk, 10) ^ FLIP).to_le_bytes());
        }
    }
}

/// One group: the 8 Q4_0 rows that `src` (one group, `8 * nb * 18` bytes) interleaves, into
/// `dst` (as long).
///
/// # Panics
/// If the lengths differ or are not whole block columns.
pub fn deinterleave_group(src: &[u8], dst: &mut [u8]) {
    assert!(src.len() == dst.len() && src.len().is_multiple_of(GROUP_BLOCK), "whole block columns of a group");
    let rb = src.len() / GROUP_ROWS;
    for b in 0..rb / BLOCK {
        for r in 0..GROUP_ROWS {
            let out: &mut [u8; BLOCK] = (&mut dst[r * rb + b * BLOCK..][..BLOCK]).try_into().expect("a block");
            row_block_into(src, r, b, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q4_0_rows(rows: usize, k: usize, seed: u32) -> Vec<u8> {
        let x: Vec<f32> =
            (0..rows * k).map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / 4e9 - 0.5).collect();
        let mut w = vec![0u8; rows * k / 32 * BLOCK];
        crate::quantize(GgmlType::Q4_0, &x, k, &mut w).unwrap();
        w
    }

    #[test]
    fn round_trip_and_layout() {
        let (rows, k) = (16, 96);
        let w = q4_0_rows(rows, k, 7);
        let mut i = vec![0u8; w.len()];
        interleave_q4_0x8(&w, k, &mut i).unwrap();
        // Group 1, block column 2: scale of row 3 at bytes 6..8, chunk 11 = row 3 bytes 8..16.
        let rb = k / 32 * BLOCK;
        let col = &i[(3 + 2) * GROUP_BLOCK..][..GROUP_BLOCK];
        let blk = &w[(8 + 3) * rb + 2 * BLOCK..][..BLOCK];
        assert_eq!(&col[6..8], &blk[..2]);
        let chunk: Vec<u8> = blk[10..18].iter().map(|q| q ^ 0x88).collect();
        assert_eq!(&col[16 + 8 * 11..16 + 8 * 12], &chunk[..]);
        let mut back = vec![0u8; w.len()];
        deinterleave_q4_0x8(&i, k, &mut back).unwrap();
        assert_eq!(back, w);
    }

    #[test]
    fn quantize_is_q4_0_interleaved_and_dequantizes_by_rows() {
        let (rows, k) = (24, 160);
        let x: Vec<f32> = (0..rows * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        let mut q4 = vec![0u8; rows * k / 32 * BLOCK];
        crate::quantize(GgmlType::Q4_0, &x, k, &mut q4).unwrap();
        let mut want = vec![0u8; q4.len()];
        interleave_q4_0x8(&q4, k, &mut want).unwrap();
        let mut got = vec![0u8; q4.len()];
        crate::quantize(GgmlType::Q4_0_8_8, &x, k, &mut got).unwrap();
        assert_eq!(got, want);
        let (mut a, mut b) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        crate::dequantize(GgmlType::Q4_0, &q4, &mut a).unwrap();
        crate::dequantize_rows(GgmlType::Q4_0_8_8, &got, k, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            crate::dequantize(GgmlType::Q4_0_8_8, &got, &mut b),
            Err(QuantError::Interleaved { ty: GgmlType::Q4_0_8_8 })
        );
        let err = crate::quantize(GgmlType::Q4_0_8_8, &x[..4 * k], k, &mut got[..4 * k / 32 * BLOCK]).unwrap_err();
        assert_eq!(err, QuantError::RowsNotGroups { ty: GgmlType::Q4_0_8_8, rows: 4, group: 8 });
        assert_eq!(crate::dot_type(GgmlType::Q4_0_8_8), Ok(GgmlType::Q8_0));
    }

    #[test]
    fn rejects_partial_groups_and_rows() {
        let w = q4_0_rows(12, 64, 1);
        let mut d = vec![0u8; w.len()];
        assert_eq!(
            interleave_q4_0x8(&w, 64, &mut d).unwrap_err(),
            QuantError::RowsNotGroups { ty: GgmlType::Q4_0_8_8, rows: 12, group: 8 }
        );
        assert!(matches!(interleave_q4_0x8(&w, 48, &mut d), Err(QuantError::RowNotWholeBlocks { .. })));
        assert!(matches!(deinterleave_q4_0x8(&w[..8 * 36], 64, &mut d), Err(QuantError::DstBytes { .. })));
    }
}
