//! Columns of real values on the exact path: an error-free split into
//! slices of short binary fractions, after Ozaki, Ogita, Oishi & Rump
//! (2012), "Error-free transformations of matrix multiplication by using
//! fast routines of matrix multiplication and its applications", Numer.
//! Algorithms 59(1), 95–118, Algorithm 3 (`Split`).
//!
//! A column of prices in cents or coordinates is not a multiple of any
//! short binary fraction, so [`super::dyadic`]'s exact path does not take
//! it. But every value is the exact sum of a few *slices*:
//!
//! ```text
//! x = t_0 + t_1 + … + t_{S−1},   t_k a multiple of u_k = 2^(top − kβ),
//! |t_0| ≤ 2^β u_0,  |t_k| ≤ 2^(β−1) u_k  (k ≥ 1)
//! ```
//!
//! taken by `t_k = fl(fl(σ_k + r) − σ_k)` with `σ_k = 1.5·2^52·u_k` and
//! `r ← r − t_k` (both operations exact; the rounding of `σ_k + r` is the
//! rounding of `r` to a multiple of `u_k`). β is chosen from the block's row
//! count so that every product of two slices, summed over the block, stays
//! below 2⁵³ of its units ([`super::dyadic::DyadicProfile::exact_dot`]):
//! each slice is then one more column of the exact path — its sums and
//! products with every other column are exact in plain arithmetic, in any
//! order, on every instruction set. A column's sums are the slices' exact
//! sums added in double-double in a fixed order ([`fold`]): not exact any
//! more, but accurate to the double-double unit (2⁻¹⁰⁶ relative to the
//! largest partial sum) — better than the compensated loop's Dot2 bound —
//! and the same bits whichever path (in place or by design block) formed
//! the partial sums.
//!
//! With 8,192-row chunks β = 19: three slices hold 57 bits, so a value
//! whose exponent is within 4 of the column's largest is split exactly by
//! three; a column whose values span more binades takes more slices, up to
//! [`MAX_SLICES`] (95 bits: a span of 42 binades). A column that needs
//! more, or holds NaN or ±∞, is declined (the compensated loop runs).

use super::columns::RawMoments;
use super::dyadic::DyadicProfile;
use crate::dd::Dd;
use std::ops::Range;

/// Most slices a column is split into.
pub const MAX_SLICES: usize = 5;

/// How a block's column is sliced: the unit of slice 0 and the slice
/// width β in bits, both from the column's magnitude and the block's row
/// count only (so that every path slices a column alike).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlicePlan {
    /// `log2 u_0`.
    top: i32,
    /// β.
    width: i32,
    /// Whether a column of binary fractions is split too (a column of
    /// whole numbers or halves too long for the exact kernels as it is:
    /// [`SlicePlan::binary_too`]); else the split leaves it to the exact
    /// path unsliced.
    binary: bool,
}

