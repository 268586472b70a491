//! The in-place first pass's kernels in plain Rust: one scan of a column's
//! kept rows (whole numbers?, magnitude, sum, non-zeros), the test for
//! halves, the conversion of an integer column, a column's non-zero bits,
//! the products of 0/1 columns with float columns, per-level sums of a
//! factor of few levels and per-level flag counts.
//!
//! Every sum they form is exact where the first pass uses it (the caller
//! takes a chunk only when the exactness bound of `stats::dyadic` holds,
//! after the scan), so their order of additions cannot show in a result:
//! they are free to sum in whatever order is fastest, and equal the
//! AVX-512 kernels (`x86::avx512`) in value, not by construction. Full
//! groups of eight rows are written as operations on `[f64; 8]`, which the
//! compiler turns into vector instructions (built again with AVX2 and FMA
//! for the avx2 level).

use super::row_kernels::RowKernels;
use crate::bits::row_mask;
use crate::direct_call;
use crate::stats::columns::{assert_level_sums_args, ColumnStats, LevelColumn};
use crate::stats::slices::{SlicePlan, MAX_SLICES};

/// Rows `8c .. 8c + 8` of `col` where bit `l` of `k` is set, zero
/// elsewhere (`k` is clear past `n`, so no row past `n` is read). Eight
/// kept rows are a plain load; other full groups select by an AND with
/// lane masks: no branch per lane, and the result stays in registers.
#[inline(always)]
fn group(col: &[f64], k: u8, c: usize, n: usize) -> [f64; 8] {
    let base = 8 * c;
    if k == 0xff {
        // Nearly every group. Selecting them anyway cost a third of the
        // decimal read (`decimal_masked`) in mask shuffles.
        col[base..base + 8].try_into().expect("8 rows")
    } else if base + 8 <= n {
        let v: [f64; 8] = col[base..base + 8].try_into().expect("8 rows");
        select8(k, v)
    } else {
        std::array::from_fn(|l| if k >> l & 1 == 1 { col[base + l] } else { 0.0 })
    }
}

/// The lanes of `v` whose bit of `k` is set, zero elsewhere.
#[inline(always)]
fn select8(k: u8, v: [f64; 8]) -> [f64; 8] {
    let k = u64::from(k);
    std::array::from_fn(|l| f64::from_bits(v[l].to_bits() & 0u64.wrapping_sub(k >> l & 1)))
}

/// Non-zero bits when `v` is not a whole number, is NaN or ±∞ — or lies
/// past 2⁵² in magnitude, which the exactness bound refuses anyway.
/// `(|v| + 2⁵²) − 2⁵²` is `|v|` rounded to a whole number below 2⁵², so
/// the difference is zero exactly for whole numbers; no rounding
/// instruction is needed (x86-64's baseline has none: `trunc` is a
/// library call there, a tenth of the portable scan's time).
#[inline(always)]
fn fraction_bits(v: f64) -> u64 {
    const TWO52: f64 = 4_503_599_627_370_496.0;
    let a = v.abs();
    (a - ((a + TWO52) - TWO52)).to_bits()
}

/// Accumulates a column's magnitude, sum and non-zero count in four
/// lanes (exact sums where they are used: any order), and the
/// [`fraction_bits`] of its values.
#[derive(Default)]
struct Stats4 {
    fraction: [u64; 4],
    max: [f64; 4],
    min: [f64; 4],
    sum: [f64; 4],
    nonzero: [u64; 4],
}

impl Stats4 {
    /// Adds a group of eight rows, four at a time (`fractions`: whether to
    /// test for fractions).
    #[inline(always)]
    fn add8(&mut self, v: &[f64; 8], fractions: bool) {
        for half in v.chunks_exact(4) {
            for l in 0..4 {
                let v = half[l];
                if fractions {
                    self.fraction[l] |= fraction_bits(v);
                }
                self.max[l] = if v > self.max[l] { v } else { self.max[l] };
                self.min[l] = if v < self.min[l] { v } else { self.min[l] };
                self.sum[l] += v;
                self.nonzero[l] += u64::from(v != 0.0);
            }
        }
    }

