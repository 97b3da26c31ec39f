//! Whole tensors by [`GgmlType`] at run time. One macro invocation lists the formats; it makes
//! both [`SUPPORTED_TYPES`] and the single `match` in [`visit_format`], through which every
//! by-type function goes, so adding a format is one line.

use std::mem::size_of;

use crate::float::{BF16, F16, F32};
use crate::interleave::GROUP_ROWS;
use crate::kquants::{Q4_K, Q5_K, Q6_K, Q8_K};
use crate::legacy::{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1};
use crate::{BlockFormat, GgmlType, QuantError};

/// Code generic over a block format, run for a format chosen at run time by [`visit_format`].
pub trait FormatVisitor {
    type Output;
    fn visit<F: BlockFormat>(self) -> Self::Output;
}

macro_rules! formats {
    ($($variant:ident => $format:ty),* $(,)?) => {
        /// Every type this crate quantizes, dequantizes and dots.
        pub const SUPPORTED_TYPES: &[GgmlType] = &[$(GgmlType::$variant),*];

        /// Runs `visitor` with the block format of `ty`.
        pub fn visit_format<V: FormatVisitor>(ty: GgmlType, visitor: V) -> Result<V::Output, QuantError> {
            match ty {
                $(GgmlType::$variant => Ok(visitor.visit::<$format>()),)*
                other => Err(QuantError::UnsupportedType { ty: other }),
            }
        }
    };
}

formats! {
    F32 => F32,
    F16 => F16,
    BF16 => BF16,
    Q4_0 => Q4_0,
    Q4_1 => Q4_1,
    Q5_0 => Q5_0,
    Q5_1 => Q5_1,
    Q8_0 => Q8_0,
    Q8_1 => Q8_1,
    Q4_K => Q4_K,
    Q5_K => Q5_K,
    Q6_K => Q6_K,
    Q8_K => Q8_K,
}

/// Bytes of `n` elements of `ty` (a row), from gguf-file's type table; an error if `n` is not
/// a whole number of blocks or `ty` is not supported here.
pub fn row_bytes(ty: GgmlType, n: usize) -> Result<usize, QuantError> {
    visit_format(blocks_of(ty), ())?;
    let block_size = ty.block_size() as usize;
    if !n.is_multiple_of(block_size) {
        return Err(QuantError::ElementsNotWholeBlocks { ty, n_elements: n, block_size });
    }
    (n / block_size).checked_mul(ty.block_bytes() as usize).ok_or(QuantError::Overflow { ty, n_elements: n })
}

/// The block format of `ty`'s bytes: Q4_0 for the interleaved `Q4_0_8_8`, else `ty`.
fn blocks_of(ty: GgmlType) -> GgmlType {
    if ty == GgmlType::Q4_0_8_8 {
        GgmlType::Q4_0
    } else {
        ty
    }
}

/// The activation type `ty`'s dot product takes (ggml-cpu `type_traits_cpu` `vec_dot_type`).
pub fn dot_type(ty: GgmlType) -> Result<GgmlType, QuantError> {
    let ty = blocks_of(ty);
    struct V;
    impl FormatVisitor for V {
        type Output = GgmlType;
        fn visit<F: BlockFormat>(self) -> GgmlType {
            <F::Dot as BlockFormat>::TYPE
        }
    }
    visit_format(ty, V)
}

impl FormatVisitor for () {
    type Output = ();
    fn visit<F: BlockFormat>(self) {}
}

