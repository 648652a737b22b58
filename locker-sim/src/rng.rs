//! A small seeded generator (SplitMix64): the simulator's only randomness.

/// Deterministic pseudo-random numbers from one 64-bit seed.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

/// The natural logarithm of `x` in `(0, 1]`, by IEEE arithmetic alone (a
/// libm's may round differently on another machine, and is slower): `x =
/// m·2^e` with `m` in `[√½, √2)`, and `ln m = 2 atanh((m - 1) / (m + 1))`
/// by its series, within about 1e-11. (Subnormal `x` is not needed.)
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    // Without a branch: which half `m` falls in is a coin toss.
    let upper = (m > core::f64::consts::SQRT_2) as i64;
    m *= [1.0, 0.5][upper as usize];
    e += upper;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = 1.0
        + s2 * (1.0 / 3.0
            + s2 * (1.0 / 5.0
                + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0))))));
    e as f64 * core::f64::consts::LN_2 + 2.0 * s * series
}

impl SimRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A uniform integer in `[lo, hi)` (`lo` if the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }

    /// An exponentially distributed value with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * ln(1.0 - self.unit())
    }

    /// A derived, independent generator (for a sub-stream such as one link).
    pub fn fork(&mut self) -> SimRng {
        SimRng::new(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ln_is_close_to_the_library_one() {
        let mut x = 1.0f64;
        while x > 1e-300 {
            let (ours, theirs) = (super::ln(x), x.ln());
            assert!((ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0), "{x}");
            x *= 0.937;
        }
        let mut r = super::SimRng::new(5);
        for _ in 0..100_000 {
            let x = 1.0 - r.unit();
            assert!((super::ln(x) - x.ln()).abs() <= 1e-9, "{x}");
        }
    }
}
