//! The raw sums of a run of consecutive blocks, centered once.
//!
//! A work unit's chunks each come with their raw sums (count, `Σw`, `Σz`,
//! `Σzzᵀ`, non-zero counts). Centering each and merging it by Chan, Golub
//! & LeVeque's update costs ~3m² double-double operations per chunk — for a
//! factor of ~200 levels (`C(neighborhood)`) more than reading the chunk.
//! [`RawSums`] adds a run of chunks' raw sums key by key instead (skipping
//! the exact zeros that make most of a factor model's entries: a factor's
//! cells never meet on a row) and centers them once per run.
//!
//! A run holds one kind of block:
//!
//! - **exact blocks** ([`RawMoments::exact`]: whole numbers, short binary
//!   fractions) are added as they are, and the addition is exact, not
//!   merely accurate: an exact block's sums are integers in units of
//!   2^-(qa+qb) below 2⁵³ of them
//!   ([`DyadicProfile::exact_dot`](super::dyadic::DyadicProfile::exact_dot)),
//!   so [`MAX_BLOCKS`] of them stay below 2⁶¹ units, where every step of the
//!   double-double addition is an exact floating-point operation: the run
//!   gives the very bits of one block over all its rows;
//! - **other blocks** (real values: decimals, slices, compensated sums)
//!   are added in double-double *about a shift*: a column whose mean
//!   exceeds its spread in the run's first block (`μ² > σ²`) is summed as
//!   `z − c`, `c` that mean rounded to a double — the "shifted data"
//!   algorithm of Chan, Golub & LeVeque (1983), "Algorithms for computing
//!   the sample variance: analysis and recommendations", Amer. Statist.
//!   37(3), 242–247, §3. Raw sums about zero would lose `log₂(μ²/σ²)` bits
//!   of the run's ~8 bits of accumulated rounding to the centering, where a
//!   merge per chunk loses them on one chunk's rounding only; about the
//!   shift, the accumulated rounding is relative to the shifted sums (of
//!   size `σ²`), and the cancellation happens once per block, in the shift
//!   itself (`S2 − c S1ᵀ − S1' cᵀ`, relative error 2⁻¹⁰⁶ of the raw square,
//!   as a chunk's own centering has). A column whose mean is below its
//!   spread (a factor's cell of a level on fewer than half the rows) gains
//!   less than a bit from a shift and is not shifted, so the shifts cost
//!   `O(shifted columns × m)` a block.

use super::columns::RawMoments;
use super::{add_keys, grow_square, SufficientStats};
use crate::dd::Dd;
use crate::level::ColumnKey;
use std::collections::HashMap;

/// Blocks one [`RawSums`] adds before it must be centered.
pub const MAX_BLOCKS: usize = 256;

/// Raw sums of consecutive blocks of one kind (exact or not), added key by
/// key in double-double, an inexact run's about per-column shifts, and
/// centered into a [`SufficientStats`] by [`take`](Self::take). Invariant:
/// `s1`, `nonzero`, `shift` have one entry per key, `s2` is `keys²`
/// row-major and symmetric; `shift` is all zero in an exact run.
#[derive(Clone, Debug, Default)]
pub struct RawSums {
    keys: Vec<ColumnKey>,
    index: HashMap<ColumnKey, usize>,
    blocks: usize,
    nobs: u64,
    /// Whether the run's blocks are exact (meaningless while empty).
    exact: bool,
    sum_w: Dd,
    /// `Σ w (z − c)` per key.
    s1: Vec<Dd>,
    /// `Σ w (z − c)(z' − c')` per pair of keys.
    s2: Vec<Dd>,
    nonzero: Vec<u64>,
    /// Per key, the shift `c` (zero: none; a key first met after the run's
    /// first block is not shifted).
    shift: Vec<f64>,
    /// The keys of the last block added and their positions.
    last_keys: Vec<ColumnKey>,
    last_map: Vec<usize>,
}

impl RawSums {
    pub fn is_empty(&self) -> bool {
        self.nobs == 0
    }

    /// Whether a block with these sums may join the run: there is room,
    /// and it is of the run's kind (exact or not).
    pub fn accepts(&self, raw: &RawMoments) -> bool {
        self.blocks < MAX_BLOCKS && (self.nobs == 0 || self.exact == raw.exact)
    }

