//! A seeded generator whose output is the same on every run, platform and Rust version:
//! xoshiro256** (Blackman & Vigna, <https://prng.di.unimi.it/xoshiro256starstar.c>) with its
//! state filled by SplitMix64 (<https://prng.di.unimi.it/splitmix64.c>), as its authors advise.
//! Only integer arithmetic is involved, and [`Xoshiro256StarStar::next_f64`] converts to a float
//! exactly, so nothing depends on the platform's floating-point library.

/// SplitMix64: a 64-bit counter passed through a mixing function. Used to expand a seed.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose first output is the mix of `seed + 0x9e3779b97f4a7c15`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// xoshiro256**: 256 bits of state, period 2^256 - 1, passes BigCrush; the generator behind
/// every random choice the sampler makes.
#[derive(Debug, Clone)]
pub struct Xoshiro256StarStar {
    s: [u64; 4],
}

impl Xoshiro256StarStar {
    /// Fills the state with four SplitMix64 outputs of `seed`. Every seed, 0 included, gives a
    /// valid (non-zero) state, since SplitMix64 is a bijection of its counter.
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        Self { s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()] }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform float in `[0, 1)`: the top 53 bits times 2^-53, which is exact in `f64`.
    pub fn next_f64(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from the authors' C code (splitmix64.c, xoshiro256starstar.c) compiled
    // with gcc and seeded the same way.
    #[test]
    fn splitmix64_matches_reference() {
        let mut sm = SplitMix64::new(0);
        let got: Vec<u64> = (0..4).map(|_| sm.next_u64()).collect();
        assert_eq!(got, [0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f, 0xf88bb8a8724c81ec]);
    }

    #[test]
    fn xoshiro_first_outputs_are_pinned() {
        let cases: [(u64, [u64; 6]); 3] = [
            (
                0,
                [
                    0x99ec5f36cb75f2b4,
                    0xbf6e1f784956452a,
                    0x1a5f849d4933e6e0,
                    0x6aa594f1262d2d2c,
                    0xbba5ad4a1f842e59,
                    0xffef8375d9ebcaca,
                ],
            ),
            (
                42,
                [
                    0x15780b2e0c2ec716,
                    0x6104d9866d113a7e,
                    0xae17533239e499a1,
                    0xecb8ad4703b360a1,
                    0xfde6dc7fe2ec5e64,
                    0xc50da53101795238,
                ],
            ),
            (
                0xdeadbeef,
                [
                    0xc5555444a74d7e83,
                    0x65c30d37b4b16e38,
                    0x54f773200a4efa23,
                    0x429aed75fb958af7,
                    0xfb0e1dd69c255b2e,
                    0x9d6d02ec58814a27,
                ],
            ),
        ];
        for (seed, want) in cases {
            let mut rng = Xoshiro256StarStar::seed_from_u64(seed);
            let got: Vec<u64> = (0..6).map(|_| rng.next_u64()).collect();
            assert_eq!(got, want, "seed {seed}");
        }
    }

    #[test]
    fn next_f64_is_the_top_53_bits() {
        let mut a = Xoshiro256StarStar::seed_from_u64(7);
        let mut b = a.clone();
        for _ in 0..1000 {
            let f = a.next_f64();
            let bits = b.next_u64() >> 11;
            assert!((0.0..1.0).contains(&f));
            assert_eq!(f, bits as f64 / 9007199254740992.0);
        }
    }

    #[test]
    fn next_f64_mean_is_one_half() {
        let mut rng = Xoshiro256StarStar::seed_from_u64(1);
        let n = 100_000;
        let mean = (0..n).map(|_| rng.next_f64()).sum::<f64>() / n as f64;
        // The standard error is 1/sqrt(12 n) ~ 0.0009.
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    }
}
