//! Exact rescaling by powers of two (C's `frexp` / `ldexp`), for computations whose
//! intermediate values may leave the `f64` range although the result does not.
//!
//! Multiplying by a power of two only changes the exponent, so it is exact as long as the result
//! stays a normal number: a quantity computed on rescaled inputs rounds exactly as the same
//! computation on the original inputs would, minus the spurious overflow.

/// The exponent `e` with `|x| ∈ [2^(e−1), 2^e)` for a finite non-zero `x` (`frexp`'s); 0 for 0
/// and for non-finite values (callers check finiteness first).
pub(crate) fn exponent(x: f64) -> i32 {
    if x == 0.0 || !x.is_finite() {
        return 0;
    }
    let biased = ((x.abs().to_bits() >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal: 2^64 · x is normal and the product is exact.
        return exponent(x * pow2(64)) - 64;
    }
    biased - 1022
}

/// `2^e` for `e` in the normal exponent range `[-1022, 1023]`.
fn pow2(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `x · 2^e`, exact unless the result overflows (±∞) or becomes subnormal.
pub(crate) fn ldexp(mut x: f64, mut e: i32) -> f64 {
    // Steps of 2^±1000 are normal numbers themselves; stop early once the value is 0 or ∞.
    while e > 1000 && x != 0.0 && x.is_finite() {
        x *= pow2(1000);
        e -= 1000;
    }
    while e < -1000 && x != 0.0 && x.is_finite() {
        x *= pow2(-1000);
        e += 1000;
    }
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    x * pow2(e.clamp(-1022, 1023))
}

/// An even exponent `e` such that every value of magnitude ≤ `amax` is < `2^e`: scaling by
/// `2^−e` brings `amax` into `[1/4, 1)`, and the square root of the scale is `2^(e/2)` exactly.
pub(crate) fn even_exponent(amax: f64) -> i32 {
    let e = exponent(amax);
    e + (e & 1)
}

/// A number kept as `m · 2^e` with `|m|` in `[1/2, 1)` (or `m = 0`), so that products, sums
/// and quotients of terms of very different magnitudes can be formed without intermediate
/// overflow or underflow. Every operation rounds exactly as the same `f64` operation on the
/// represented values would (the rescaling is exact), as long as those stay normal numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scaled {
    pub m: f64,
    pub e: i32,
}

impl Scaled {
    pub const ZERO: Scaled = Scaled { m: 0.0, e: 0 };

    /// `m · 2^e`, normalised. `m` must be finite.
    pub fn new(m: f64, e: i32) -> Self {
        let em = exponent(m);
        Scaled { m: ldexp(m, -em), e: e.saturating_add(em) }
    }

    /// A finite `f64`.
    pub fn from(x: f64) -> Self {
        Scaled::new(x, 0)
    }

    pub fn neg(self) -> Scaled {
        Scaled { m: -self.m, e: self.e }
    }

    /// `self + other`, both brought to the larger exponent first (exact scalings), one rounding.
    pub fn add(self, other: Scaled) -> Scaled {
        if other.m == 0.0 {
            return self;
        }
        if self.m == 0.0 {
            return other;
        }
        let e = self.e.max(other.e);
        Scaled::new(ldexp(self.m, self.e - e) + ldexp(other.m, other.e - e), e)
    }

    /// `self · x` for a finite `x`, one rounding.
    pub fn mul(self, x: f64) -> Scaled {
        self.mul_scaled(Scaled::from(x))
    }

    pub fn mul_scaled(self, other: Scaled) -> Scaled {
        Scaled::new(self.m * other.m, self.e.saturating_add(other.e))
    }

    /// `self / d` for a finite `d > 0`, one rounding.
    pub fn div(self, d: f64) -> Scaled {
        self.div_scaled(Scaled::from(d))
    }

    /// `self / other` for `other > 0`, one rounding.
    pub fn div_scaled(self, other: Scaled) -> Scaled {
        Scaled::new(self.m / other.m, self.e.saturating_sub(other.e))
    }

    /// `√self` for `self ≥ 0`: the exponent is made even first, so the rescaling is exact.
    pub fn sqrt(self) -> Scaled {
        if self.e % 2 == 0 {
            Scaled::new(self.m.sqrt(), self.e / 2)
        } else {
            Scaled::new((2.0 * self.m).sqrt(), (self.e - 1) / 2)
        }
    }

    /// The represented value: `±∞` when it is outside the `f64` range.
    pub fn value(self) -> f64 {
        ldexp(self.m, self.e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_and_ldexp() {
        assert_eq!(exponent(1.0), 1);
        assert_eq!(exponent(0.5), 0);
        assert_eq!(exponent(-3.0), 2);
        assert_eq!(exponent(f64::MAX), 1024);
        assert_eq!(exponent(f64::MIN_POSITIVE), -1021);
        assert_eq!(exponent(5e-324), -1073);
        assert_eq!(exponent(0.0), 0);
        for x in [1.0, -3.5, 1e300, 1e-300, f64::MAX, 5e-324, 123.456] {
            let e = exponent(x);
            let m = ldexp(x, -e);
            assert!((0.5..1.0).contains(&m.abs()), "{x}: {m}");
            assert_eq!(ldexp(m, e), x);
        }
        assert_eq!(ldexp(1.0, 2000), f64::INFINITY);
        assert_eq!(ldexp(1.0, -2000), 0.0);
        assert_eq!(ldexp(f64::MAX, -2046), ldexp(ldexp(f64::MAX, -1023), -1023));
        assert_eq!(even_exponent(3.0), 2);
        assert_eq!(even_exponent(4.0), 4);
    }

    #[test]
    fn scaled_arithmetic_past_the_range() {
        let a = Scaled::new(0.75, 1100);
        let b = Scaled::new(0.25, 1100);
        assert_eq!(a.add(b), Scaled::new(1.0, 1100));
        assert_eq!(a.add(b).div(ldexp(1.0, 200)).value(), ldexp(1.0, 900));
        assert_eq!(a.value(), f64::INFINITY);
        assert_eq!(Scaled::from(3.0).add(Scaled::ZERO).value(), 3.0);
        // (1e300)² / 1e300 = 1e300 although 1e600 is out of range.
        let big = Scaled::from(1e300);
        assert_eq!(big.mul(1e300).div(1e300).value(), 1e300 * (1e300 / 1e300));
        assert_eq!(big.mul(1e300).sqrt().value(), 1e300);
        assert_eq!(Scaled::from(2.0).sqrt().value(), 2f64.sqrt());
        assert_eq!(Scaled::from(8.0).sqrt().value(), 8f64.sqrt());
        assert_eq!(Scaled::from(0.1).sqrt().value(), 0.1f64.sqrt());
        // Same rounding as plain arithmetic where that does not overflow.
        for (x, y) in [(0.1, 0.2), (1.0 / 3.0, 3.0), (1e-5, 7e8), (-2.5, 1e-3)] {
            assert_eq!(Scaled::from(x).add(Scaled::from(y)).value(), x + y);
            assert_eq!(Scaled::from(x).mul(y).value(), x * y);
            assert_eq!(Scaled::from(x).div(y.abs()).value(), x / y.abs());
        }
    }
}