/// Quantizes `src`, rows of `n_per_row` elements, into `dst` as `ty`, with ggml's reference
/// quantizer (the bytes llama-quantize writes without an importance matrix).
///
/// Each row must be a whole number of blocks (a 1600-wide row cannot be Q4_K) and `dst` exactly
/// `row_bytes(ty, n_per_row) * rows` long. `dst` need not be aligned. Pure: callers may
/// quantize disjoint row ranges in parallel (whole groups of [`GgmlType::row_group`] rows:
/// `Q4_0_8_8` is Q4_0 interleaved by 8 rows).
pub fn quantize(ty: GgmlType, src: &[f32], n_per_row: usize, dst: &mut [u8]) -> Result<(), QuantError> {
    struct V<'a> {
        src: &'a [f32],
        dst: &'a mut [u8],
    }
    impl FormatVisitor for V<'_> {
        type Output = ();
        fn visit<F: BlockFormat>(self) {
            quantize_as::<F>(self.src, self.dst);
        }
    }
    let ty_bytes = row_bytes(ty, n_per_row).map_err(|e| match e {
        QuantError::ElementsNotWholeBlocks { ty, n_elements, block_size } => {
            QuantError::RowNotWholeBlocks { ty, n_per_row: n_elements, block_size }
        }
        other => other,
    })?;
    if n_per_row == 0 || !src.len().is_multiple_of(n_per_row) {
        return Err(QuantError::NotWholeRows { ty, n_elements: src.len(), n_per_row });
    }
    let expected =
        (src.len() / n_per_row).checked_mul(ty_bytes).ok_or(QuantError::Overflow { ty, n_elements: src.len() })?;
    if dst.len() != expected {
        return Err(QuantError::DstBytes { ty, n_elements: src.len(), expected, found: dst.len() });
    }
    if ty == GgmlType::Q4_0_8_8 {
        let rows = src.len() / n_per_row;
        if !rows.is_multiple_of(GROUP_ROWS) {
            return Err(QuantError::RowsNotGroups { ty, rows, group: GROUP_ROWS });
        }
        // Q4_0 a group at a time, interleaved from a one-group buffer.
        let mut group = vec![0u8; GROUP_ROWS * ty_bytes];
        for (x, out) in src.chunks_exact(GROUP_ROWS * n_per_row).zip(dst.chunks_exact_mut(group.len())) {
            visit_format(GgmlType::Q4_0, V { src: x, dst: &mut group })?;
            crate::interleave::interleave_group(&group, out);
        }
        return Ok(());
    }
    visit_format(ty, V { src, dst })
}

/// Dequantizes rows of `n_per_row` elements of any supported type, the interleaved `Q4_0_8_8`
/// included (whose rows come in groups of 8), into `dst` (exactly the elements of `src`).
pub fn dequantize_rows(ty: GgmlType, src: &[u8], n_per_row: usize, dst: &mut [f32]) -> Result<(), QuantError> {
    if ty != GgmlType::Q4_0_8_8 {
        return dequantize(ty, src, dst);
    }
    let mut q4 = vec![0u8; src.len()];
    crate::interleave::deinterleave_q4_0x8(src, n_per_row, &mut q4)?;
    dequantize(GgmlType::Q4_0, &q4, dst).map_err(|e| match e {
        QuantError::DstElements { n_blocks, expected, found, .. } => {
            QuantError::DstElements { ty, n_blocks, expected, found }
        }
        other => other,
    })
}

/// Quantizes whole blocks of `src` into `dst` (lengths already checked), through a small
/// aligned buffer when `dst` is not aligned for the block type.
fn quantize_as<F: BlockFormat>(src: &[f32], dst: &mut [u8]) {
    if let Ok(blocks) = bytemuck::try_cast_slice_mut::<u8, F::Block>(dst) {
        F::quantize_row(src, blocks);
        return;
    }
    const CHUNK: usize = 16;
    let mut buf = [<F::Block as bytemuck::Zeroable>::zeroed(); CHUNK];
    let block_bytes = size_of::<F::Block>();
    for (x, out) in src.chunks(CHUNK * F::BLOCK_SIZE).zip(dst.chunks_mut(CHUNK * block_bytes)) {
        let n = x.len() / F::BLOCK_SIZE;
        F::quantize_row(x, &mut buf[..n]);
        out.copy_from_slice(bytemuck::cast_slice(&buf[..n]));
    }
}

/// Dequantizes `src` (whole blocks of `ty`) into `dst`, which must hold exactly the number of
/// elements those blocks encode. `src` need not be aligned.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    if ty == GgmlType::Q4_0_8_8 {
        return Err(QuantError::Interleaved { ty });
    }
    struct V<'a> {
        src: &'a [u8],
        dst: &'a mut [f32],
    }
    impl FormatVisitor for V<'_> {
        type Output = Result<(), QuantError>;
        fn visit<F: BlockFormat>(self) -> Self::Output {
            let block_bytes = size_of::<F::Block>();
            if !self.src.len().is_multiple_of(block_bytes) {
                return Err(QuantError::BytesNotWholeBlocks { ty: F::TYPE, len: self.src.len(), block_bytes });
            }
            let n_blocks = self.src.len() / block_bytes;
            let expected = n_blocks * F::BLOCK_SIZE;
            if self.dst.len() != expected {
                return Err(QuantError::DstElements { ty: F::TYPE, n_blocks, expected, found: self.dst.len() });
            }
            if let Ok(blocks) = bytemuck::try_cast_slice::<u8, F::Block>(self.src) {
                F::dequantize_row(blocks, self.dst);
            } else {
                for (b, out) in self.src.chunks_exact(block_bytes).zip(self.dst.chunks_exact_mut(F::BLOCK_SIZE)) {
                    let block: F::Block = bytemuck::pod_read_unaligned(b);
                    F::dequantize_row(std::slice::from_ref(&block), out);
                }
            }
            Ok(())
        }
    }
    visit_format(ty, V { src, dst })?
}

