//! Double-double ("dd") arithmetic: a value is the unevaluated sum `hi + lo`
//! of two `f64` with `|lo| <= ulp(hi)/2`, giving about 106 bits (~31 decimal
//! digits) of significand.
//!
//! The building blocks are the error-free transformations of
//! Dekker (1971), "A floating-point technique for extending the available
//! precision", Numer. Math. 18, and Knuth, TAOCP vol. 2, §4.2.2:
//! `two_sum(a, b)` returns `(s, e)` with `s = fl(a + b)` and `a + b = s + e`
//! exactly; `two_prod(a, b)` returns `(p, e)` with `a · b = p + e` exactly.
//! The arithmetic follows the "sloppy" but accurate algorithms of
//! Hida, Li & Bailey (2001), "Algorithms for quad-double precision floating
//! point arithmetic" (the QD library), relative error ≈ 2⁻¹⁰⁴ for add/mul.
//!
//! `two_prod` needs a fused multiply-add to be cheap. Where the CPU has none
//! (a build without `target-feature=+fma`), `f64::mul_add` would call a slow
//! software `fma`; Veltkamp/Dekker splitting gives the same exact result
//! without it, so both paths are bit-identical.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};

/// A double-double number `hi + lo`. Invariant: `hi == fl(hi + lo)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Dd {
    pub hi: f64,
    pub lo: f64,
}

impl From<[f64; 2]> for Dd {
    fn from(v: [f64; 2]) -> Self {
        Dd { hi: v[0], lo: v[1] }
    }
}

impl From<Dd> for [f64; 2] {
    fn from(d: Dd) -> Self {
        [d.hi, d.lo]
    }
}

impl From<f64> for Dd {
    fn from(x: f64) -> Self {
        Dd { hi: x, lo: 0.0 }
    }
}

/// `a + b = s + e` exactly (Knuth's branch-free TwoSum).
#[inline(always)]
pub fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// `a + b = s + e` exactly, provided `|a| >= |b|` (Dekker's FastTwoSum).
#[inline(always)]
pub fn fast_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let e = b - (s - a);
    (s, e)
}

/// `a · b = p + e` exactly (barring overflow/underflow).
#[inline(always)]
pub fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    #[cfg(target_feature = "fma")]
    {
        (p, a.mul_add(b, -p))
    }
    #[cfg(not(target_feature = "fma"))]
    {
        (p, two_prod_err_split(a, b, p))
    }
}

/// The rounding error of `p = fl(a·b)` by Veltkamp splitting (no FMA needed).
#[inline(always)]
pub fn two_prod_err_split(a: f64, b: f64, p: f64) -> f64 {
    const SPLIT: f64 = 134_217_729.0; // 2^27 + 1
    let split = |x: f64| {
        let t = SPLIT * x;
        let hi = t - (t - x);
        (hi, x - hi)
    };
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    ((ah * bh - p) + ah * bl + al * bh) + al * bl
}

impl Dd {
    pub const ZERO: Dd = Dd { hi: 0.0, lo: 0.0 };
    pub const ONE: Dd = Dd { hi: 1.0, lo: 0.0 };

    #[inline(always)]
    pub fn new(hi: f64, lo: f64) -> Dd {
        let (h, l) = two_sum(hi, lo);
        Dd { hi: h, lo: l }
    }

    /// The nearest `f64`.
    #[inline(always)]
    pub fn to_f64(self) -> f64 {
        self.hi + self.lo
    }

    /// Exact product of two `f64` as a double-double.
    #[inline(always)]
    pub fn mul_f64s(a: f64, b: f64) -> Dd {
        let (p, e) = two_prod(a, b);
        Dd { hi: p, lo: e }
    }

    pub fn abs(self) -> Dd {
        if self.hi < 0.0 || (self.hi == 0.0 && self.lo < 0.0) {
            -self
        } else {
            self
        }
    }

    pub fn is_finite(self) -> bool {
        self.hi.is_finite() && self.lo.is_finite()
    }

