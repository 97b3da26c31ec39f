//! One table of what the SIMD kernels need to know about each quantized weight format: its
//! activation format, the order its GEMV kernel wants activation bytes in, the size of the
//! blocks that share one weight scale, the offset of its unsigned codes and whether it has a
//! per-block minimum.

use gguf_file::GgmlType;

/// What the kernels need to know about a quantized weight format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QuantSpec {
    pub ty: GgmlType,
    /// The activation format (ggml's `vec_dot_type`): Q8_0, Q8_1 or Q8_K.
    pub act: GgmlType,
    /// Elements sharing one weight scale (a block, or a K-quant sub-block).
    pub sblock: usize,
    /// The SIMD kernels decode weights to unsigned codes `c`, value `scale * (c - offset)`
    /// (Q8_0's signed quants are flipped to `q + 128`).
    pub offset: i32,
    /// Whether the format adds a per-block minimum (`scale * c + min`).
    pub has_min: bool,
    /// The largest unsigned code (15, 31, 63 or 255): how many byte products an i16 lane can
    /// sum without overflowing.
    pub max_code: u8,
}

macro_rules! specs {
    ($($ty:ident => $act:ident, $sblock:expr, $offset:expr, $min:expr, $max:expr;)*) => {
        /// The spec of a quantized weight format the SIMD kernels handle.
        pub(crate) fn quant_spec(ty: GgmlType) -> Option<QuantSpec> {
            match ty {
                $(GgmlType::$ty => Some(QuantSpec {
                    ty,
                    act: GgmlType::$act,
                    sblock: $sblock,
                    offset: $offset,
                    has_min: $min,
                    max_code: $max,
                }),)*
                _ => None,
            }
        }

        /// Every quantized weight format with SIMD kernels.
        #[cfg(test)]
        pub(crate) const SIMD_QUANT_TYPES: &[GgmlType] = &[$(GgmlType::$ty),*];
    };
}

specs! {
    Q4_0 => Q8_0, 32, 8, false, 15;
    // Q4_0 interleaved by 8 rows: the same blocks (`quill_quant::interleave`).
    Q4_0_8_8 => Q8_0, 32, 8, false, 15;
    Q4_1 => Q8_1, 32, 0, true, 15;
    Q5_0 => Q8_0, 32, 16, false, 31;
    Q5_1 => Q8_1, 32, 0, true, 31;
    Q8_0 => Q8_0, 32, 128, false, 255;
    Q4_K => Q8_K, 32, 0, true, 15;
    Q5_K => Q8_K, 32, 0, true, 31;
    Q6_K => Q8_K, 16, 32, false, 63;
}

/// The byte layout of a legacy 32-element block, taken from `quill_quant`'s `#[repr(C)]` struct
/// (itself asserted against ggml-common.h's sizes): the kernels read fields at these offsets.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) trait LegacyBlock {
    const BYTES: usize;
    /// The f16 scale.
    const D: usize = 0;
    /// The f16 minimum (formats with one).
    const M: Option<usize>;
    /// The fifth bits, a little-endian u32 (5-bit formats).
    const QH: Option<usize>;
    /// The codes: nibbles, or Q8_0's signed bytes.
    const QS: usize;
    /// Q8_0: signed 8-bit codes.
    const SIGNED: bool;
}

macro_rules! legacy_blocks {
    ($($B:ident { m: $m:tt, qh: $qh:tt, signed: $signed:expr })*) => {$(
        impl LegacyBlock for quill_quant::$B {
            const BYTES: usize = std::mem::size_of::<quill_quant::$B>();
            const M: Option<usize> = legacy_blocks!(@field $B $m);
            const QH: Option<usize> = legacy_blocks!(@field $B $qh);
            const QS: usize = std::mem::offset_of!(quill_quant::$B, qs);
            const SIGNED: bool = $signed;
        }
    )*};
    (@field $B:ident -) => { None };
    (@field $B:ident $f:ident) => { Some(std::mem::offset_of!(quill_quant::$B, $f)) };
}

legacy_blocks! {
    BlockQ4_0 { m: -, qh: -, signed: false }
    BlockQ4_1 { m: m, qh: -, signed: false }
    BlockQ5_0 { m: -, qh: qh, signed: false }
    BlockQ5_1 { m: m, qh: qh, signed: false }
    BlockQ8_0 { m: -, qh: -, signed: true }
}