/// The reference dot product of a row `w` of `ty` with a row `x` already quantized to
/// `dot_type(ty)` (both as bytes, both whole blocks, the same number of elements).
pub fn vec_dot_ref(ty: GgmlType, w: &[u8], x: &[u8]) -> Result<f32, QuantError> {
    if ty == GgmlType::Q4_0_8_8 {
        return Err(QuantError::Interleaved { ty });
    }
    struct V<'a> {
        w: &'a [u8],
        x: &'a [u8],
    }
    impl FormatVisitor for V<'_> {
        type Output = Result<f32, QuantError>;
        fn visit<F: BlockFormat>(self) -> Self::Output {
            let w = read_blocks::<F>(self.w)?;
            let x = read_blocks::<F::Dot>(self.x)?;
            let (w_elements, x_elements) = (w.len() * F::BLOCK_SIZE, x.len() * <F::Dot as BlockFormat>::BLOCK_SIZE);
            if w_elements != x_elements {
                return Err(QuantError::DotLength {
                    ty: F::TYPE,
                    dot_ty: <F::Dot as BlockFormat>::TYPE,
                    w_elements,
                    x_elements,
                });
            }
            Ok(F::vec_dot_ref(&w, &x))
        }
    }
    visit_format(ty, V { w, x })?
}