    /// Whether some value had a fraction, and the column's statistics;
    /// `binary` says every kept value lies in [0, 1] (0 or 1 once whole
    /// numbers are known).
    fn finish(&self) -> (bool, ColumnStats) {
        let max = self.max.iter().copied().fold(0.0, f64::max);
        let min = self.min.iter().copied().fold(0.0, f64::min);
        (
            self.fraction.iter().any(|&f| f != 0),
            ColumnStats {
                // +0 for an all-zero column, whichever zero `max` returns.
                max_abs: max.max(-min).abs(),
                sum: self.sum.iter().sum(),
                nonzero: self.nonzero.iter().sum::<u64>() as f64,
                binary: max <= 1.0 && min >= 0.0,
            },
        )
    }
}

/// Whether some kept value of `col` is not a whole number (or is NaN or
/// ±∞, or past 2⁵², which the exactness bound refuses anyway), and the
/// kept values' magnitude, sum and non-zero count (dropped rows read as
/// zeros).
#[inline(always)]
pub fn scan_masked(col: &[f64], mask: Option<&[u8]>) -> (bool, ColumnStats) {
    let n = col.len();
    let mut stats = Stats4::default();
    for c in 0..n.div_ceil(8) {
        stats.add8(&group(col, row_mask(mask, c, n), c, n), true);
    }
    stats.finish()
}

/// Groups of eight rows [`halves_masked`] reads between looks at its
/// answer: a column of real values answers in its first rows, a column of
/// halves is read to its end.
pub const HALVES_STEP: usize = 8;

/// Whether some kept value is not a multiple of ½ (or is NaN or ±∞).
#[inline(always)]
pub fn halves_masked(col: &[f64], mask: Option<&[u8]>) -> bool {
    let n = col.len();
    let mut fraction = [0u64; 8];
    for c in 0..n.div_ceil(8) {
        let v = group(col, row_mask(mask, c, n), c, n);
        for l in 0..8 {
            fraction[l] |= fraction_bits(v[l] + v[l]);
        }
        if c % HALVES_STEP == HALVES_STEP - 1 && fraction.iter().any(|&f| f != 0) {
            return true;
        }
    }
    fraction.iter().any(|&f| f != 0)
}

/// What [`split_masked`] made of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The values are this many slices (trailing all-zero slices left out).
    Slices(usize),
    /// Every kept value is a multiple of `2^-MAX_Q` (`stats::dyadic`): a
    /// binary fraction, which the general path takes exactly, unsliced
    /// (unless the plan [splits binary fractions too](SlicePlan::binary_too)).
    Dyadic,
    /// [`MAX_SLICES`] do not hold every value, or a value is NaN or ±∞.
    Declined,
}

/// Slices [`split_masked`] takes in registers in its first pass: a real
/// value whose binade is the column's largest has 53 significant bits,
/// three slices of β ≥ 18; a fourth or fifth slice (values binades below
/// the largest) costs a sweep of its own, only when some value needs it.
const FIRST_SLICES: usize = 3;

