//! The natural logarithm to about 2⁻⁷⁰ before its one rounding, by a table
//! (Tang's method: Tang (1990), "Table-driven implementation of the
//! logarithm function in IEEE floating-point arithmetic", ACM TOMS 16(4);
//! Muller et al., *Handbook of Floating-Point Arithmetic*, 2nd ed., §10.2).
//!
//! With `x = 2ᵉ·m`, `m ∈ [¾, 3/2)`, and `c` a short approximation of the
//! reciprocal of the middle of `m`'s 1/128th of its binade (exactly 1 on
//! both sides of 1), `ln x = e·ln 2 − ln c + ln(1 + r)` where
//! `r = m·c − 1` is computed exactly (`c` has at most 12 significant bits,
//! `m` is cut into a 41-bit head and a short tail, so both products are
//! exact) and `|r| < 2⁻⁸·⁷` (2⁻⁸ where `c = 1`). `ln(1 + r)` is its Taylor
//! series to `r⁹` (the first term left out is below 2⁻⁸⁰, or 2⁻⁷⁵ of `r`), with `r²/2`
//! exact (`two_prod`) and the big terms added error-free (`two_sum`), so
//! the unrounded `hi + lo` is within ~2⁻⁷⁰ of `ln x`, relative, also near
//! `x = 1` (where `e = 0`, `c = 1` and the sum is `r − r²/2 + …`).
//! IEEE arithmetic only (`+ − ×`, fused multiply-adds, an exact product;
//! see the parent module): the same bits on every CPU and every
//! instruction set, whatever the compiler vectorises.

use super::prod_err;
use crate::dd::{fast_two_sum, two_sum, Dd, LN_2};
use std::sync::OnceLock;

/// Intervals of `[¾, 3/2)` in the table: 128 of `[¾, 1)`, 128 of `[1, 3/2)`
/// (the top 8 bits of `m`'s bits above ¾'s: equal widths in each binade).
const STEPS: usize = 256;

/// The bits of ¾: `bits(x) − bits(¾)` has `e` above bit 52 and the
/// interval's index in bits 44–51 when `m ∈ [¾, 3/2)`.
const OFF: u64 = 0x3fe8_0000_0000_0000;

/// `1.5·2⁵²`: a whole number `k` with `|k| < 2⁵¹` is `bits(MAGIC) + k`'s
/// double minus `MAGIC` (an exact integer conversion, in every build).
const MAGIC: f64 = 6_755_399_441_055_744.0;

/// Table entry `i`: `−ln c` as `hi + lo`, and `c` (a multiple of 2⁻¹¹ with
/// at most 12 significant bits: 2048·c < 4096) kept in `lo`'s 12 lowest
/// bits, so that two loads (gathers, in the vector builds) fetch all three
/// — `lo` keeps 40 bits, ~2⁻⁹³ of `ln c`.
#[derive(Clone, Copy, Default)]
pub(super) struct Entry {
    neg_ln_c_hi: f64,
    lo_and_c: u64,
}

/// The table and `ln 2` cut for exact products `e·ln2_hi` (`|e| < 2¹¹`).
pub(super) struct LogTable {
    entries: [Entry; STEPS],
    ln2_hi: f64,
    ln2_lo: f64,
}

pub(super) fn table() -> &'static LogTable {
    static TABLE: OnceLock<LogTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let entries = std::array::from_fn(|i| {
            let (lo, hi) = interval(i);
            // c = 1 on both sides of 1, so that no cancellation loses
            // digits of ln x near x = 1 (there r = m − 1, |r| < 2⁻⁸).
            let c = if lo == 1.0 || hi == 1.0 { 1.0 } else { (2048.0 / (0.5 * (lo + hi))).round() / 2048.0 };
            let neg = -Dd::from(c).ln();
            let lo_bits = neg.lo.to_bits() & !0xfff;
            Entry { neg_ln_c_hi: neg.hi, lo_and_c: lo_bits | (c * 2048.0) as u64 }
        });
        // 41 significant bits: e·ln2_hi is exact for |e| < 2¹².
        let ln2_hi = f64::from_bits(LN_2.hi.to_bits() & !0xfff);
        let ln2_lo = (LN_2 - Dd::from(ln2_hi)).hi;
        LogTable { entries, ln2_hi, ln2_lo }
    })
}

/// The values of `m` in interval `i`: `[lo, hi)`.
fn interval(i: usize) -> (f64, f64) {
    let at = |i: u64| f64::from_bits(OFF + (i << 44));
    (at(i as u64), at(i as u64 + 1))
}

/// Scale a subnormal `x` into the normal range (by 2⁵⁴), without a branch.
#[inline(always)]
fn normalised(x: f64) -> (f64, bool) {
    let sub = x < f64::MIN_POSITIVE;
    (if sub { x * 18_014_398_509_481_984.0 } else { x }, sub)
}