    /// Add the raw sums of `n` rows (`n > 0`, unweighted) keyed by `keys`.
    pub fn add(&mut self, keys: &[ColumnKey], raw: &RawMoments, n: usize) {
        assert!(self.accepts(raw), "a run adds blocks of one kind, at most MAX_BLOCKS of them");
        let first = self.nobs == 0;
        let (old, m) = add_keys(&mut self.keys, &mut self.index, keys);
        if m != old {
            grow_square(&mut self.s2, old, m);
            self.s1.resize(m, Dd::ZERO);
            self.nonzero.resize(m, 0);
            self.shift.resize(m, 0.0);
        }
        // Chunks of a work unit mostly share their keys: their positions are
        // looked up (hashing every key) only when the keys change.
        if self.last_keys != keys {
            self.last_map = keys.iter().map(|k| self.index[k]).collect();
            self.last_keys = keys.to_vec();
        }
        let k = keys.len();
        if first {
            self.exact = raw.exact;
            if !raw.exact {
                for (a, &i) in self.last_map.iter().enumerate() {
                    self.shift[i] = shift_of(raw, a);
                }
            }
        }
        let map = &self.last_map;
        let c: Vec<f64> = map.iter().map(|&i| self.shift[i]).collect();
        // `S1' = S1 − W c`; a pair's `S2' = S2 − c_a S1_b − S1'_a c_b`, taken
        // for `a ≤ b` so that both triangles get the same bits.
        let s1: Vec<Dd> =
            (0..k).map(|a| if c[a] == 0.0 { raw.s1[a] } else { raw.s1[a] - raw.sum_w * Dd::from(c[a]) }).collect();
        let pair = |a: usize, b: usize| {
            let (a, b) = (a.min(b), a.max(b));
            let v = raw.s2[a * k + b];
            if c[a] == 0.0 && c[b] == 0.0 {
                v
            } else {
                v - Dd::from(c[a]) * raw.s1[b] - s1[a] * Dd::from(c[b])
            }
        };
        for (a, &i) in map.iter().enumerate() {
            self.s1[i] += s1[a];
            self.nonzero[i] += raw.nonzero[a];
            for (b, &j) in map.iter().enumerate().skip(a) {
                // Adding an exact zero changes nothing: a factor's cells
                // are orthogonal, so most of a factor model's entries are.
                let v = pair(a, b);
                if v.hi != 0.0 || v.lo != 0.0 {
                    self.s2[i * m + j] += v;
                    if i != j {
                        self.s2[j * m + i] += v;
                    }
                }
            }
        }
        self.sum_w += raw.sum_w;
        self.nobs += n as u64;
        self.blocks += 1;
    }

    /// The statistics of everything added (the empty state when nothing
    /// was), leaving this empty: the shifted sums centered, the shifts
    /// added back to the means.
    pub fn take(&mut self) -> SufficientStats {
        let sums = std::mem::take(self);
        if sums.nobs == 0 {
            return SufficientStats::new();
        }
        let raw = RawMoments { sum_w: sums.sum_w, s1: sums.s1, s2: sums.s2, nonzero: sums.nonzero, exact: sums.exact };
        let mut stats = SufficientStats::from_raw(&sums.keys, sums.nobs as usize, raw, None);
        for (mean, &c) in stats.mean.iter_mut().zip(&sums.shift) {
            if c != 0.0 {
                *mean += Dd::from(c);
            }
        }
        stats
    }
}

/// Column `a`'s shift from a block's raw sums: its mean, rounded to a
/// double, where the mean exceeds the spread (`μ² > σ²`, that is
/// `2 S1² > W S2`); else zero.
fn shift_of(raw: &RawMoments, a: usize) -> f64 {
    let k = raw.s1.len();
    let (s1, s2, w) = (raw.s1[a].hi, raw.s2[a * k + a].hi, raw.sum_w.hi);
    let mean = (raw.s1[a] / raw.sum_w).hi;
    if mean.is_finite() && 2.0 * s1 * s1 > w * s2 {
        mean
    } else {
        0.0
    }
}
