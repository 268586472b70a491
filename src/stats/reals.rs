//! Real columns on the exact path: read as the decimals they were written
//! as where they are, else split into binary slices ([`super::slices`]).
//! Whole numbers and halves too long for the exact kernels as they are
//! ([`too_long`]) are read the same way.
//!
//! Prices in cents and coordinates with six decimals are decimals: each
//! value is the double nearest to `k·10⁻ᵈ` for an integer `k`. No binary
//! fraction holds them, so a slice split takes three slices of 19 bits per
//! value, and the gram nine products per pair of such columns. Read as
//! their integers `k` less the chunk's middle integer `mid`, they are one
//! column of short integers (a chunk's rents in cents span ~2²⁰, its
//! latitudes ~2¹⁹ millionths) whose sums and products are exact in plain
//! arithmetic: one product per pair. The column's moments follow from
//! those of `y = k − mid` by the affine map `x = 10⁻ᵈ (y + mid)`
//! ([`unshift`]), in double-double.
//!
//! What this reads is the decimal value `k·10⁻ᵈ`, not its binary
//! neighbour: within half a unit in the last place of the double (2⁻⁵³
//! relative), which is the rounding the writer made when it stored the
//! decimal (a CSV holds the decimals themselves, and NIST's certified
//! values are those of the decimal data). A chunk's `d` is the largest of
//! its kept values' [`places_of`] (at most [`MAX_PLACES`]); a chunk is read
//! as decimals only when every kept value is one at that `d` and the
//! shifted integers meet the exactness bound of [`super::dyadic`] (else it
//! is sliced, as before). Both depend on the chunk's kept values only —
//! not on how rows are grouped, nor on the instruction set (plain IEEE
//! operations: a multiplication, an addition that rounds to an integer, a
//! division that checks) — so the in-place and general paths read a chunk
//! alike, to the bit.

use super::columns::RawMoments;
use super::dyadic::DyadicProfile;
use super::portable::scans::{DecimalInts, ScanKernels, Split, DECIMAL_LIMIT, ROUND_TO_INTEGER};
use super::slices::{SlicePlan, MAX_SLICES};
use crate::bits::is_kept;
use crate::dd::Dd;

/// Most decimal places a column is read with.
pub const MAX_PLACES: u32 = 12;

/// `y` rounded to an integer (exact below [`DECIMAL_LIMIT`]), as the
/// kernels round.
fn round_to_integer(y: f64) -> f64 {
    (y + ROUND_TO_INTEGER) - ROUND_TO_INTEGER
}

/// `10^d`, exact for `d ≤ 22`.
fn pow10(d: u32) -> f64 {
    debug_assert!(d <= 22);
    10f64.powi(d as i32)
}

/// The fewest places `d ≤ MAX_PLACES` at which `x` is the double nearest
/// to `k·10⁻ᵈ` for an integer `|k| < 2⁵¹`; `None` for NaN, ±∞ and values
/// that are no short decimal (a ratio, a logarithm).
pub fn places_of(x: f64) -> Option<u32> {
    for d in 0..=MAX_PLACES {
        let scale = pow10(d);
        let y = x * scale;
        if y.abs() >= DECIMAL_LIMIT {
            return None;
        }
        if round_to_integer(y) / scale == x {
            return Some(d);
        }
    }
    None
}

/// What [`kernel_columns`] may read a column as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// As decimals, where its values are (an absorbed fit keeps the
    /// doubles: `false`); else in slices only.
    pub decimals: bool,
    /// Binary fractions too: a column [`too_long`] for the exact kernels
    /// as it is.
    pub binary: bool,
}

/// How a chunk read a column as decimals: `x = 10^-places · (y + offset)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decimal {
    pub places: u32,
    /// An integer (as `f64`): the first kept value's `k`, or the middle of
    /// the chunk's `k` where that leaves the shifted integers too long.
    pub offset: f64,
}

/// A real column's kernel columns, as written into `out`: the shifted
/// integers of a decimal column (one column) or the column's slices.
pub struct RealColumn {
    /// Per kernel column.
    pub profiles: Vec<DyadicProfile>,
    /// Per kernel column: its exact sum over the kept rows.
    pub sums: Vec<f64>,
    /// How the kernel column maps back, for a decimal column.
    pub decimal: Option<Decimal>,
}

