//! The exponential to about 2⁻⁶⁰ before its one rounding, by a table
//! (Tang (1989), "Table-driven implementation of the exponential function
//! in IEEE floating-point arithmetic", ACM TOMS 15(2); Muller et al.,
//! *Handbook of Floating-Point Arithmetic*, 2nd ed., §10.2).
//!
//! With `x = (64k + j)·ln2/64 + r`, `|r| ≤ ln2/128 < 2⁻⁷·⁵`:
//! `exp x = 2ᵏ · 2^(j/64) · exp r`, `2^(j/64)` from a 64-entry table in
//! double-double, `exp r − 1` by its Taylor series to `r⁷/7!` (the first
//! term left out is below 2⁻⁷⁰). `n = 64k + j` is rounded by adding and
//! subtracting 1.5·2⁵², `n·ln2_hi/64` is exact (`ln2_hi` has 36 bits) and
//! so is `x − n·ln2_hi/64` (Sterbenz), so `r` is known to 2⁻¹⁰⁰; the one
//! product rounded at full weight, `2^(j/64)·r`, errs by 2⁻⁶⁰·⁵ of the
//! result. The argument may carry a low word (`xh + xl`, as `b·ln a` in a
//! power does), which joins `r`. IEEE arithmetic only (see the parent module).

use crate::dd::{two_sum, Dd, LN_2};
use std::sync::OnceLock;

pub(super) struct ExpTable {
    /// `2^(j/64)` as `hi + lo`.
    pow2: [(f64, f64); 64],
    /// `ln2/64` cut for exact products `n·l1` (`|n| < 2¹⁷`).
    l1: f64,
    l2: f64,
}

pub(super) fn table() -> &'static ExpTable {
    static TABLE: OnceLock<ExpTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let step = Dd::new(LN_2.hi / 64.0, LN_2.lo / 64.0);
        let l1 = f64::from_bits(step.hi.to_bits() & !0x1ffff);
        let l2 = (step - Dd::from(l1)).hi;
        ExpTable {
            pow2: std::array::from_fn(|j| {
                let t = (Dd::from(j as f64) * step).exp();
                (t.hi, t.lo)
            }),
            l1,
            l2,
        }
    })
}

/// Beyond these the result is `+∞` or rounds to `0`; the argument is
/// clamped to them, so that `n` stays small (NaN passes through).
const CLAMP_HIGH: f64 = 710.0;
const CLAMP_LOW: f64 = -746.0;

const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5·2⁵²: rounds to an integer

/// `n + 1100·64` (never negative: `n ≥ −68,900`), from the shifted value's
/// bits — no conversion, which AVX2 lacks for 64-bit integers — and the
/// clamped argument.
#[inline(always)]
fn reduce(xh: f64) -> (f64, u64, f64) {
    let xh = xh.clamp(CLAMP_LOW, CLAMP_HIGH);
    let shifted = xh * (64.0 / std::f64::consts::LN_2) + SHIFT;
    let biased = shifted.to_bits().wrapping_sub(SHIFT.to_bits()).wrapping_add(1100 * 64);
    (xh, biased, shifted - SHIFT)
}

impl ExpTable {
    /// The entry `2^(j/64)` of `exp xh`.
    #[inline(always)]
    pub(super) fn entry(&self, xh: f64) -> (f64, f64) {
        self.pow2[(reduce(xh).1 & 63) as usize]
    }
}

/// `exp(xh + xl)` rounded once to `f64` (with `|xl| ≤ 2⁻⁴⁰·|xh|` or so),
/// `+∞` on overflow, `0` or a subnormal on underflow, NaN for NaN; with
/// `(th, tl) = t.entry(xh)`.
#[inline(always)]
pub(super) fn exp_dd(t: &ExpTable, xh: f64, xl: f64, (th, tl): (f64, f64)) -> f64 {
    let xl = if (CLAMP_LOW..=CLAMP_HIGH).contains(&xh) { xl } else { 0.0 };
    let (xh, biased, n) = reduce(xh);
    // r = rh + rl renormalised: n·l2 reaches 2⁻²⁹, far above rh's ulp.
    let (rh, rl) = two_sum(xh - n * t.l1, xl - n * t.l2);
    // k + 1100, by logical steps (AVX2 has no 64-bit arithmetic shift).
    let kb = biased >> 6;
    // r²/2 + … + r⁷/7! by Horner with fused steps (in every build).
    let mut p: f64 = 1.0 / 5040.0;
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5] {
        p = p.mul_add(rh, c);
    }
    let poly = rl + rh * rl + rh * rh * p;
    let v = th + (tl + tl * (rh + poly) + (th * rh + th * poly));
    // 2ᵏ in two factors, k₁ = ⌊k/2⌋ and k − k₁, each a normal number for
    // k ∈ [−1078, 1024]: their biased exponents k₁ + 1023 and k − k₁ + 1023
    // from kb = k + 1100.
    let e1 = (kb >> 1) + 473;
    let e2 = kb - (kb >> 1) + 473;
    v * f64::from_bits(e1 << 52) * f64::from_bits(e2 << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cuts_are_exact_products() {
        let t = table();
        assert_eq!(t.l1.to_bits() & 0x1ffff, 0);
        assert!((t.l1 + t.l2 - std::f64::consts::LN_2 / 64.0).abs() < 1e-30);
        assert_eq!(t.pow2[0], (1.0, 0.0));
    }

    #[test]
    fn agrees_with_the_double_double_exponential() {
        let t = table();
        let mut x = -745.0;
        while x < 709.7 {
            let got = exp_dd(t, x, 0.0, t.entry(x));
            let want = Dd::from(x).exp();
            let err = ((Dd::from(got) - want).to_f64() / want.hi).abs();
            assert!(err <= 2f64.powi(-53) * 1.01 || want.hi < 1e-300, "exp {x}: {got:e} vs {want:?}");
            x += 0.173;
        }
    }
}
