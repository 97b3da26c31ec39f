//! One table of what the SIMD kernels need to know about each quantized weight format: its
//! activation format, the order its GEMV kernel wants activation bytes in, the size of the
//! blocks that share one weight scale, the offset of its unsigned codes and whether it has a
//! per-block minimum.

use gguf_file::GgmlType;

/// How a GEMV kernel wants one group of activation bytes ordered (see [`crate::act`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lanes {
    /// 128 elements = four 32-element blocks in two 64-byte registers: register 0 holds the
    /// first 16 elements of each block, register 1 the last 16 (the nibble order of Q4_0,
    /// Q5_0, Q4_1, Q5_1 and of Q4_K's sub-blocks).
    P32,
    /// 64 elements in their natural order in one register (Q8_0, Q6_K).
    Nat,
}

impl Lanes {
    /// Elements per group.
    pub fn group(self) -> usize {
        match self {
            Lanes::P32 => 128,
            Lanes::Nat => 64,
        }
    }

    /// 64-byte registers of codes per group.
    pub fn regs(self) -> usize {
        match self {
            Lanes::P32 => 2,
            Lanes::Nat => 1,
        }
    }

    /// `(register, byte)` of element `e` (`< group()`) of a group; lane = byte / 4.
    #[inline]
    pub fn place(self, e: usize) -> (usize, usize) {
        match self {
            Lanes::P32 => {
                let (b, i) = (e / 32, e % 32);
                (i / 16, 16 * b + i % 16)
            }
            Lanes::Nat => (0, e),
        }
    }
}

/// What the kernels need to know about a quantized weight format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QuantSpec {
    pub ty: GgmlType,
    /// The activation format (ggml's `vec_dot_type`): Q8_0, Q8_1 or Q8_K.
    pub act: GgmlType,
    /// GEMV activation order.
    pub lanes: Lanes,
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
    ($($ty:ident => $act:ident, $lanes:ident, $sblock:expr, $offset:expr, $min:expr, $max:expr;)*) => {
        /// The spec of a quantized weight format the SIMD kernels handle.
        pub(crate) fn quant_spec(ty: GgmlType) -> Option<QuantSpec> {
            match ty {
                $(GgmlType::$ty => Some(QuantSpec {
                    ty,
                    act: GgmlType::$act,
                    lanes: Lanes::$lanes,
                    sblock: $sblock,
                    offset: $offset,
                    has_min: $min,
                    max_code: $max,
                }),)*
                _ => None,
            }
        }

        /// Every quantized weight format with SIMD kernels.
        pub(crate) const SIMD_QUANT_TYPES: &[GgmlType] = &[$(GgmlType::$ty),*];
    };
}

specs! {
    Q4_0 => Q8_0, P32, 32, 8, false, 15;
    Q4_1 => Q8_1, P32, 32, 0, true, 15;
    Q5_0 => Q8_0, P32, 32, 16, false, 31;
    Q5_1 => Q8_1, P32, 32, 0, true, 31;
    Q8_0 => Q8_0, Nat, 32, 128, false, 255;
    Q4_K => Q8_K, P32, 32, 0, true, 15;
    Q5_K => Q8_K, P32, 32, 0, true, 31;
    Q6_K => Q8_K, Nat, 16, 32, false, 63;
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
            assert_eq!(s.lanes.group() % 32, 0);
        }
        assert!(quant_spec(GgmlType::Q8_K).is_none());
    }

    #[test]
    fn p32_places_halves_of_blocks_in_two_registers() {
        assert_eq!(Lanes::P32.place(0), (0, 0));
        assert_eq!(Lanes::P32.place(15), (0, 15));
        assert_eq!(Lanes::P32.place(16), (1, 0));
        assert_eq!(Lanes::P32.place(32 + 17), (1, 17));
        assert_eq!(Lanes::P32.place(127), (1, 63));
        let mut seen = [[false; 64]; 2];
        for e in 0..128 {
            let (r, b) = Lanes::P32.place(e);
            assert!(!seen[r][b]);
            seen[r][b] = true;
        }
    }
}
