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

    /// The quotient of two `f64` in double-double (`b ≠ 0`): `q = fl(a/b)`,
    /// then the remainder `a − q·b`, exact (`two_prod`, and Sterbenz for
    /// the subtraction), divided by `b`: within 2⁻¹⁰⁵ of `a/b`, relative.
    #[inline(always)]
    pub fn div_f64s(a: f64, b: f64) -> Dd {
        let q = a / b;
        let (p, e) = two_prod(q, b);
        let r = (a - p) - e;
        let (h, l) = fast_two_sum(q, r / b);
        Dd { hi: h, lo: l }
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

    /// Natural logarithm, by a table (Tang's method, as in Muller et al.,
    /// *Handbook of Floating-Point Arithmetic*, 2nd ed., §10.2): with
    /// `hi = 2ᵉ·m`, `m ∈ [¾, 3/2)`, and `c` the reciprocal of the midpoint of
    /// `m`'s 1/128th of that interval (1 for the one holding 1, so that
    /// `ln 1 = 0` exactly), `ln(hi) = e·ln 2 − ln c + ln(1 + r)`
    /// where `r = m·c − 1` is exact in double-double (`two_prod`) and
    /// `|r| < 2⁻⁸`; `ln(1 + r) = 2·atanh(s)`, `s = r/(2 + r)`, by its odd
    /// series (`s`, `s³`, `s⁵` in double-double, the rest in `f64`: each
    /// term's error below 2⁻¹⁰⁶ of the result). The low word adds
    /// `ln(1 + lo/hi) = lo/hi` to within `(lo/hi)²/2 < 2⁻¹⁰⁷`. The table's
    /// `ln c` come from `Dd::ln_newton`. About 10× faster than that.
    pub fn ln(self) -> Dd {
        if self.hi <= 0.0 || !self.hi.is_finite() {
            return Dd::from(self.hi.ln());
        }
        ln_table_f64(self.hi) + Dd::from(self.lo / self.hi)
    }

    /// Natural logarithm: one Newton step `x₁ = x₀ + a·exp(−x₀) − 1` from the
    /// `f64` logarithm, with a double-double `exp` (doubles the digits). The
    /// reference for [`Dd::ln`]'s table (and its tests).
    fn ln_newton(self) -> Dd {
        if self.hi <= 0.0 || !self.hi.is_finite() {
            return Dd::from(self.hi.ln());
        }
        let x0 = Dd::from(self.hi.ln());
        x0 + self * (-x0).exp() - Dd::ONE
    }

    /// Exponential by a table (Tang's method, as for [`Dd::ln`]): with
    /// `x = (64k + j)·ln2/64 + r`, `|r| ≤ ln2/128`, `exp x = 2ᵏ · 2^(j/64) ·
    /// exp r`; `2^(j/64)` from a 64-entry table (made by
    /// `Dd::exp_taylor`), `exp r − 1` by its Taylor series — the terms
    /// `r … r⁵/5!` in double-double, the rest (below 2⁻⁴⁷ of it) in `f64`.
    /// Relative error ≤ 2⁻¹⁰⁰ against `Dd::exp_taylor` on `[−1, 1]`
    /// (tested; beyond, `ln(exp x) = x` to 2⁻⁹⁸·|x|, the condition of `exp`).
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
        if self.hi.is_nan() {
            return Dd::from(f64::NAN);
        }
        let n = (self.hi * (64.0 / LN_2.hi)).round();
        // r = x − n·ln2/64 in double-double (|n| < 2¹⁶).
        let r = self - Dd::from(n) * Dd::new(LN_2.hi / 64.0, LN_2.lo / 64.0);
        let n = n as i64;
        let (k, j) = (n.div_euclid(64), n.rem_euclid(64) as usize);
        let table = exp_table();
        let t = table.pow2[j];
        let e = t + t * expm1_small(r, &table.inv_factorial);
        // 2ᵏ in two factors: each stays a normal number down to k = −1074.
        let (k1, k2) = (k / 2, k - k / 2);
        let f = 2f64.powi(k1 as i32);
        let g = 2f64.powi(k2 as i32);
        Dd { hi: e.hi * f * g, lo: e.lo * f * g }
    }

    /// `exp x` by its Taylor series summed in double-double, for `|x| ≤ 1`
    /// (~30 terms): slow, and accurate to a few units of 2⁻¹⁰⁶ — the source
    /// of [`Dd::exp`]'s table and the reference of its tests.
    fn exp_taylor(self) -> Dd {
        assert!(self.hi.abs() <= 1.0, "exp_taylor of {}", self.hi);
        let (mut sum, mut term) = (Dd::ONE, Dd::ONE);
        for n in 1..60 {
            term = term * self / Dd::from(n as f64);
            sum += term;
            if term.hi.abs() < 1e-36 {
                break;
            }
        }
        sum
    }

    /// `self` raised to a non-negative integer power, by repeated squaring
    /// in double-double.
    pub fn powi(self, n: u32) -> Dd {
        // Binary powering; the first factor is taken as it is (`1 · b` is
        // `b` for a normalised `b`) and no square is formed past the last.
        let mut result: Option<Dd> = None;
        let mut base = self;
        let mut k = n;
        while k > 0 {
            if k & 1 == 1 {
                result = Some(result.map_or(base, |r| r * base));
            }
            k >>= 1;
            if k > 0 {
                base = base * base;
            }
        }
        result.unwrap_or(Dd::ONE)
    }
}