/// The error-free split of a column's kept values into slices
/// (`stats::slices`): slice `k` into `out[k·stride..][..stride]` (dropped
/// rows and rows past `n` as zeros; `stride ≥ n` rounded up to 8), its
/// exact sum into `sums[k]`. The first pass takes `FIRST_SLICES` (three) slices
/// of eight values in registers and leaves the remainders in the next
/// slice's place; each further slice, up to [`MAX_SLICES`], is one sweep
/// over those remainders, run only while one is not zero. Every value's
/// slices are the same operations in the same order however many passes
/// there are (slices past the last non-zero one are left out of the
/// count).
#[inline(always)]
pub fn split_masked(
    col: &[f64],
    mask: Option<&[u8]>,
    plan: &SlicePlan,
    out: &mut [f64],
    stride: usize,
    sums: &mut [f64; MAX_SLICES],
) -> Split {
    let n = col.len();
    let groups = n.div_ceil(8);
    assert!(stride >= groups * 8 && stride.is_multiple_of(8) && out.len() >= MAX_SLICES * stride);
    let fine = (1u64 << crate::stats::dyadic::MAX_Q) as f64;
    let sigma: [f64; MAX_SLICES] = std::array::from_fn(|k| plan.sigma(k));
    let mut sum = [[0.0f64; 8]; MAX_SLICES];
    let mut used = [[0u64; 8]; MAX_SLICES];
    let mut left = [0u64; 8];
    let mut fraction = [0u64; 8];
    // One slice of eight values `r`: the slice, and what is left of `r`.
    let slice = |k: usize, r: [f64; 8], sum: &mut [[f64; 8]; MAX_SLICES], used: &mut [[u64; 8]; MAX_SLICES]| {
        let t: [f64; 8] = std::array::from_fn(|l| (sigma[k] + r[l]) - sigma[k]);
        for l in 0..8 {
            sum[k][l] += t[l];
            used[k][l] |= t[l].abs().to_bits();
        }
        (t, std::array::from_fn::<f64, 8, _>(|l| r[l] - t[l]))
    };
    for c in 0..groups {
        let v = group(col, row_mask(mask, c, n), c, n);
        for l in 0..8 {
            fraction[l] |= fraction_bits(v[l] * fine);
        }
        let mut r = v;
        for k in 0..FIRST_SLICES {
            let (t, rest) = slice(k, r, &mut sum, &mut used);
            out[k * stride + 8 * c..k * stride + 8 * c + 8].copy_from_slice(&t);
            r = rest;
        }
        out[FIRST_SLICES * stride + 8 * c..FIRST_SLICES * stride + 8 * c + 8].copy_from_slice(&r);
        for l in 0..8 {
            left[l] |= r[l].abs().to_bits();
        }
    }
    if !plan.splits_binary() && fraction.iter().all(|&f| f == 0) {
        return Split::Dyadic;
    }
    let mut k = FIRST_SLICES;
    while left.iter().any(|&b| b != 0) {
        if k == MAX_SLICES {
            return Split::Declined;
        }
        left = [0; 8];
        for c in 0..groups {
            let at = k * stride + 8 * c;
            let r: [f64; 8] = out[at..at + 8].try_into().expect("8 values");
            let (t, rest) = slice(k, r, &mut sum, &mut used);
            out[at..at + 8].copy_from_slice(&t);
            if k + 1 < MAX_SLICES {
                out[at + stride..at + stride + 8].copy_from_slice(&rest);
            }
            for l in 0..8 {
                left[l] |= rest[l].abs().to_bits();
            }
        }
        k += 1;
    }
    let count = 1 + (0..MAX_SLICES).rev().find(|&k| used[k].iter().any(|&b| b != 0)).unwrap_or(0);
    for k in 0..count {
        out[k * stride + groups * 8..(k + 1) * stride].fill(0.0);
        sums[k] = sum[k].iter().sum();
    }
    Split::Slices(count)
}

/// Added and subtracted, `1.5·2⁵²` rounds a value below 2⁵¹ in magnitude
/// to the nearest integer (ties to even): no rounding instruction is needed
/// (x86-64's baseline has none).
pub const ROUND_TO_INTEGER: f64 = 6_755_399_441_055_744.0;

/// The largest magnitude (excluded), 2⁵¹, of a decimal's integer `k`: below
/// it [`ROUND_TO_INTEGER`] rounds exactly and `x·10^d` is within a half of
/// `k`.
pub const DECIMAL_LIMIT: f64 = 2_251_799_813_685_248.0;

/// A column's kept values read as decimals (`stats::reals`), as
/// [`decimal_masked`] wrote them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecimalInts {
    /// The largest `|k − offset|`.
    pub max_abs: f64,
    /// `Σ (k − offset)` over the kept rows (exact where it is used: the
    /// caller checks the bound of `stats::dyadic`).
    pub sum: f64,
    /// Whether every kept value is a binary fraction (a multiple of
    /// `2^-MAX_Q`, `stats::dyadic`), which the general path takes exactly
    /// as it is: not to be read as decimals.
    pub dyadic: bool,
}