/// `2^e` for a normal exponent.
fn pow2(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

impl SlicePlan {
    /// The plan for a column whose largest magnitude over `rows` rows is
    /// `max_abs`; `None` when it is zero, NaN or ±∞, subnormal, or so
    /// large or small that some `σ_k` or `u_k` would leave the normal range.
    pub fn new(max_abs: f64, rows: usize) -> Option<SlicePlan> {
        if !(max_abs.is_finite() && max_abs >= f64::MIN_POSITIVE) {
            return None;
        }
        // max_abs ∈ [2^e, 2^(e+1)).
        let e = ((max_abs.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        let width = Self::width(rows);
        let top = e + 1 - width;
        let bottom = top - width * (MAX_SLICES as i32 - 1);
        if e > 900 || bottom < -960 {
            return None;
        }
        Some(SlicePlan { top, width, binary: false })
    }

    /// The same plan, splitting binary fractions too.
    pub fn binary_too(self) -> SlicePlan {
        SlicePlan { binary: true, ..self }
    }

    /// Whether binary fractions are split ([`SlicePlan::binary_too`]).
    pub fn splits_binary(&self) -> bool {
        self.binary
    }

    /// The widest β ≤ 26 whose slice products sum exactly over `rows` rows:
    /// `2^(2β) · rows ≤ 9·10¹⁵` (the bound of `exact_dot`).
    fn width(rows: usize) -> i32 {
        (1..=26).rev().find(|&b| pow2(2 * b) * rows.max(1) as f64 <= 9.0e15).unwrap_or(1)
    }

    /// `σ_k`: adding and subtracting it rounds a value to a multiple of
    /// `u_k` (magnitudes below `2^51 u_k`, which every residual is).
    #[inline(always)]
    pub fn sigma(&self, k: usize) -> f64 {
        1.5 * pow2(52 + self.top - k as i32 * self.width)
    }

    /// Slice `k` as the exact path sees it: multiples of `u_k`, bounded
    /// by `2^β u_k` (slice 0) or `2^(β−1) u_k`.
    pub fn profile(&self, k: usize) -> DyadicProfile {
        let unit = self.top - k as i32 * self.width;
        let bound = if k == 0 { self.width } else { self.width - 1 };
        DyadicProfile { q: -unit, max_abs: pow2(unit + bound) }
    }
}

/// Raw moments over an expanded layout — each column of the block either
/// itself or its slices, as consecutive `groups` — folded into one column
/// per group: a sum over a group's slices, or over the pairs of two
/// groups' slices, is added in double-double from the smallest partial
/// (the largest slice indices) to the largest, every pair `(g, h)` in the
/// same order as `(h, g)`. `nonzero`: each column's non-zero count (the
/// slices' own counts do not give it). The result is not exact.
pub fn fold(raw: &RawMoments, groups: &[Range<usize>], nonzero: &[u64]) -> RawMoments {
    let (m, wide) = (groups.len(), raw.s1.len());
    assert!(groups.last().is_none_or(|g| g.end == wide) && nonzero.len() == m);
    if groups.iter().enumerate().all(|(g, r)| *r == (g..g + 1)) {
        // No column is sliced: each sum is its one partial added to zero,
        // which the loops below would reach pair by pair (a factor of 200
        // levels: 40,000 pairs a chunk).
        let fold = |v: &[Dd]| v.iter().map(|&x| Dd::ZERO + x).collect();
        return RawMoments {
            sum_w: raw.sum_w,
            s1: fold(&raw.s1),
            s2: fold(&raw.s2),
            nonzero: nonzero.to_vec(),
            exact: false,
        };
    }
    let s1: Vec<Dd> = groups.iter().map(|g| g.clone().rev().fold(Dd::ZERO, |a, i| a + raw.s1[i])).collect();
    let mut s2 = vec![Dd::ZERO; m * m];
    for (g, a) in groups.iter().enumerate() {
        for (h, b) in groups.iter().enumerate().skip(g) {
            let mut acc = Dd::ZERO;
            for d in (0..a.len() + b.len() - 1).rev() {
                for i in (0..a.len()).rev() {
                    if let Some(j) = d.checked_sub(i).filter(|&j| j < b.len()) {
                        acc += raw.s2[(a.start + i) * wide + b.start + j];
                    }
                }
            }
            s2[g * m + h] = acc;
            s2[h * m + g] = acc;
        }
    }
    RawMoments { sum_w: raw.sum_w, s1, s2, nonzero: nonzero.to_vec(), exact: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_width_keeps_products_exact() {
        // 8,192-row chunks: β = 19 (2^38 · 2^13 < 9e15 < 2^40 · 2^13).
        assert_eq!(SlicePlan::width(8192), 19);
        assert_eq!(SlicePlan::width(1), 26);
        for rows in [1, 100, 8192, 1 << 20] {
            let plan = SlicePlan::new(12_345.67, rows).unwrap();
            for a in 0..MAX_SLICES {
                for b in 0..MAX_SLICES {
                    assert!(DyadicProfile::exact_dot(&plan.profile(a), &plan.profile(b), rows));
                }
                assert!(plan.profile(a).exact_sum(rows));
            }
        }
    }

    #[test]
    fn plans_refuse_values_outside_the_normal_range() {
        assert_eq!(SlicePlan::new(0.0, 10), None);
        assert_eq!(SlicePlan::new(f64::NAN, 10), None);
        assert_eq!(SlicePlan::new(f64::INFINITY, 10), None);
        assert_eq!(SlicePlan::new(1e-310, 10), None);
        assert_eq!(SlicePlan::new(1e300, 10), None);
        assert!(SlicePlan::new(1e-250, 10).is_some() && SlicePlan::new(1e250, 10).is_some());
    }
}