/// Intervals of `[¾, 3/2)` in [`Dd::ln`]'s table.
const LN_STEPS: usize = 128;

/// The table's interval that holds 1: its `c` is 1 (so that `ln 1 = 0`
/// exactly, and values near 1 lose nothing to cancellation).
const LN_ONE: usize = 42;

/// Per interval `i` of `[¾, 3/2)`: `c`, the `f64` nearest the reciprocal
/// of its midpoint (1 for the interval holding 1), and `ln c` in
/// double-double.
fn ln_table() -> &'static [(f64, Dd); LN_STEPS] {
    static TABLE: std::sync::OnceLock<[(f64, Dd); LN_STEPS]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        std::array::from_fn(|i| {
            if i == LN_ONE {
                return (1.0, Dd::ZERO);
            }
            let c = 1.0 / (0.75 + (i as f64 + 0.5) * 0.75 / LN_STEPS as f64);
            (c, Dd::from(c).ln_newton())
        })
    })
}

/// `ln a` in double-double for a positive, finite `a` (see [`Dd::ln`]).
fn ln_table_f64(a: f64) -> Dd {
    // Subnormals: scaled into the normal range first.
    let (a, e0) = if a < f64::MIN_POSITIVE { (a * 2f64.powi(54), -54) } else { (a, 0) };
    let bits = a.to_bits();
    let mut e = (bits >> 52) as i64 - 1023 + e0;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    // m ∈ [¾, 3/2), so that values just below 1 stay near 1.
    if m >= 1.5 {
        m *= 0.5;
        e += 1;
    }
    let i = (((m - 0.75) * (LN_STEPS as f64 / 0.75)) as usize).min(LN_STEPS - 1);
    let (c, ln_c) = ln_table()[i];
    let e = e as f64;
    // r = m·c − 1 exactly: m·c = p + q, and p − 1 is exact (p ∈ [½, 2]).
    let (p, q) = two_prod(m, c);
    let (rh, rl) = fast_two_sum(p - 1.0, q);
    let r = Dd::new(rh, rl);
    // s = r / (2 + r) by two quotient digits (QD's sloppy division, ~2⁻¹⁰⁴):
    // s is at most 2⁻⁹, so the third digit of `/` is below the result's
    // precision.
    let d = Dd::from(2.0) + r;
    let q1 = r.hi / d.hi;
    let q2 = (r - d * Dd::from(q1)).hi / d.hi;
    let (sh, sl) = fast_two_sum(q1, q2);
    let s = Dd::new(sh, sl);
    let s2 = s * s;
    let x = s2.hi;
    let tail = x * (1.0 / 7.0 + x * (1.0 / 9.0 + x * (1.0 / 11.0 + x * (1.0 / 13.0))));
    let poly = s2 * (third() + s2 * (fifth() + Dd::from(tail)));
    let log1p = (s + s * poly) * Dd::from(2.0);
    Dd::from(e) * LN_2 - ln_c + log1p
}

/// What [`Dd::exp`] reads: `2^(j/64)` for `j < 64`, and `1/n!` for
/// `n ≤ 5`, in double-double.
struct ExpTable {
    pow2: [Dd; 64],
    inv_factorial: [Dd; 6],
}