impl LogTable {
    /// The entry of a positive, finite `x`'s interval.
    #[inline(always)]
    pub(super) fn entry(&self, x: f64) -> Entry {
        let tmp = normalised(x).0.to_bits().wrapping_sub(OFF);
        self.entries[((tmp >> 44) & 0xff) as usize]
    }
}

/// `ln x` as an unrounded `hi + lo` (see the module), for a positive,
/// finite `x` (subnormals included), with `en = t.entry(x)`. Other inputs
/// give garbage: the callers select their special values. Integer steps only where a vector build has them
/// (no conversion between `f64` and 64-bit integers and no 64-bit
/// arithmetic shift, which AVX2 lacks).
#[inline(always)]
pub(super) fn ln_parts<const FMA: bool>(t: &LogTable, x: f64, en: Entry) -> (f64, f64) {
    let (x, sub) = normalised(x);
    // x = 2ᵏ·m, m ∈ [¾, 3/2).
    let tmp = x.to_bits().wrapping_sub(OFF);
    let m = f64::from_bits(x.to_bits().wrapping_sub(tmp & (0xfff << 52)));
    // k = tmp's top 12 bits as a signed number, by logical steps only.
    let k = ((tmp >> 52) ^ 0x800).wrapping_sub(0x800);
    let e = f64::from_bits(MAGIC.to_bits().wrapping_add(k)) - MAGIC - if sub { 54.0 } else { 0.0 };
    let c = (f64::from_bits(MAGIC.to_bits() + (en.lo_and_c & 0xfff)) - MAGIC) * (1.0 / 2048.0);
    let neg_ln_c_lo = f64::from_bits(en.lo_and_c & !0xfff);
    // r = m·c − 1 exactly: c has ≤ 12 bits, m's head 41, its tail ≤ 12.
    let m_head = f64::from_bits(m.to_bits() & !0xfff);
    let a = m_head * c - 1.0;
    let b = (m - m_head) * c;
    let (rh, rl) = two_sum(a, b);
    // −r²/2 exactly, and the cross term.
    let q = rh * rh;
    let qe = prod_err::<FMA>(rh, rh, q);
    // r³/3 − r⁴/4 + … + r⁹/9 by Horner with fused steps (every build
    // fuses them: `mul_add` is IEEE's fma, in hardware or in libm).
    let mut p: f64 = 1.0 / 9.0;
    for c in [-0.125, 1.0 / 7.0, -1.0 / 6.0, 0.2, -0.25, 1.0 / 3.0] {
        p = p.mul_add(rh, c);
    }
    let tail = q * rh * p;
    // |e·ln2_hi| ≥ |ln c| unless e = 0, and |s2| ≥ 2⁻⁹ ≫ r²/2 unless
    // s2 = rh (c = 1): the fast sums are exact.
    let (s1, e1) = fast_two_sum(e * t.ln2_hi, en.neg_ln_c_hi);
    let (s2, e2) = two_sum(s1, rh);
    let (s3, e3) = fast_two_sum(s2, -0.5 * q);
    // rl's terms: r − r²/2 + r³/3 with r = rh + rl, to first order.
    let rl_terms = rl * ((1.0 - rh) + q);
    let lo = e1 + e2 + e3 + (e * t.ln2_lo + neg_ln_c_lo) + (rl_terms - 0.5 * qe + tail);
    fast_two_sum(s3, lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_keeps_r_small_and_products_exact() {
        let t = table();
        for (i, en) in t.entries.iter().enumerate() {
            let c = (en.lo_and_c & 0xfff) as f64 / 2048.0;
            // c has at most 12 significant bits.
            assert_eq!(c.to_bits() & ((1u64 << 41) - 1), 0, "entry {i}: {c}");
            let (lo, hi) = interval(i);
            let bound = if c == 1.0 { 2f64.powi(-8) } else { 2f64.powf(-8.7) };
            for m in [lo, f64::from_bits(hi.to_bits() - 1)] {
                assert_eq!(((m.to_bits().wrapping_sub(OFF)) >> 44) & 0xff, i as u64);
                let r = (m * c - 1.0).abs();
                assert!(r < bound, "entry {i}: |r| = {r}");
            }
        }
        assert_eq!(interval(0).0, 0.75);
        assert_eq!(interval(STEPS - 1).1, 1.5);
    }

    #[test]
    fn ln_parts_agree_with_the_double_double_log() {
        let t = table();
        let mut x: f64 = 1e-310;
        while x < 1e300 {
            for y in [x, x * (1.0 + 1e-9), 1.0 + x.min(1e-3), 1.0 - x.min(1e-3)] {
                let (h, l) = ln_parts::<false>(t, y, t.entry(y));
                let exact = Dd::from(y).ln();
                let err = ((Dd::from(h) + Dd::from(l)) - exact).to_f64().abs();
                assert!(err <= exact.hi.abs() * 2f64.powi(-68), "ln {y:e}: {h:e} + {l:e} vs {exact:?}");
            }
            x *= 1.37;
        }
    }
}