/// The largest legacy block (Q8_0's 34 bytes).
pub(crate) const MAX_LEGACY_BYTES: usize = 34;
const _: () = assert!(<quill_quant::BlockQ8_0 as LegacyBlock>::BYTES == MAX_LEGACY_BYTES);

/// Byte layouts of the K-quant blocks, from `quill_quant`'s structs: Q4_K and Q5_K share
/// `d`, `dmin` and `scales` (asserted); Q5_K adds the fifth bits `qh`; Q6_K is `ql`, `qh`,
/// `scales`, `d`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) mod k_layout {
    use std::mem::{offset_of, size_of};

    use quill_quant::{BlockQ4_K, BlockQ5_K, BlockQ6_K};

    /// Bytes of a Q4_K (`five = false`) or Q5_K block.
    pub(crate) const fn k4_bytes(five: bool) -> usize {
        if five {
            size_of::<BlockQ5_K>()
        } else {
            size_of::<BlockQ4_K>()
        }
    }
    /// Offset of the 4-bit codes of a Q4_K or Q5_K block.
    pub(crate) const fn k4_qs(five: bool) -> usize {
        if five {
            offset_of!(BlockQ5_K, qs)
        } else {
            offset_of!(BlockQ4_K, qs)
        }
    }
    pub(crate) const K4_D: usize = offset_of!(BlockQ4_K, d);
    pub(crate) const K4_DMIN: usize = offset_of!(BlockQ4_K, dmin);
    pub(crate) const K4_SCALES: usize = offset_of!(BlockQ4_K, scales);
    const _: () = assert!(
        offset_of!(BlockQ5_K, d) == K4_D
            && offset_of!(BlockQ5_K, dmin) == K4_DMIN
            && offset_of!(BlockQ5_K, scales) == K4_SCALES
    );
    pub(crate) const Q5K_QH: usize = offset_of!(BlockQ5_K, qh);
    pub(crate) const Q6K_BYTES: usize = size_of::<BlockQ6_K>();
    pub(crate) const Q6K_QL: usize = offset_of!(BlockQ6_K, ql);
    pub(crate) const Q6K_QH: usize = offset_of!(BlockQ6_K, qh);
    pub(crate) const Q6K_SCALES: usize = offset_of!(BlockQ6_K, scales);
    pub(crate) const Q6K_D: usize = offset_of!(BlockQ6_K, d);
}

/// Float weight formats (their kernels take f32 activations).
pub(crate) fn is_float(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_agree_with_quant() {
        for &ty in SIMD_QUANT_TYPES {
            let s = quant_spec(ty).unwrap();
            assert_eq!(quill_quant::dot_type(ty).unwrap(), s.act, "{ty}");
            assert_eq!(ty.block_size() as usize % s.sblock, 0, "{ty}");
        }
        assert!(quant_spec(GgmlType::Q8_K).is_none());
    }

    /// The layouts the kernels read agree with ggml-common.h's block structs.
    #[test]
    fn block_layouts_are_ggml_s() {
        use quill_quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
        fn layout<B: LegacyBlock>() -> (usize, usize, Option<usize>, Option<usize>, usize, bool) {
            (B::BYTES, B::D, B::M, B::QH, B::QS, B::SIGNED)
        }
        assert_eq!(layout::<BlockQ4_0>(), (18, 0, None, None, 2, false));
        assert_eq!(layout::<BlockQ4_1>(), (20, 0, Some(2), None, 4, false));
        assert_eq!(layout::<BlockQ5_0>(), (22, 0, None, Some(2), 6, false));
        assert_eq!(layout::<BlockQ5_1>(), (24, 0, Some(2), Some(4), 8, false));
        assert_eq!(layout::<BlockQ8_0>(), (34, 0, None, None, 2, true));
        use k_layout::*;
        assert_eq!((k4_bytes(false), k4_bytes(true), k4_qs(false), k4_qs(true)), (144, 176, 16, 48));
        assert_eq!((K4_D, K4_DMIN, K4_SCALES, Q5K_QH), (0, 2, 4, 16));
        assert_eq!((Q6K_BYTES, Q6K_QL, Q6K_QH, Q6K_SCALES, Q6K_D), (210, 0, 128, 192, 208));
    }

    /// Every quantized format with kernels is in the table list.
    #[test]
    fn quant_specs_are_table_formats() {
        for ty in SIMD_QUANT_TYPES {
            assert!(crate::table::FORMATS.contains(ty), "{ty}");
        }
    }
}