fn exp_table() -> &'static ExpTable {
    static TABLE: std::sync::OnceLock<ExpTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let step = Dd::new(LN_2.hi / 64.0, LN_2.lo / 64.0);
        let mut fact = 1.0;
        ExpTable {
            pow2: std::array::from_fn(|j| (Dd::from(j as f64) * step).exp_taylor()),
            inv_factorial: std::array::from_fn(|n| {
                fact *= n.max(1) as f64;
                Dd::ONE / Dd::from(fact)
            }),
        }
    })
}

/// `exp(r) − 1` for `|r| ≤ ln2/128`: Horner in double-double on the terms
/// `r … r⁵/5!`, the terms from `r⁶/6!` (below 2⁻⁴⁷ of the result) to
/// `r¹²/12!` in `f64`.
fn expm1_small(r: Dd, inv_factorial: &[Dd; 6]) -> Dd {
    let x = r.hi;
    // r⁶/6! … r¹²/12!: the next term is below 2⁻¹¹⁰ of the result.
    let tail = x
        * (1.0 / 720.0
            + x * (1.0 / 5040.0
                + x * (1.0 / 40_320.0
                    + x * (1.0 / 362_880.0 + x * (1.0 / 3_628_800.0 + x * (1.0 / 39_916_800.0 + x / 479_001_600.0))))));
    let mut p = inv_factorial[5] + Dd::from(tail);
    for f in inv_factorial[1..5].iter().rev() {
        p = *f + r * p;
    }
    r * p
}

