//! `exp` and `ln` written with IEEE-754 `+ - * /` and bit manipulation only, so that they give
//! the same bits on every platform. The standard library's `f32::exp` calls the platform's libm
//! (or an LLVM intrinsic), whose last bit differs between systems; a probability that differs
//! in its last bit can flip a sampled token, and a seed must reproduce a run everywhere.
//! Rust never fuses `a * b + c` into an FMA on its own, so the rounding below is fixed.
//!
//! Both follow Cephes (`expf.c`, `logf.c`, Stephen L. Moshier): Cody-Waite range reduction
//! and the same minimax polynomials, accurate to about 1 ulp.

/// `ln 2` split so that `k * LN2_HI` is exact for `|k| <= 128` (Cephes `expf.c` C1, C2).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// Adding then subtracting 1.5 * 2^23 rounds an `f32` of magnitude < 2^22 to the nearest integer.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Below this, `e^x` is under `f32::MIN_POSITIVE`; [`exp`] returns 0 there.
const EXP_MIN_ARG: f32 = -87.336_54;
/// Above this [`exp`] saturates (its callers only pass arguments <= 0).
const EXP_MAX_ARG: f32 = 88.0;

/// `e^x` for `x <= 88`, bit-identical on every platform. Returns 0 for `x < -87.34` (where the
/// result would be subnormal) and for `-inf`; saturates at `e^88` above 88. Not meant for NaN.
/// Branch-free, so a loop over it vectorises.
#[inline]
pub fn exp(x: f32) -> f32 {
    // Plain comparisons rather than `f32::clamp`, whose NaN rules cost extra instructions:
    // each of these is one `maxss`/`minss`, and the loop over candidates vectorises.
    let xc = if x < EXP_MIN_ARG { EXP_MIN_ARG } else { x };
    let xc = if xc > EXP_MAX_ARG { EXP_MAX_ARG } else { xc };
    let k_magic = xc * LOG2_E + ROUND_MAGIC;
    let k = k_magic - ROUND_MAGIC;
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    let z = r * r;
    // Cephes expf.c polynomial for e^r - 1 - r on |r| <= ln2 / 2.
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = (p * z + r) + 1.0;
    // k is an integer in [-126, 127], so 2^k is a normal float built from its exponent. The
    // integer is read from the low mantissa bits of `k_magic` (1.5 * 2^23 + k), not with a
    // saturating `k as i32`, whose range checks do not vectorise.
    let k_int = (k_magic.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000;
    let scale = f32::from_bits(((k_int + 127) as u32) << 23);
    if x < EXP_MIN_ARG {
        0.0
    } else {
        y * scale
    }
}

/// Natural logarithm, bit-identical on every platform: `-inf` for 0, NaN for negative or NaN
/// input, `+inf` for `+inf`; subnormal inputs are handled.
pub fn ln(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x == f32::INFINITY {
        return f32::INFINITY;
    }
    let (x, e_bias) = if x < f32::MIN_POSITIVE { (x * 8_388_608.0, -23) } else { (x, 0) };
    let bits = x.to_bits();
    // x = m * 2^e with m in [0.5, 1).
    let mut e = ((bits >> 23) & 0xff) as i32 - 126 + e_bias;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    // Shift m to [sqrt(1/2), sqrt(2)) and take f = m - 1 (Cephes logf.c).
    let f = if m < std::f32::consts::FRAC_1_SQRT_2 {
        e -= 1;
        (m + m) - 1.0
    } else {
        m - 1.0
    };
    let z = f * f;
    let mut y = 7.037_683_6e-2;
    y = y * f - 1.151_461_e-1;
    y = y * f + 1.167_699_9e-1;
    y = y * f - 1.242_014_1e-1;
    y = y * f + 1.424_932_3e-1;
    y = y * f - 1.666_805_8e-1;
    y = y * f + 2.000_071_4e-1;
    y = y * f - 2.499_999_4e-1;
    y = y * f + 3.333_333e-1;
    y = y * f * z;
    let fe = e as f32;
    y += LN2_LO * fe;
    y += -0.5 * z;
    let r = f + y;
    r + LN2_HI * fe
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_matches_std_within_two_ulps() {
        let mut worst = 0;
        let mut x = -87.3f32;
        while x <= 88.0 {
            let (got, want) = (exp(x), (x as f64).exp() as f32);
            worst = worst.max(ulps(got, want));
            x += 0.001_37;
        }
        assert!(worst <= 2, "worst {worst} ulps");
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(-f32::MAX), 0.0);
        assert!(exp(-87.3) > 0.0);
        assert!(exp(88.0).is_finite());
        assert_eq!(exp(1.0e30), exp(88.0));
    }

    #[test]
    fn exp_pinned_bits() {
        // Bits this implementation must give on every platform (here: the correctly rounded values).
        assert_eq!(exp(1.0).to_bits(), std::f32::consts::E.to_bits());
        assert_eq!(exp(-1.0).to_bits(), 0x3ebc5ab2);
        assert_eq!(exp(-10.5).to_bits(), 0x37e6fe13);
    }

    #[test]
    fn ln_matches_std_within_two_ulps() {
        let mut worst = 0;
        let mut x = 1.0e-38f32;
        while x < 1.0e38 {
            let (got, want) = (ln(x), (x as f64).ln() as f32);
            worst = worst.max(ulps(got, want));
            x *= 1.000_37;
        }
        assert!(worst <= 2, "worst {worst} ulps");
        for x in [1.0e-45f32, 1.0e-40, 3.0e-39] {
            let (got, want) = (ln(x), (x as f64).ln() as f32);
            assert!((got - want).abs() <= 1e-5 * want.abs(), "{x}: {got} vs {want}");
        }
    }

    #[test]
    fn ln_edges() {
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert!(ln(-1.0).is_nan());
        assert!(ln(f32::NAN).is_nan());
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert_eq!(ln(0.05).to_bits(), 0xc03fba14);
    }
}