/// Blocks of `F` from bytes: borrowed when aligned, copied otherwise.
fn read_blocks<F: BlockFormat>(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [F::Block]>, QuantError> {
    let block_bytes = size_of::<F::Block>();
    if !bytes.len().is_multiple_of(block_bytes) {
        return Err(QuantError::BytesNotWholeBlocks { ty: F::TYPE, len: bytes.len(), block_bytes });
    }
    Ok(match bytemuck::try_cast_slice::<u8, F::Block>(bytes) {
        Ok(blocks) => std::borrow::Cow::Borrowed(blocks),
        Err(_) => std::borrow::Cow::Owned(bytes.chunks_exact(block_bytes).map(bytemuck::pod_read_unaligned).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::align_of;

    /// Every format agrees with gguf-file's type table (block size and bytes), and its dot type
    /// is the one ggml-cpu's type_traits_cpu names.
    #[test]
    fn formats_agree_with_the_type_table() {
        struct Check;
        impl FormatVisitor for Check {
            type Output = (GgmlType, usize, usize, usize, GgmlType);
            fn visit<F: BlockFormat>(self) -> Self::Output {
                (F::TYPE, F::BLOCK_SIZE, size_of::<F::Block>(), align_of::<F::Block>(), <F::Dot as BlockFormat>::TYPE)
            }
        }
        use GgmlType::*;
        let dots = [
            (F32, F32),
            (F16, F16),
            (BF16, BF16),
            (Q4_0, Q8_0),
            (Q4_1, Q8_1),
            (Q5_0, Q8_0),
            (Q5_1, Q8_1),
            (Q8_0, Q8_0),
            (Q8_1, Q8_1),
            (Q4_K, Q8_K),
            (Q5_K, Q8_K),
            (Q6_K, Q8_K),
            (Q8_K, Q8_K),
        ];
        assert_eq!(SUPPORTED_TYPES.len(), dots.len());
        for (ty, dot) in dots {
            let (t, bs, bytes, align, d) = visit_format(ty, Check).unwrap();
            assert_eq!(t, ty);
            assert_eq!(bs as u64, ty.block_size(), "{ty}");
            assert_eq!(bytes as u64, ty.block_bytes(), "{ty}");
            assert!(align <= 4, "{ty}: GGUF's 32-byte alignment must suffice");
            assert_eq!(d, dot, "{ty}");
            assert_eq!(dot_type(ty).unwrap(), dot);
        }
        assert_eq!(visit_format(Q2_K, Check).unwrap_err(), QuantError::UnsupportedType { ty: Q2_K });
    }

    #[test]
    fn row_bytes_and_errors() {
        assert_eq!(row_bytes(GgmlType::Q4_0, 768).unwrap(), 24 * 18);
        assert_eq!(row_bytes(GgmlType::Q6_K, 768).unwrap(), 3 * 210);
        assert_eq!(row_bytes(GgmlType::F16, 7).unwrap(), 14);
        assert_eq!(
            row_bytes(GgmlType::Q4_K, 1600).unwrap_err(),
            QuantError::ElementsNotWholeBlocks { ty: GgmlType::Q4_K, n_elements: 1600, block_size: 256 }
        );
        let src = vec![0.5f32; 1600 * 4];
        let mut dst = vec![0u8; 6400 / 256 * 144];
        // 6400 elements are whole Q4_K blocks, but 1600-wide rows are not.
        assert_eq!(
            quantize(GgmlType::Q4_K, &src, 1600, &mut dst).unwrap_err(),
            QuantError::RowNotWholeBlocks { ty: GgmlType::Q4_K, n_per_row: 1600, block_size: 256 }
        );
        assert_eq!(
            quantize(GgmlType::Q8_0, &src[..100], 64, &mut dst).unwrap_err(),
            QuantError::NotWholeRows { ty: GgmlType::Q8_0, n_elements: 100, n_per_row: 64 }
        );
        assert_eq!(
            quantize(GgmlType::Q8_0, &src[..64], 64, &mut dst).unwrap_err(),
            QuantError::DstBytes { ty: GgmlType::Q8_0, n_elements: 64, expected: 68, found: dst.len() }
        );
        let mut out = vec![0.0f32; 31];
        assert_eq!(
            dequantize(GgmlType::Q8_0, &[0u8; 34], &mut out).unwrap_err(),
            QuantError::DstElements { ty: GgmlType::Q8_0, n_blocks: 1, expected: 32, found: 31 }
        );
        assert_eq!(
            dequantize(GgmlType::Q8_0, &[0u8; 35], &mut out).unwrap_err(),
            QuantError::BytesNotWholeBlocks { ty: GgmlType::Q8_0, len: 35, block_bytes: 34 }
        );
        assert!(matches!(
            vec_dot_ref(GgmlType::Q4_0, &[0u8; 36], &[0u8; 34]),
            Err(QuantError::DotLength { w_elements: 64, x_elements: 32, .. })
        ));
        assert!(matches!(quantize(GgmlType::IQ2_XS, &src, 256, &mut dst), Err(QuantError::UnsupportedType { .. })));
    }

    /// Unaligned byte buffers give the same bytes and values as aligned ones.
    #[test]
    fn by_type_functions_accept_unaligned_buffers() {
        let x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin() * (1.0 + (i % 7) as f32)).collect();
        for &ty in SUPPORTED_TYPES {
            let n = row_bytes(ty, 512).unwrap();
            let mut words = vec![0u32; n / 4 + 2];
            let storage: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
            quantize(ty, &x, 256, &mut storage[..n]).unwrap();
            let aligned = storage[..n].to_vec();
            quantize(ty, &x, 256, &mut storage[1..n + 1]).unwrap();
            assert_eq!(&storage[1..n + 1], &aligned[..], "{ty}");

            let mut a = vec![0.0f32; 512];
            let mut b = vec![0.0f32; 512];
            dequantize(ty, &aligned, &mut a).unwrap();
            dequantize(ty, &storage[1..n + 1], &mut b).unwrap();
            assert_eq!(a, b, "{ty}");

            let dot = dot_type(ty).unwrap();
            let xb = row_bytes(dot, 512).unwrap();
            let mut xq = vec![0u8; xb];
            quantize(dot, &x, 512, &mut xq).unwrap();
            let aligned_dot = vec_dot_ref(ty, &aligned, &xq).unwrap();
            let unaligned_dot = vec_dot_ref(ty, &storage[1..n + 1], &xq).unwrap();
            assert_eq!(aligned_dot.to_bits(), unaligned_dot.to_bits(), "{ty}");
            let exact: f32 = x.iter().map(|v| v * v).sum();
            assert!((aligned_dot - exact).abs() < exact * 0.05, "{ty}: {aligned_dot} vs {exact}");
        }
    }
}