/// Reads a column's kept values as decimals of `scale = 10^d` (`d` ≤ 22,
/// so that `scale` is exact): each `x` must be the double nearest to
/// `k / scale` for an integer `|k| <` [`DECIMAL_LIMIT`], taken as
/// `k = round(x·scale)` (the product's error is below a half for such `k`;
/// [`ROUND_TO_INTEGER`]) and checked by the correctly rounded
/// `k / scale == x`: the same operations on every instruction set. Writes
/// `k − offset` (`offset` an integer) into `out[..n]` rounded up to 8
/// (dropped rows and rows past `n` as zeros). `Err(c)`: group `c` (rows
/// `8c .. 8c + 8`) holds the first value that is not such a decimal (or is
/// NaN or ±∞); `out` is then partly written.
#[inline(always)]
pub fn decimal_masked(
    col: &[f64],
    mask: Option<&[u8]>,
    scale: f64,
    offset: f64,
    out: &mut [f64],
) -> Result<DecimalInts, usize> {
    let n = col.len();
    let groups = n.div_ceil(8);
    assert!(out.len() >= groups * 8);
    let fine = (1u64 << crate::stats::dyadic::MAX_Q) as f64;
    let (mut sum, mut big, mut fraction) = ([0.0f64; 8], [0.0f64; 8], [0u64; 8]);
    for c in 0..groups {
        let m = row_mask(mask, c, n);
        let v = group(col, m, c, n);
        for l in 0..8 {
            fraction[l] |= fraction_bits(v[l] * fine);
        }
        let y: [f64; 8] = std::array::from_fn(|l| v[l] * scale);
        let k: [f64; 8] = std::array::from_fn(|l| (y[l] + ROUND_TO_INTEGER) - ROUND_TO_INTEGER);
        // NaN fails the division's test, ±∞ the magnitude's.
        let bad = (0..8).fold(false, |b, l| b | (y[l].abs() >= DECIMAL_LIMIT) | (k[l] / scale != v[l]));
        if bad {
            return Err(c);
        }
        let d: [f64; 8] = std::array::from_fn(|l| k[l] - offset);
        // As `group` reads: eight kept rows need no selection.
        let d = if m == 0xff { d } else { select8(m, d) };
        for l in 0..8 {
            sum[l] += d[l];
            big[l] = if d[l].abs() > big[l] { d[l].abs() } else { big[l] };
        }
        out[8 * c..8 * c + 8].copy_from_slice(&d);
    }
    let max_abs = big.iter().fold(0.0f64, |a, &b| if b > a { b } else { a });
    Ok(DecimalInts { max_abs, sum: super::reduce8(sum), dyadic: fraction.iter().all(|&f| f == 0) })
}

/// The kept rows of an `i64` column converted to `f64` into `out` (`n`
/// rounded up to 8 values; dropped rows and rows past `n` as zeros), with
/// their magnitude, sum and non-zero count. Integers past 2⁵³ round, as
/// any conversion does.
#[inline(always)]
pub fn convert_i64_masked(col: &[i64], mask: Option<&[u8]>, out: &mut [f64]) -> ColumnStats {
    let n = col.len();
    assert!(out.len() >= n.div_ceil(8) * 8);
    let mut stats = Stats4::default();
    for (c, o) in out.chunks_exact_mut(8).take(n.div_ceil(8)).enumerate() {
        let k = row_mask(mask, c, n);
        let base = 8 * c;
        let v: [f64; 8] = if base + 8 <= n {
            let w: [i64; 8] = col[base..base + 8].try_into().expect("8 rows");
            std::array::from_fn(|l| if k >> l & 1 == 1 { w[l] as f64 } else { 0.0 })
        } else {
            std::array::from_fn(|l| if k >> l & 1 == 1 { col[base + l] as f64 } else { 0.0 })
        };
        o.copy_from_slice(&v);
        stats.add8(&v, false);
    }
    stats.finish().1
}