    /// Square root by one Newton step from the `f64` root (Karp & Markstein).
    pub fn sqrt(self) -> Dd {
        if self.hi <= 0.0 {
            return Dd::from(self.hi.max(0.0).sqrt() * if self.hi < 0.0 { f64::NAN } else { 1.0 });
        }
        let x = 1.0 / self.hi.sqrt();
        let ax = self.hi * x;
        let diff = self - Dd::mul_f64s(ax, ax);
        let (s, e) = two_sum(ax, diff.hi * (x * 0.5));
        Dd::new(s, e)
    }

    /// Natural logarithm: one Newton step `x₁ = x₀ + a·exp(−x₀) − 1` from the
    /// `f64` logarithm, with a double-double `exp` (doubles the digits).
    pub fn ln(self) -> Dd {
        if self.hi <= 0.0 || !self.hi.is_finite() {
            return Dd::from(self.hi.ln());
        }
        let x0 = Dd::from(self.hi.ln());
        x0 + self * (-x0).exp() - Dd::ONE
    }

    /// Exponential (QD's algorithm): reduce by `k·ln 2` and a further factor
    /// 2⁹, sum the Taylor series in double-double, square back nine times.
    pub fn exp(self) -> Dd {
        if self.hi > 709.78 {
            return Dd::from(f64::INFINITY);
        }
        if self.hi < -745.2 {
            return Dd::ZERO;
        }
        if self.hi == 0.0 && self.lo == 0.0 {
            return Dd::ONE;
        }
        let k = (self.hi / LN_2.hi).round();
        let r = self - LN_2 * Dd::from(k);
        let r = Dd { hi: r.hi / 512.0, lo: r.lo / 512.0 };
        // s = exp(r) − 1 by Taylor series; |r| < 7e-4, so ~9 terms reach 2⁻¹⁰⁶.
        let mut term = r;
        let mut s = r;
        for i in 2..20 {
            term = term * r / Dd::from(i as f64);
            s += term;
            if term.hi.abs() < 1e-34 * s.hi.abs().max(f64::MIN_POSITIVE) {
                break;
            }
        }
        // (1 + s)² − 1 = 2s + s², nine times: exp(512 r) − 1.
        for _ in 0..9 {
            s = Dd { hi: 2.0 * s.hi, lo: 2.0 * s.lo } + s * s;
        }
        let e = s + Dd::ONE;
        let scale = 2f64.powi(k as i32);
        Dd { hi: e.hi * scale, lo: e.lo * scale }
    }

    /// `self` raised to a non-negative integer power, by repeated squaring
    /// in double-double.
    pub fn powi(self, n: u32) -> Dd {
        let mut result = Dd::ONE;
        let mut base = self;
        let mut k = n;
        while k > 0 {
            if k & 1 == 1 {
                result = result * base;
            }
            base = base * base;
            k >>= 1;
        }
        result
    }
}

impl Add for Dd {
    type Output = Dd;
    #[inline(always)]
    fn add(self, b: Dd) -> Dd {
        // IEEE-style accurate addition (QD's ieee_add).
        let (s1, s2) = two_sum(self.hi, b.hi);
        let (t1, t2) = two_sum(self.lo, b.lo);
        let s2 = s2 + t1;
        let (s1, s2) = fast_two_sum(s1, s2);
        let s2 = s2 + t2;
        let (hi, lo) = fast_two_sum(s1, s2);
        Dd { hi, lo }
    }
}

impl Neg for Dd {
    type Output = Dd;
    #[inline(always)]
    fn neg(self) -> Dd {
        Dd { hi: -self.hi, lo: -self.lo }
    }
}

impl Sub for Dd {
    type Output = Dd;
    #[inline(always)]
    fn sub(self, b: Dd) -> Dd {
        self + (-b)
    }
}

impl Mul for Dd {
    type Output = Dd;
    #[inline(always)]
    fn mul(self, b: Dd) -> Dd {
        let (p, e) = two_prod(self.hi, b.hi);
        let e = e + (self.hi * b.lo + self.lo * b.hi);
        let (hi, lo) = fast_two_sum(p, e);
        Dd { hi, lo }
    }
}