/// 1/3 and 1/5 in double-double.
fn third() -> Dd {
    Dd::new(1.0 / 3.0, 1.850_371_707_708_594_3e-17)
}
fn fifth() -> Dd {
    Dd::new(0.2, -1.110_223_024_625_156_6e-17)
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

    /// The table's logarithm agrees with the Newton step's to 2⁻⁹⁸
    /// relative across the range: subnormals, every table interval near
    /// its edges, values near 1 (where the result is small), huge values.
    #[test]
    fn table_ln_equals_newton_ln() {
        let mut xs = vec![5e-324, 1e-310, f64::MIN_POSITIVE, 1e-300, 1e-5, 0.5, 0.999_999_999, 1.0, 1.000_000_001];
        xs.extend([1.5, 2.0, 3.0, 10.0, 1234.56, 2.5e6, 1e100, f64::MAX]);
        for i in 0..LN_STEPS {
            let (lo, w) = (0.75 + 0.75 * i as f64 / LN_STEPS as f64, 0.75 / LN_STEPS as f64);
            xs.extend([lo, lo + 1e-12, lo + 0.5 * w, lo + w - 1e-12, 2.0 * lo, 2.0 * (lo + w) - 1e-12]);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            x = x.rotate_left(13).wrapping_mul(0x2545_F491_4F6C_DD1D);
            xs.push(f64::from_bits((x >> 2) & 0x7fef_ffff_ffff_ffff).max(5e-324));
        }
        for &v in &xs {
            for lo in [0.0, v * 1e-17, -v * 3e-17] {
                let d = Dd::new(v, lo);
                // (The Newton step's product with exp(−x₀) overflows for
                // |ln x| past ~690: the reference scales x by 2ᵏ first.)
                let k = if v < 1e-200 {
                    700
                } else if v > 1e200 {
                    -700
                } else {
                    0
                };
                let f = 2f64.powi(k / 2);
                let b = Dd::new(v * f * f, lo * f * f).ln_newton() - Dd::from(f64::from(k)) * LN_2;
                let a = d.ln();
                let err = (a - b).to_f64().abs();
                let scale = b.to_f64().abs().max(1e-300);
                // The reference's own error is ~2⁻¹⁰⁴ absolute (its final
                // `− 1` cancels), which near 1 is the larger bound.
                assert!(err <= (2f64.powi(-98) * scale).max(2f64.powi(-102)), "ln({v} + {lo}): {a:?} vs {b:?}");
            }
        }
        assert_eq!(Dd::ONE.ln(), Dd::ZERO, "ln 1 is exactly 0");
        // Near 1, relative accuracy: ln(1 ± t) = ±t − t²/2 ± t³/3 − t⁴/4 for
        // t = 2⁻³⁰ (the next term is below 2⁻¹⁵⁰ of the result).
        for sign in [1.0, -1.0] {
            let t = Dd::from(sign * 2f64.powi(-30));
            let want = t - t * t / Dd::from(2.0) + t * t * t / Dd::from(3.0) - t * t * t * t / Dd::from(4.0);
            let got = (Dd::ONE + t).ln();
            assert!((got - want).to_f64().abs() <= 2f64.powi(-100) * want.to_f64().abs(), "{got:?} vs {want:?}");
        }
        assert!(Dd::from(0.0).ln().hi == f64::NEG_INFINITY && Dd::from(-1.0).ln().hi.is_nan());
        assert!(Dd::from(f64::INFINITY).ln().hi == f64::INFINITY && Dd::from(f64::NAN).ln().hi.is_nan());
    }

    /// The table's exponential agrees with the Taylor series to 2⁻¹⁰⁰ on
    /// `[−1, 1]` (every table step and its midpoints, random points); beyond,
    /// it inverts the logarithm and `exp(x)·exp(−x) = 1`, from near the
    /// underflow to the overflow threshold.
    #[test]
    fn table_exp_is_accurate() {
        let step = LN_2.hi / 64.0;
        let mut small = vec![-1.0, -1e-10, 1e-300, 1e-10, 0.5, 1.0];
        for j in -92..93 {
            small.extend([j as f64 * step, (j as f64 + 0.5) * step, (j as f64 + 0.49) * step]);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x = x.rotate_left(13).wrapping_mul(0x2545_F491_4F6C_DD1D);
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        small.extend((0..1000).map(|_| next() * 2.0 - 1.0));
        small.retain(|v| v.abs() <= 1.0);
        for &v in &small {
            for lo in [0.0, v * 1e-17] {
                let d = Dd::new(v, lo);
                let (a, b) = (d.exp(), d.exp_taylor());
                assert!((a - b).to_f64().abs() <= 2f64.powi(-100) * b.to_f64(), "exp({v} + {lo}): {a:?} vs {b:?}");
            }
        }
        // Beyond ±650 a result's low word (or, past −708, its high word)
        // is subnormal and keeps fewer bits: there only `hi` is compared.
        let large: Vec<f64> = [-650.0, -300.0, -20.0, 20.0, 300.0, 650.0, 709.7]
            .into_iter()
            .chain((0..1000).map(|_| next() * 1300.0 - 650.0))
            .collect();
        for &v in &large {
            let d = Dd::from(v);
            let back = d.exp().ln() - d;
            assert!(back.to_f64().abs() <= 2f64.powi(-98) * v.abs().max(1.0), "ln(exp({v})): {back:?}");
            if v.abs() <= 650.0 {
                let one = d.exp() * (-d).exp() - Dd::ONE;
                assert!(one.to_f64().abs() <= 2f64.powi(-97), "exp({v})·exp(−{v}) − 1 = {one:?}");
            }
        }
        for v in [-745.0, -740.0, -720.0, -708.0, -700.0] {
            let (got, want) = (Dd::from(v).exp().hi, v.exp());
            assert!(
                (got - want).abs() <= 2.0 * f64::EPSILON * want.max(f64::MIN_POSITIVE),
                "exp({v}): {got} vs {want}"
            );
        }
        assert_eq!(Dd::ZERO.exp(), Dd::ONE);
        assert!(Dd::from(f64::NAN).exp().hi.is_nan() && Dd::from(800.0).exp().hi == f64::INFINITY);
        assert_eq!(Dd::from(-800.0).exp(), Dd::ZERO);
        assert!(Dd::from(709.7).exp().hi.is_finite(), "exp(709.7) = 1.65e308 is finite");
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

    /// The ladder without its idle steps (`1 · b`, the square past the
    /// last bit) gives the bits of the full one: Filip's powers are
    /// unchanged by it.
    #[test]
    fn powi_is_the_full_binary_ladder() {
        let full = |x: Dd, n: u32| {
            let (mut result, mut base, mut k) = (Dd::ONE, x, n);
            while k > 0 {
                if k & 1 == 1 {
                    result = result * base;
                }
                base = base * base;
                k >>= 1;
            }
            result
        };
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let hi = f64::from_bits(0x3fe0_0000_0000_0000 | (state >> 12)) * if state & 1 == 1 { -3.0 } else { 7.0 };
            let x = Dd::from(hi) + Dd::from(hi * 1e-17);
            for n in 0..=12 {
                let (a, b) = (x.powi(n), full(x, n));
                assert_eq!((a.hi.to_bits(), a.lo.to_bits()), (b.hi.to_bits(), b.lo.to_bits()), "{x:?}^{n}");
            }
        }
    }
}