/// The kept values of `col` (`kept` rows; their magnitude `max_abs`) as
/// columns of the exact kernels, into `out` (`MAX_SLICES · stride`, with
/// `stride` at least `col.len()` rounded up to 8; kernel column `s` at
/// `s·stride`): as decimals where the module's conditions hold (and
/// `reading.decimals` allows), else as slices. `None` where neither is
/// exact (a span of binades past [`MAX_SLICES`] slices, NaN or ±∞) or for
/// binary fractions (the general path takes them as they are, unsliced:
/// 0.25 is a binary fraction before it is a decimal) unless
/// `reading.binary`: a column of whole numbers or halves too long for the
/// exact kernels as it is ([`too_long`]) is read as its integers less an
/// offset, or sliced.
pub fn kernel_columns<K: ScanKernels>(
    k: K,
    col: &[f64],
    mask: Option<&[u8]>,
    kept: usize,
    max_abs: f64,
    reading: Reading,
    out: &mut [f64],
) -> Option<RealColumn> {
    let Reading { decimals, binary } = reading;
    let stride = out.len() / MAX_SLICES;
    let profile = |max_abs: f64| DyadicProfile { q: 0, max_abs };
    let fits = |max_abs: f64| {
        let p = profile(max_abs);
        p.exact_sum(kept) && DyadicProfile::exact_dot(&p, &p, kept)
    };
    if let Some((decimal, ints)) = decimals.then(|| read_decimals(k, col, mask, fits, &mut out[..stride])).flatten() {
        if ints.dyadic && !binary {
            return None;
        }
        return Some(RealColumn {
            profiles: vec![profile(ints.max_abs)],
            sums: vec![ints.sum],
            decimal: Some(decimal),
        });
    }
    let plan = SlicePlan::new(max_abs, kept)?;
    let plan = if binary { plan.binary_too() } else { plan };
    let mut sums = [0.0; MAX_SLICES];
    let Split::Slices(count) = k.split_masked(col, mask, &plan, out, stride, &mut sums) else {
        return None;
    };
    Some(RealColumn {
        profiles: (0..count).map(|s| plan.profile(s)).collect(),
        sums: sums[..count].to_vec(),
        decimal: None,
    })
}

/// Whether a column of whole numbers or halves (`profile.q ≤ 1`) over
/// `rows` rows is too long for the exact kernels as it is — its sum or
/// the sum of its squares past the bound of [`super::dyadic`] (ids,
/// timestamps, prices in cents as integers, `I(sqft ** 2)`) — and is read
/// instead as a real column is ([`kernel_columns`] with `binary`): as its
/// integers less the chunk's first or middle one, else in slices. Both
/// paths ask this of the same kept values, so they read such a column
/// alike.
pub fn too_long(profile: &DyadicProfile, rows: usize) -> bool {
    profile.q <= 1 && !(profile.exact_sum(rows) && DyadicProfile::exact_dot(profile, profile, rows))
}

/// The kept values as decimals of `d` places, `d` the largest of their
/// [`places_of`]: found by reading at the first kept value's places and,
/// where a group of eight rows refuses, again at that group's largest —
/// each attempt's `d` is some value's places, so the attempts end at the
/// chunk's largest whatever the grouping. The integers are shifted by the
/// first kept value's; where that leaves some longer than `fits` allows,
/// they are read again shifted by the middle of their range (for a column
/// whose first value is one of its extremes). `None` also where even that
/// does not fit.
fn read_decimals<K: ScanKernels>(
    k: K,
    col: &[f64],
    mask: Option<&[u8]>,
    fits: impl Fn(f64) -> bool,
    out: &mut [f64],
) -> Option<(Decimal, DecimalInts)> {
    let n = col.len();
    let first = (0..n).find(|&r| is_kept(mask, r))?;
    let mut places = places_of(col[first])?;
    let (offset, ints) = loop {
        let scale = pow10(places);
        let offset = round_to_integer(col[first] * scale);
        match k.decimal_masked(col, mask, scale, offset, out) {
            Ok(ints) => break (offset, ints),
            Err(c) => {
                let mut need = places;
                for r in (8 * c..(8 * c + 8).min(n)).filter(|&r| is_kept(mask, r)) {
                    need = need.max(places_of(col[r])?);
                }
                if need <= places {
                    // A value with fewer places whose integer at `places`
                    // passes 2⁵¹: no `d` reads them all.
                    return None;
                }
                places = need;
            }
        }
    };
    if fits(ints.max_abs) {
        return Some((Decimal { places, offset }, ints));
    }
    let kept = (0..n).filter(|&r| is_kept(mask, r)).map(|r| out[r]);
    let (lo, hi) = kept.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
    // Both integers below 2⁵¹ in magnitude: the sum, the half and the
    // rounding to an integer are exact.
    let offset = offset + round_to_integer((lo + hi) * 0.5);
    let ints = k.decimal_masked(col, mask, pow10(places), offset, out).ok()?;
    fits(ints.max_abs).then_some((Decimal { places, offset }, ints))
}