impl Div for Dd {
    type Output = Dd;
    fn div(self, b: Dd) -> Dd {
        // Long division with three quotient digits (QD's accurate_div).
        let q1 = self.hi / b.hi;
        let r = self - b * Dd::from(q1);
        let q2 = r.hi / b.hi;
        let r = r - b * Dd::from(q2);
        let q3 = r.hi / b.hi;
        let (q1, q2) = fast_two_sum(q1, q2);
        Dd { hi: q1, lo: q2 } + Dd::from(q3)
    }
}

impl AddAssign for Dd {
    #[inline(always)]
    fn add_assign(&mut self, b: Dd) {
        *self = *self + b;
    }
}

impl SubAssign for Dd {
    #[inline(always)]
    fn sub_assign(&mut self, b: Dd) {
        *self = *self - b;
    }
}

impl PartialOrd for Dd {
    fn partial_cmp(&self, other: &Dd) -> Option<Ordering> {
        match self.hi.partial_cmp(&other.hi) {
            Some(Ordering::Equal) => self.lo.partial_cmp(&other.lo),
            o => o,
        }
    }
}

/// ln(10) and ln(2) to double-double precision.
pub const LN_10: Dd = Dd { hi: std::f64::consts::LN_10, lo: -2.170_756_223_382_249_4e-16 };
pub const LN_2: Dd = Dd { hi: std::f64::consts::LN_2, lo: 2.319_046_813_846_299_6e-17 };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_prod_paths_agree_bitwise() {
        let xs: [f64; 5] = [0.1, 1.0 / 3.0, 12345.678, -9.87654321e-7, 3.0e150];
        for &a in &xs {
            for &b in &xs {
                let p = a * b;
                assert_eq!(a.mul_add(b, -p), two_prod_err_split(a, b, p));
            }
        }
    }

    #[test]
    fn sum_recovers_what_f64_loses() {
        // 1 + 1e-20 - 1 is exactly 1e-20 in double-double, 0 in f64.
        let x = Dd::from(1.0) + Dd::from(1e-20) - Dd::from(1.0);
        assert_eq!(x.to_f64(), 1e-20);
    }

    #[test]
    fn division_and_sqrt_round_trip_to_about_31_digits() {
        let three = Dd::from(3.0);
        let third = Dd::ONE / three;
        let back = third * three - Dd::ONE;
        assert!(back.to_f64().abs() < 1e-31, "{back:?}");
        let two = Dd::from(2.0);
        let r = two.sqrt();
        let err = (r * r - two).to_f64().abs();
        assert!(err < 1e-31, "{err}");
    }

    #[test]
    fn ln_is_accurate_beyond_f64() {
        let e = Dd::new(std::f64::consts::E, 1.445_646_891_729_250_2e-16);
        let l = e.ln() - Dd::ONE;
        assert!(l.to_f64().abs() < 1e-30, "{l:?}");
    }

    #[test]
    fn exp_inverts_ln() {
        let x = Dd::from(0.7);
        let back = x.exp().ln() - x;
        assert!(back.to_f64().abs() < 1e-30, "{back:?}");
        let ten = (LN_10).exp() - Dd::from(10.0);
        assert!(ten.to_f64().abs() < 1e-29, "{ten:?}");
        let two = (LN_2).exp() - Dd::from(2.0);
        assert!(two.to_f64().abs() < 1e-30, "{two:?}");
    }

    #[test]
    fn powi_is_exact_for_small_integers() {
        assert_eq!(Dd::from(3.0).powi(10).to_f64(), 59049.0);
        let x = Dd::from(1.1).powi(10);
        // 1.1 (as the f64 nearest) to the 10th, exactly representable in dd.
        let f = 1.1f64;
        let mut naive = Dd::ONE;
        for _ in 0..10 {
            naive = naive * Dd::from(f);
        }
        assert!((x - naive).to_f64().abs() < 1e-30);
    }
}