/// The non-zero bits of the kept rows of a column, a byte per 8 rows (for
/// a 0/1 column: the column; NaN counts as non-zero).
#[inline(always)]
pub fn nonzero_bits_masked(col: &[f64], mask: Option<&[u8]>, bits: &mut [u8]) {
    let n = col.len();
    assert!(bits.len() >= n.div_ceil(8));
    for (c, b) in bits.iter_mut().enumerate().take(n.div_ceil(8)) {
        let v = group(col, row_mask(mask, c, n), c, n);
        *b = (0..8).fold(0u8, |acc, l| acc | u8::from(v[l] != 0.0) << l);
    }
}

/// The products of 0/1 columns given as bits (`bins`, clear on dropped
/// rows) with `f64` columns (`cont`, `n` rows each): `out[a·nc + b] =
/// Σ_r bin_ar cont_br`, a masked sum per pair, in tiles of up to
/// 2 × 4 columns whose sums stay in registers.
/// A dropped row's bit is clear, so its value (whatever it is) is never
/// added: the row mask is not needed.
#[inline(always)]
pub fn bits_by_cols(bins: &[&[u8]], cont: &[&[f64]], n: usize, _mask: Option<&[u8]>, out: &mut [f64]) {
    let (nb, nc) = (bins.len(), cont.len());
    assert!(bins.iter().all(|b| b.len() >= n.div_ceil(8)) && cont.iter().all(|c| c.len() >= n));
    assert!(out.len() >= nb * nc);
    for i0 in (0..nb).step_by(TILE_BINS) {
        for j0 in (0..nc).step_by(TILE_COLS) {
            macro_rules! tile {
                ($a:literal, $b:literal) => {
                    tile_bits::<$a, $b>(bins, cont, n, i0, j0, out)
                };
            }
            match ((nb - i0).min(TILE_BINS), (nc - j0).min(TILE_COLS)) {
                (1, 1) => tile!(1, 1),
                (1, 2) => tile!(1, 2),
                (1, 3) => tile!(1, 3),
                (1, 4) => tile!(1, 4),
                (2, 1) => tile!(2, 1),
                (2, 2) => tile!(2, 2),
                (2, 3) => tile!(2, 3),
                (2, 4) => tile!(2, 4),
                _ => unreachable!("tiles are at most 2 × 4"),
            }
        }
    }
}

/// Bit columns per tile of [`bits_by_cols`].
const TILE_BINS: usize = 2;
/// Float columns per tile of [`bits_by_cols`]: 2 × 4 sums of four lanes
/// and four columns' values fit sixteen 256-bit registers.
const TILE_COLS: usize = 4;

/// Four lanes of `x` where bits `l` of `on` are set (an AND with a lane
/// mask: no branch, and a dropped row's value never enters).
#[inline(always)]
fn select4(on: u64, x: &[f64]) -> [f64; 4] {
    std::array::from_fn(|l| f64::from_bits(x[l].to_bits() & 0u64.wrapping_sub(on >> l & 1)))
}

/// Adds group `c` of a tile's float columns (`x`) to its sums where the
/// bit columns `i0 ..` have their bits set. (A function, not a closure: a
/// closure is not compiled with the target features of the function it is
/// inlined into.)
#[inline(always)]
fn add_tile<const A: usize, const B: usize>(
    bins: &[&[u8]],
    i0: usize,
    c: usize,
    x: &[[f64; 8]; B],
    acc: &mut [[[f64; 4]; B]; A],
) {
    for (a, acc) in acc.iter_mut().enumerate() {
        let on = u64::from(bins[i0 + a][c]);
        for half in 0..2 {
            let on = on >> (4 * half);
            for (acc, x) in acc.iter_mut().zip(x) {
                let v = select4(on, &x[4 * half..4 * half + 4]);
                for l in 0..4 {
                    acc[l] += v[l];
                }
            }
        }
    }
}

