//! Per-architecture kernels (files named after the instruction set hold only kernels) and the
//! tables that list them.

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64_neon;
#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64_neon_gemm;
#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64_neon_gemv;
#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64_neon_table;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx2_gemm;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx2_table;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx512_gemm;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx512_table;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_dot;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_gemv;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_q4x8;
