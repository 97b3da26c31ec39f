//! Zero-copy views of GGUF tensor bytes as block slices, checked: a wrong length or a
//! misaligned start is a typed error, never undefined behaviour (bytemuck does the cast).

use std::mem::{align_of, size_of};

use crate::{BlockFormat, QuantError};

fn check<F: BlockFormat>(addr: usize, len: usize) -> Result<(), QuantError> {
    let block_bytes = size_of::<F::Block>();
    if !len.is_multiple_of(block_bytes) {
        return Err(QuantError::BytesNotWholeBlocks { ty: F::TYPE, len, block_bytes });
    }
    let align = align_of::<F::Block>();
    if !addr.is_multiple_of(align) {
        return Err(QuantError::Misaligned { ty: F::TYPE, addr, align });
    }
    Ok(())
}

/// Views `bytes` (a GGUF tensor's data, say) as blocks of `F`, without copying.
///
/// GGUF aligns tensor data to 32 bytes by default, which satisfies every block here (the
/// strictest, `BlockQ8_K`, needs 4).
pub fn cast_blocks<F: BlockFormat>(bytes: &[u8]) -> Result<&[F::Block], QuantError> {
    check::<F>(bytes.as_ptr() as usize, bytes.len())?;
    // The checks above are exactly bytemuck's failure conditions, so this cannot fail.
    bytemuck::try_cast_slice(bytes).map_err(|_| QuantError::Misaligned {
        ty: F::TYPE,
        addr: bytes.as_ptr() as usize,
        align: align_of::<F::Block>(),
    })
}

/// Mutable version of [`cast_blocks`].
pub fn cast_blocks_mut<F: BlockFormat>(bytes: &mut [u8]) -> Result<&mut [F::Block], QuantError> {
    let addr = bytes.as_ptr() as usize;
    check::<F>(addr, bytes.len())?;
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| QuantError::Misaligned {
        ty: F::TYPE,
        addr,
        align: align_of::<F::Block>(),
    })
}

/// The bytes of a block slice, as they are stored in a GGUF file (little-endian hosts).
pub fn blocks_as_bytes<F: BlockFormat>(blocks: &[F::Block]) -> &[u8] {
    bytemuck::cast_slice(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Q4_0, Q8_K};

    #[test]
    fn wrong_length_is_an_error() {
        let bytes = [0u8; 19];
        assert_eq!(
            cast_blocks::<Q4_0>(&bytes).unwrap_err(),
            QuantError::BytesNotWholeBlocks { ty: gguf_file::GgmlType::Q4_0, len: 19, block_bytes: 18 }
        );
    }

    #[test]
    fn misaligned_start_is_an_error_and_aligned_views_round_trip() {
        // A u32 buffer is 4-aligned, so offset 2 is misaligned for Q8_K (align 4) but fine for
        // Q4_0 (align 2).
        let mut words = vec![0u32; 2 * 292 / 4 + 1];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let err = cast_blocks::<Q8_K>(&bytes[2..2 + 292]).unwrap_err();
        assert!(matches!(err, QuantError::Misaligned { align: 4, .. }), "{err}");
        assert_eq!(cast_blocks::<Q4_0>(&bytes[2..2 + 36]).unwrap().len(), 2);
        assert!(matches!(cast_blocks::<Q4_0>(&bytes[1..19]), Err(QuantError::Misaligned { align: 2, .. })));

        let blocks = cast_blocks_mut::<Q8_K>(&mut bytes[..292]).unwrap();
        blocks[0].d = 1.5;
        blocks[0].qs[0] = -7;
        let view = cast_blocks::<Q8_K>(&bytes[..292]).unwrap();
        assert_eq!(view[0].d, 1.5);
        assert_eq!(blocks_as_bytes::<Q8_K>(view), &bytes[..292]);
        assert_eq!(&bytes[..4], &1.5f32.to_le_bytes());
        assert_eq!(bytes[4], (-7i8) as u8);
    }
}
