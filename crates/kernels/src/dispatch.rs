//! Run-time kernel selection: the CPU's features are detected once, and a table of function
//! pointers ([`Kernels`]) is filled for the best instruction set it has. `QUILL_KERNEL=scalar|
//! avx2|avxvnni|avx512|neon` forces one (an error if the CPU lacks it); tests and benches may also pick
//! any supported table directly with [`Kernels::get`].

use std::sync::OnceLock;

use crate::KernelError;

/// An instruction set the kernels are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Portable Rust, always compiled: the reference every other path is tested against.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX2 with AVX-VNNI (VEX `vpdpbusd`: Intel Alder Lake and later, Sapphire Rapids
    /// and later Xeons, AMD Zen 5): AVX2's kernels with the integer GEMM on `vpdpbusd`.
    AvxVnni,
    /// x86-64 AVX-512 F/BW/VL/VNNI (+ AVX2, FMA, F16C).
    Avx512,
    /// AArch64 NEON with the dot-product extension.
    Neon,
}

impl Backend {
    /// Every backend, best last.
    pub const ALL: [Backend; 5] = [Backend::Scalar, Backend::Avx2, Backend::AvxVnni, Backend::Avx512, Backend::Neon];

    /// The name `QUILL_KERNEL` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Avx2 => "avx2",
            Backend::AvxVnni => "avxvnni",
            Backend::Avx512 => "avx512",
            Backend::Neon => "neon",
        }
    }

    /// Parses a `QUILL_KERNEL` value.
    pub fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Whether this CPU runs the backend (detected at run time).
    pub fn is_supported(self) -> bool {
        match self {
            Backend::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => {
                std::is_x86_feature_detected!("avx2")
                    && std::is_x86_feature_detected!("fma")
                    && std::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Backend::AvxVnni => Backend::Avx2.is_supported() && std::is_x86_feature_detected!("avxvnni"),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => {
                Backend::Avx2.is_supported()
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Backend::Neon => {
                std::arch::is_aarch64_feature_detected!("neon") && std::arch::is_aarch64_feature_detected!("dotprod")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The backends this CPU runs, scalar first.
    pub fn supported() -> impl Iterator<Item = Backend> {
        Backend::ALL.into_iter().filter(|b| b.is_supported())
    }

    /// The fastest backend this CPU runs.
    pub fn best() -> Backend {
        Backend::supported().last().unwrap_or(Backend::Scalar)
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The backend `QUILL_KERNEL` asks for, or the best one when it is unset or empty.
pub fn backend_from_env() -> Result<Backend, KernelError> {
    match std::env::var("QUILL_KERNEL") {
        Ok(v) if !v.is_empty() => {
            let available = || Backend::supported().collect();
            match Backend::from_name(&v) {
                Some(b) if b.is_supported() => Ok(b),
                Some(backend) => Err(KernelError::BackendUnsupported { backend, available: available() }),
                None => Err(KernelError::UnknownBackend { value: v, available: available() }),
            }
        }
        _ => Ok(Backend::best()),
    }
}

/// A filled function table: one per backend, all `'static`.
pub struct Kernels {
    pub(crate) backend: Backend,
    pub(crate) quant: crate::table::QuantKernels,
    pub(crate) gemm: Option<crate::table::GemmKernels>,
    pub(crate) ops: crate::table::OpsKernels,
}

static ACTIVE: OnceLock<&'static Kernels> = OnceLock::new();

impl Kernels {
    /// The table for `backend`, or `None` when this CPU lacks it (or it is another
    /// architecture's).
    pub fn get(backend: Backend) -> Option<&'static Kernels> {
        if !backend.is_supported() {
            return None;
        }
        match backend {
            Backend::Scalar => Some(&crate::scalar::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => Some(&crate::arch::x86_avx2_table::KERNELS),
            #[cfg(target_arch = "x86_64")]
            Backend::AvxVnni => Some(&crate::arch::x86_avx2_table::VNNI_KERNELS),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => Some(&crate::arch::x86_avx512_table::KERNELS),
            #[cfg(target_arch = "aarch64")]
            Backend::Neon => Some(&crate::arch::aarch64_neon_table::KERNELS),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The process-wide table, chosen on first use from `QUILL_KERNEL` or the CPU.
    ///
    /// Panics on first use if `QUILL_KERNEL` names a backend this CPU lacks: a forced backend
    /// must never silently become another one (call [`Kernels::init`] first to get the error
    /// as a value instead).
    pub fn active() -> &'static Kernels {
        ACTIVE.get_or_init(|| match backend_from_env() {
            Ok(b) => Kernels::get(b).expect("backend_from_env returns supported backends"),
            Err(e) => panic!("{e}"),
        })
    }

    /// Chooses the process-wide table now (from `QUILL_KERNEL` or the CPU), returning an error
    /// instead of panicking later when the variable asks for something impossible.
    pub fn init() -> Result<&'static Kernels, KernelError> {
        if let Some(k) = ACTIVE.get() {
            return Ok(k);
        }
        let b = backend_from_env()?;
        Ok(*ACTIVE.get_or_init(|| Kernels::get(b).expect("backend_from_env returns supported backends")))
    }

    /// Which instruction set this table runs.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels").field("backend", &self.backend).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_scalar_is_always_there() {
        for b in Backend::ALL {
            assert_eq!(Backend::from_name(b.name()), Some(b));
        }
        assert_eq!(Backend::from_name("sse9"), None);
        assert!(Backend::Scalar.is_supported());
        assert_eq!(Kernels::get(Backend::Scalar).unwrap().backend(), Backend::Scalar);
        assert!(Backend::best().is_supported());
        for b in Backend::ALL {
            assert_eq!(Kernels::get(b).is_some(), b.is_supported(), "{b}");
        }
    }
}