/// One tile of [`bits_by_cols`]: bit columns `i0 ..i0 + A` by float
/// columns `j0 .. j0 + B`, four lanes per sum (exact sums: any order).
#[inline(always)]
fn tile_bits<const A: usize, const B: usize>(
    bins: &[&[u8]],
    cont: &[&[f64]],
    n: usize,
    i0: usize,
    j0: usize,
    out: &mut [f64],
) {
    let nc = cont.len();
    let mut acc = [[[0.0f64; 4]; B]; A];
    let full = n / 8;
    for c in 0..full {
        let x: [[f64; 8]; B] = std::array::from_fn(|b| cont[j0 + b][8 * c..8 * c + 8].try_into().expect("8 rows"));
        add_tile(bins, i0, c, &x, &mut acc);
    }
    if full * 8 < n {
        let x: [[f64; 8]; B] = std::array::from_fn(|b| {
            std::array::from_fn(|l| if 8 * full + l < n { cont[j0 + b][8 * full + l] } else { 0.0 })
        });
        add_tile(bins, i0, full, &x, &mut acc);
    }
    for (a, acc) in acc.iter().enumerate() {
        for (b, acc) in acc.iter().enumerate() {
            out[(i0 + a) * nc + j0 + b] = acc.iter().sum();
        }
    }
}

