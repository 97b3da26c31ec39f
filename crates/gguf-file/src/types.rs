//! The ggml tensor type table: one row per type id, holding its name, block size and bytes per
//! block. Adding a format is one edit here.
//!
//! Ids, block sizes and block bytes follow ggml (`ggml/include/ggml.h` `enum ggml_type`,
//! `ggml/src/ggml.c` `type_traits`, block structs in `ggml/src/ggml-common.h`).

use std::fmt;

/// A ggml tensor element type, as stored in a GGUF tensor info.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    Q4_0_8_8,
    TQ1_0,
    TQ2_0,
    MXFP4,
}

/// One row of the type table.
#[derive(Clone, Copy, Debug)]
pub struct TypeInfo {
    pub ty: GgmlType,
    /// The id stored in GGUF files.
    pub id: u32,
    /// ggml's lower-case name (`ggml_type_name`).
    pub name: &'static str,
    /// Elements per block (1 for plain element types).
    pub block_size: u32,
    /// Bytes per block.
    pub block_bytes: u32,
}

const fn row(ty: GgmlType, id: u32, name: &'static str, block_size: u32, block_bytes: u32) -> TypeInfo {
    TypeInfo { ty, id, name, block_size, block_bytes }
}

/// The whole table. Block bytes are the `sizeof(block_*)` of ggml-common.h.
pub const TYPE_TABLE: &[TypeInfo] = &[
    row(GgmlType::F32, 0, "f32", 1, 4),
    row(GgmlType::F16, 1, "f16", 1, 2),
    row(GgmlType::Q4_0, 2, "q4_0", 32, 18),
    row(GgmlType::Q4_1, 3, "q4_1", 32, 20),
    row(GgmlType::Q5_0, 6, "q5_0", 32, 22),
    row(GgmlType::Q5_1, 7, "q5_1", 32, 24),
    row(GgmlType::Q8_0, 8, "q8_0", 32, 34),
    row(GgmlType::Q8_1, 9, "q8_1", 32, 36),
    row(GgmlType::Q2_K, 10, "q2_K", 256, 84),
    row(GgmlType::Q3_K, 11, "q3_K", 256, 110),
    row(GgmlType::Q4_K, 12, "q4_K", 256, 144),
    row(GgmlType::Q5_K, 13, "q5_K", 256, 176),
    row(GgmlType::Q6_K, 14, "q6_K", 256, 210),
    row(GgmlType::Q8_K, 15, "q8_K", 256, 292),
    row(GgmlType::IQ2_XXS, 16, "iq2_xxs", 256, 66),
    row(GgmlType::IQ2_XS, 17, "iq2_xs", 256, 74),
    row(GgmlType::IQ3_XXS, 18, "iq3_xxs", 256, 98),
    row(GgmlType::IQ1_S, 19, "iq1_s", 256, 50),
    row(GgmlType::IQ4_NL, 20, "iq4_nl", 32, 18),
    row(GgmlType::IQ3_S, 21, "iq3_s", 256, 110),
    row(GgmlType::IQ2_S, 22, "iq2_s", 256, 82),
    row(GgmlType::IQ4_XS, 23, "iq4_xs", 256, 136),
    row(GgmlType::I8, 24, "i8", 1, 1),
    row(GgmlType::I16, 25, "i16", 1, 2),
    row(GgmlType::I32, 26, "i32", 1, 4),
    row(GgmlType::I64, 27, "i64", 1, 8),
    row(GgmlType::F64, 28, "f64", 1, 8),
    row(GgmlType::IQ1_M, 29, "iq1_m", 256, 56),
    row(GgmlType::BF16, 30, "bf16", 1, 2),
    // Q4_0 blocks of 8 rows interleaved (ggml's `block_q4_0x8`, written by llama.cpp's
    // quantizer from late 2024 until it moved the repacking into its loader): a tensor's bytes
    // are the same size as Q4_0's, but one "row" of them is not that row's blocks.
    row(GgmlType::Q4_0_8_8, 33, "q4_0_8x8", 32, 18),
    row(GgmlType::TQ1_0, 34, "tq1_0", 256, 54),
    row(GgmlType::TQ2_0, 35, "tq2_0", 256, 66),
    row(GgmlType::MXFP4, 39, "mxfp4", 32, 17),
];

impl GgmlType {
    /// The type for a GGUF type id, or `None` if the id is unknown or retired.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TYPE_TABLE.iter().find(|r| r.id == id).map(|r| r.ty)
    }

    /// The type for a ggml name (`q4_0`, `Q4_K`, ...), case-insensitive.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TYPE_TABLE.iter().find(|r| r.name.eq_ignore_ascii_case(name)).map(|r| r.ty)
    }

    /// This type's row of the table.
    pub fn info(self) -> &'static TypeInfo {
        // The table holds every variant exactly once (checked by a test), in declaration order.
        &TYPE_TABLE[self as usize]
    }

    pub fn id(self) -> u32 {
        self.info().id
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn block_size(self) -> u64 {
        u64::from(self.info().block_size)
    }

    pub fn block_bytes(self) -> u64 {
        u64::from(self.info().block_bytes)
    }

    /// True for block-quantized types (block size above one, or ggml's 1-element integer types
    /// excluded).
    pub fn is_quantized(self) -> bool {
        self.info().block_size > 1
    }

    /// Bytes of a row of `n` elements, or `None` if `n` is not a whole number of blocks or the
    /// size overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let bs = self.block_size();
        if !n.is_multiple_of(bs) {
            return None;
        }
        (n / bs).checked_mul(self.block_bytes())
    }

    /// Rows whose blocks are stored interleaved, as one unit (8 for `Q4_0_8_8`, else 1): a
    /// tensor of this type has a multiple of this many rows, and only whole groups of them can
    /// be read.
    pub fn row_group(self) -> u64 {
        if self == GgmlType::Q4_0_8_8 {
            8
        } else {
            1
        }
    }

    /// Bits per weight of this type.
    pub fn bits_per_weight(self) -> f64 {
        self.block_bytes() as f64 * 8.0 / self.block_size() as f64
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_declaration_order_and_ids_are_unique() {
        for (i, row) in TYPE_TABLE.iter().enumerate() {
            assert_eq!(row.ty as usize, i, "{} out of order", row.name);
            assert_eq!(GgmlType::from_id(row.id), Some(row.ty));
            assert_eq!(GgmlType::from_name(row.name), Some(row.ty));
        }
        let mut ids: Vec<u32> = TYPE_TABLE.iter().map(|r| r.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), TYPE_TABLE.len());
    }

    #[test]
    fn known_sizes() {
        assert_eq!(GgmlType::Q4_0.row_bytes(768), Some(24 * 18));
        assert_eq!(GgmlType::Q4_K.row_bytes(768), Some(3 * 144));
        assert_eq!(GgmlType::Q4_K.row_bytes(1600), None);
        assert_eq!(GgmlType::from_id(4), None, "Q4_2 was retired");
        assert_eq!(GgmlType::from_name("Q6_K"), Some(GgmlType::Q6_K));
        assert!((GgmlType::Q4_0.bits_per_weight() - 4.5).abs() < 1e-12);
        assert_eq!(GgmlType::from_id(33), Some(GgmlType::Q4_0_8_8));
        assert_eq!(GgmlType::Q4_0_8_8.row_bytes(768), GgmlType::Q4_0.row_bytes(768));
        assert_eq!((GgmlType::Q4_0_8_8.row_group(), GgmlType::Q4_0.row_group()), (8, 1));
    }
}