/// The raw moments of the source columns from those of their kernel
/// columns (after [`super::slices::fold`]: one column each), where
/// `decimals[i]` says column `i` was read as decimals: with `x = s (y + c)`,
/// `Σ x = s (Σ y + c n)` and `Σ x x' = s s' (Σ y y' + c' Σ y + c Σ y' + c c' n)`,
/// in double-double (`s = 10⁻ᵈ` to its unit); every pair `(i, j)` the same
/// bits as `(j, i)`.
pub fn unshift(mut raw: RawMoments, decimals: &[Option<Decimal>]) -> RawMoments {
    if decimals.iter().all(Option::is_none) {
        return raw;
    }
    let m = raw.s1.len();
    assert_eq!(decimals.len(), m);
    let n = raw.sum_w;
    let maps: Vec<Option<(Dd, Dd)>> =
        decimals.iter().map(|d| d.map(|d| (Dd::div_f64s(1.0, pow10(d.places)), Dd::from(d.offset)))).collect();
    // In place: pair (i, j ≥ i) reads only its own raw sum and the column
    // sums, which change last.
    for i in 0..m {
        for j in i..m {
            let v = match (maps[i], maps[j]) {
                (None, None) => continue,
                (Some((s, c)), None) => s * (raw.s2[i * m + j] + c * raw.s1[j]),
                (None, Some((s, c))) => s * (raw.s2[i * m + j] + c * raw.s1[i]),
                (Some((si, ci)), Some((sj, cj))) => {
                    (si * sj) * (raw.s2[i * m + j] + cj * raw.s1[i] + ci * raw.s1[j] + ci * cj * n)
                }
            };
            raw.s2[i * m + j] = v;
            raw.s2[j * m + i] = v;
        }
    }
    for (y, map) in raw.s1.iter_mut().zip(&maps) {
        if let Some((s, c)) = map {
            *y = *s * (*y + *c * n);
        }
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::portable::Portable;

    const DECIMALS: Reading = Reading { decimals: true, binary: false };

    #[test]
    fn places_are_the_fewest_that_read_the_value_back() {
        assert_eq!(places_of(0.0), Some(0));
        assert_eq!(places_of(-0.0), Some(0));
        assert_eq!(places_of(3.0), Some(0));
        assert_eq!(places_of(1234.5), Some(1));
        assert_eq!(places_of(1234.56), Some(2));
        assert_eq!(places_of(0.1 + 0.2), None, "0.30000000000000004 has 17 places");
        assert_eq!(places_of(40.712345), Some(6));
        assert_eq!(places_of(-73.986511), Some(6));
        assert_eq!(places_of(1.0 / 3.0), None);
        assert_eq!(places_of(2f64.ln()), None);
        assert_eq!(places_of(f64::NAN), None);
        assert_eq!(places_of(f64::INFINITY), None);
        assert_eq!(places_of(1e-310), None, "subnormal");
        assert_eq!(places_of(1e20), None, "past 2⁵¹");
        assert_eq!(places_of(1e-12), Some(12));
    }

    /// `kernel_columns` on the portable kernels, `n` rows, `keep` as a row
    /// mask; its kernel columns and the stride.
    fn read(col: &[f64], keep: Option<&[bool]>) -> (Option<RealColumn>, Vec<f64>, usize) {
        let n = col.len();
        let stride = n.div_ceil(8) * 8;
        let mask: Option<Vec<u8>> = keep.map(|k| {
            k.chunks(8).map(|c| c.iter().enumerate().fold(0u8, |m, (b, &on)| m | u8::from(on) << b)).collect()
        });
        let kept = keep.map_or(n, |k| k.iter().filter(|&&on| on).count());
        let max_abs = (0..n).filter(|&r| keep.is_none_or(|k| k[r])).fold(0.0f64, |m, r| m.max(col[r].abs()));
        let mut out = vec![f64::NAN; MAX_SLICES * stride];
        let real = kernel_columns(Portable, col, mask.as_deref(), kept, max_abs, DECIMALS, &mut out);
        (real, out, stride)
    }

    #[test]
    fn coordinates_are_read_as_their_millionths() {
        // Six places at most (a trailing zero gives five), a dropped row
        // holding anything.
        let col = [40.712345, 40.70581, f64::NAN, 40.9, 40.521733, -0.0];
        let keep = [true, true, false, true, true, false];
        let (real, out, _) = read(&col, Some(&keep));
        let real = real.expect("read");
        let d = real.decimal.expect("as decimals");
        assert_eq!(d, Decimal { places: 6, offset: 40_712_345.0 });
        assert_eq!(&out[..8], &[0.0, -6535.0, 0.0, 187_655.0, -190_612.0, 0.0, 0.0, 0.0]);
        assert_eq!(real.sums, vec![-9492.0]);
        assert_eq!(real.profiles.iter().map(|p| (p.q, p.max_abs)).collect::<Vec<_>>(), vec![(0, 190_612.0)]);
        for r in [0, 1, 3, 4] {
            assert_eq!((out[r] + d.offset) / 1e6, col[r], "row {r}");
        }
    }

    #[test]
    fn a_first_value_at_an_extreme_is_read_again_from_the_middle() {
        // Cents from $10 to $12,000: a span of 1,199,099 cents, too long
        // from the first value over 8,192 rows (1,199,099² · 8,192 >
        // 9·10¹⁵), not from the middle.
        let col: Vec<f64> =
            (0..8192).map(|r| if r % 2 == 0 { 10.0 } else { 12_000.0 } + (r % 100) as f64 / 100.0).collect();
        let (real, out, _) = read(&col, None);
        let d = real.expect("read").decimal.expect("as decimals");
        assert_eq!(d.places, 2);
        assert_eq!(d.offset, ((1000.0 + 1_200_099.0) / 2.0f64).round_ties_even());
        assert!(out[..8192].iter().all(|y| y.abs() <= 600_000.0));
    }

    #[test]
    fn what_is_no_short_decimal_is_sliced_and_binary_fractions_are_declined() {
        let ratios: Vec<f64> = (1..100).map(|r| f64::from(r) / 7.0).collect();
        let (real, _, _) = read(&ratios, None);
        let real = real.expect("sliced");
        assert_eq!((real.decimal, real.profiles.len()), (None, 3));
        // 0.1 + 0.2 is one unit in the last place past 0.3.
        let (real, _, _) = read(&[1.25, 0.1 + 0.2, 7.5], None);
        assert_eq!(real.expect("sliced").decimal, None);
        // Quarters are binary fractions first: the general path takes them.
        assert!(read(&[1.25, 0.5, 7.75], None).0.is_none());
        // A decimal with twelve places beside whole numbers in the millions:
        // no integer reads both.
        let (real, _, _) = read(&[3e9, 1e-12, 5.0], None);
        assert_eq!(real.and_then(|r| r.decimal), None);
    }

    /// The affine map against the moments of the decimal values computed
    /// directly (a column of whole numbers beside, unmapped).
    #[test]
    fn unshift_gives_the_moments_of_the_decimals() {
        let x = [12.34, 5.67, 8.9];
        let (places, offset) = (2, 567.0);
        let y: Vec<f64> = x.iter().map(|&v: &f64| (v * 100.0).round() - offset).collect();
        let z = [3.0, -1.0, 4.0];
        let cols = [y.as_slice(), &z];
        let raw = RawMoments {
            sum_w: Dd::from(3.0),
            s1: cols.iter().map(|c| Dd::from(c.iter().sum::<f64>())).collect(),
            s2: (0..4).map(|e| Dd::from((0..3).map(|r| cols[e / 2][r] * cols[e % 2][r]).sum::<f64>())).collect(),
            nonzero: vec![3, 3],
            exact: false,
        };
        let raw = unshift(raw, &[Some(Decimal { places, offset }), None]);
        // The decimals' sums, exact over 10^2 or 10^4, then divided in
        // double-double.
        let close = |d: Dd, num: f64, den: f64| {
            let want = Dd::from(num) / Dd::from(den);
            ((d - want).hi).abs() <= 1e-28 * want.hi.abs()
        };
        assert!(close(raw.s1[0], 1234.0 + 567.0 + 890.0, 100.0));
        assert!(close(raw.s2[0], 1234.0 * 1234.0 + 567.0 * 567.0 + 890.0 * 890.0, 10_000.0));
        assert!(close(raw.s2[1], 1234.0 * 3.0 - 567.0 + 890.0 * 4.0, 100.0) && raw.s2[1] == raw.s2[2]);
        assert_eq!(raw.s2[3], Dd::from(26.0), "an unmapped pair is left alone");
    }
}