/// Per level `k < levels` (at most 16) of a factor's `codes`: the kept
/// rows' count (`counts[k]`) and, per column `j`, their sum
/// (`sums[k · cols + j]`).
#[inline(always)]
pub fn level_sums(
    codes: &[u32],
    levels: usize,
    cols: &[LevelColumn<'_>],
    n: usize,
    mask: Option<&[u8]>,
    sums: &mut [f64],
    counts: &mut [u64],
) {
    let m = cols.len();
    assert_level_sums_args(codes, levels, cols, n, sums, counts);
    let mut acc = vec![[0.0f64; 8]; levels * m];
    let mut ones = vec![0u64; levels * m];
    counts[..levels].fill(0);
    let mut x = vec![[0.0f64; 8]; m];
    for c in 0..n.div_ceil(8) {
        let k = row_mask(mask, c, n);
        if k == 0 {
            continue;
        }
        let base = 8 * c;
        let code: [u32; 8] = std::array::from_fn(|l| if base + l < n { codes[base + l] } else { u32::MAX });
        for (v, col) in x.iter_mut().zip(cols) {
            if let LevelColumn::F64(col) = col {
                *v = group(col, k, c, n);
            }
        }
        for (l, count) in counts.iter_mut().enumerate().take(levels) {
            let on = (0..8).fold(0u8, |b, r| b | u8::from(code[r] == l as u32) << r) & k;
            if on == 0 {
                continue;
            }
            *count += u64::from(on.count_ones());
            for (j, col) in cols.iter().enumerate() {
                match col {
                    LevelColumn::F64(_) => {
                        let a = &mut acc[l * m + j];
                        for r in 0..8 {
                            a[r] += if on >> r & 1 == 1 { x[j][r] } else { 0.0 };
                        }
                    }
                    LevelColumn::Bits(b) => ones[l * m + j] += u64::from((on & b[c]).count_ones()),
                }
            }
        }
    }
    for l in 0..levels {
        for (j, col) in cols.iter().enumerate() {
            sums[l * m + j] = match col {
                LevelColumn::F64(_) => acc[l * m + j].iter().sum(),
                LevelColumn::Bits(_) => ones[l * m + j] as f64,
            };
        }
    }
}

/// Per row, its 0/1 flags (`patterns`: a byte per row, bit `a` = flag
/// `a`, clear on dropped rows) added as 8 lanes of 0 or 1 to table row
/// `index[r]` (`rows` rows of 8): per table row, the count of its rows with
/// each flag (exact).
#[inline(always)]
pub fn flag_counts(index: &[u16], patterns: &[u8], rows: usize, n: usize, table: &mut [f64]) {
    assert!(index.len() >= n && patterns.len() >= n && table.len() >= rows * 8);
    for (&i, &p) in index[..n].iter().zip(&patterns[..n]) {
        let row = &mut table[usize::from(i) * 8..usize::from(i) * 8 + 8];
        for (a, t) in row.iter_mut().enumerate() {
            *t += f64::from(p >> a & 1);
        }
    }
}

/// `Σ_r x_ri x_rj` over the kept rows of the columns, lower triangle,
/// `out[j·m + i]` for `i ≥ j` — for sums the caller knows to be exact, so
/// a product and an addition (no fused multiply-add, which x86-64's
/// baseline has only as a library call) in any order give the value the
/// multiply-adds of `rows::gram_lower_cols` give.
#[inline(always)]
pub fn gram_exact(cols: &[&[f64]], n: usize, mask: Option<&[u8]>, out: &mut [f64]) {
    let m = cols.len();
    assert!(cols.iter().all(|c| c.len() >= n) && out.len() >= m * m);
    let mut x = vec![[0.0f64; 8]; m];
    let mut acc = vec![[0.0f64; 8]; m * m];
    for c in 0..n.div_ceil(8) {
        let k = row_mask(mask, c, n);
        for (x, col) in x.iter_mut().zip(cols) {
            *x = group(col, k, c, n);
        }
        for i in 0..m {
            for j in 0..=i {
                let a = &mut acc[i * m + j];
                for l in 0..8 {
                    a[l] += x[i][l] * x[j][l];
                }
            }
        }
    }
    for i in 0..m {
        for j in 0..=i {
            out[j * m + i] = acc[i * m + j].iter().sum();
        }
    }
}

/// `Σ_r a_r b_r` for two 0/1 columns given as bits (a popcount).
#[inline(always)]
pub fn and_ones(a: &[u8], b: &[u8]) -> u64 {
    crate::bits::and_ones(a, b)
}

/// The first pass's in-place kernels as an instruction set provides them:
/// the functions above ([`Portable`](super::Portable)), compiled again
/// with AVX2, FMA and POPCNT (`isa::Avx2`), or the AVX-512 kernels
/// (`isa::Avx512`), each equal in value to the function above (exact
/// sums). The second pass's [`RowKernels`] come with them.
pub trait ScanKernels: RowKernels {
    fn scan_masked(self, col: &[f64], mask: Option<&[u8]>) -> (bool, ColumnStats);
    fn halves_masked(self, col: &[f64], mask: Option<&[u8]>) -> bool;
    fn split_masked(
        self,
        col: &[f64],
        mask: Option<&[u8]>,
        plan: &SlicePlan,
        out: &mut [f64],
        stride: usize,
        sums: &mut [f64; MAX_SLICES],
    ) -> Split;
    fn decimal_masked(
        self,
        col: &[f64],
        mask: Option<&[u8]>,
        scale: f64,
        offset: f64,
        out: &mut [f64],
    ) -> Result<DecimalInts, usize>;
    fn convert_i64_masked(self, col: &[i64], mask: Option<&[u8]>, out: &mut [f64]) -> ColumnStats;
    fn nonzero_bits_masked(self, col: &[f64], mask: Option<&[u8]>, bits: &mut [u8]);
    fn bits_by_cols(self, bins: &[&[u8]], cont: &[&[f64]], n: usize, mask: Option<&[u8]>, out: &mut [f64]);
    #[allow(clippy::too_many_arguments)]
    fn level_sums(
        self,
        codes: &[u32],
        levels: usize,
        cols: &[LevelColumn<'_>],
        n: usize,
        mask: Option<&[u8]>,
        sums: &mut [f64],
        counts: &mut [u64],
    );
    fn flag_counts(self, index: &[u16], patterns: &[u8], rows: usize, n: usize, table: &mut [f64]);
    fn and_ones(self, a: &[u8], b: &[u8]) -> u64;
    /// [`gram_exact`]: exact sums, so any kernel's gram gives the same
    /// value.
    fn gram_exact(self, cols: &[&[f64]], n: usize, mask: Option<&[u8]>, out: &mut [f64]);
}

/// The portable scans as a [`ScanKernels`] (as `forward_row_kernels`),
/// but for `scan_masked`, `bits_by_cols`, `level_sums` and `gram_exact`,
/// which each implementation writes out (AVX2 and AVX-512 have their own).
#[macro_export]
#[doc(hidden)]
macro_rules! forward_scan_kernels {
    ($wrap:ident) => {
        fn halves_masked(self, col: &[f64], mask: Option<&[u8]>) -> bool {
            $wrap!(scans::halves_masked(col: &[f64], mask: Option<&[u8]>) -> bool)
        }
        fn convert_i64_masked(
            self,
            col: &[i64],
            mask: Option<&[u8]>,
            out: &mut [f64],
        ) -> $crate::stats::columns::ColumnStats {
            $wrap!(scans::convert_i64_masked(
                col: &[i64],
                mask: Option<&[u8]>,
                out: &mut [f64]
            ) -> $crate::stats::columns::ColumnStats)
        }
        fn nonzero_bits_masked(self, col: &[f64], mask: Option<&[u8]>, bits: &mut [u8]) {
            $wrap!(scans::nonzero_bits_masked(col: &[f64], mask: Option<&[u8]>, bits: &mut [u8]) -> ())
        }
        fn decimal_masked(
            self,
            col: &[f64],
            mask: Option<&[u8]>,
            scale: f64,
            offset: f64,
            out: &mut [f64],
        ) -> Result<$crate::stats::portable::scans::DecimalInts, usize> {
            $wrap!(scans::decimal_masked(
                col: &[f64],
                mask: Option<&[u8]>,
                scale: f64,
                offset: f64,
                out: &mut [f64]
            ) -> Result<$crate::stats::portable::scans::DecimalInts, usize>)
        }
        fn flag_counts(self, index: &[u16], patterns: &[u8], rows: usize, n: usize, table: &mut [f64]) {
            $wrap!(scans::flag_counts(index: &[u16], patterns: &[u8], rows: usize, n: usize, table: &mut [f64]) -> ())
        }
        fn and_ones(self, a: &[u8], b: &[u8]) -> u64 {
            $wrap!(scans::and_ones(a: &[u8], b: &[u8]) -> u64)
        }
        fn split_masked(
            self,
            col: &[f64],
            mask: Option<&[u8]>,
            plan: &$crate::stats::slices::SlicePlan,
            out: &mut [f64],
            stride: usize,
            sums: &mut [f64; $crate::stats::slices::MAX_SLICES],
        ) -> $crate::stats::portable::scans::Split {
            $wrap!(scans::split_masked(
                col: &[f64],
                mask: Option<&[u8]>,
                plan: &$crate::stats::slices::SlicePlan,
                out: &mut [f64],
                stride: usize,
                sums: &mut [f64; $crate::stats::slices::MAX_SLICES]
            ) -> $crate::stats::portable::scans::Split)
        }
    };
}

impl ScanKernels for super::Portable {
    fn level_sums(
        self,
        codes: &[u32],
        levels: usize,
        cols: &[LevelColumn<'_>],
        n: usize,
        mask: Option<&[u8]>,
        sums: &mut [f64],
        counts: &mut [u64],
    ) {
        level_sums(codes, levels, cols, n, mask, sums, counts)
    }
    fn gram_exact(self, cols: &[&[f64]], n: usize, mask: Option<&[u8]>, out: &mut [f64]) {
        gram_exact(cols, n, mask, out)
    }
    fn scan_masked(self, col: &[f64], mask: Option<&[u8]>) -> (bool, ColumnStats) {
        scan_masked(col, mask)
    }
    fn bits_by_cols(self, bins: &[&[u8]], cont: &[&[f64]], n: usize, mask: Option<&[u8]>, out: &mut [f64]) {
        bits_by_cols(bins, cont, n, mask, out)
    }
    forward_scan_kernels!(direct_call);
}
