//! The kernels' vocabulary: how a block's columns are handed to them
//! ([`ColumnRef`], [`SourceColumn`], [`DirectColumn`], [`KernelColumn`],
//! [`LevelColumn`]) and what they return ([`RawMoments`],
//! [`MaskedMoments`], [`ColumnStats`]).

use crate::dd::Dd;

/// One column of a block: the `f64` values and, for derived terms evaluated
/// in double-double, the low words (`value = hi + lo`).
#[derive(Clone, Copy)]
pub struct ColumnRef<'a> {
    pub hi: &'a [f64],
    pub lo: Option<&'a [f64]>,
    /// Every value is known to be a whole number (an integer source type,
    /// the intercept, an indicator): the scan skips the integrality test.
    pub integral: bool,
    /// The column may be read as the decimals it holds (`stats::reals`).
    /// Off where other statistics of the same values are summed as the
    /// doubles they are (an absorbed fit's per-level sums), which must
    /// agree with these to the last bit.
    pub decimals: bool,
}

impl<'a> ColumnRef<'a> {
    /// A plain `f64` column with nothing known about its values.
    pub fn plain(hi: &'a [f64]) -> Self {
        ColumnRef { hi, lo: None, integral: false, decimals: true }
    }
}

/// Raw (uncentered) block sums in double-double.
#[derive(Clone, Debug)]
pub struct RawMoments {
    pub sum_w: Dd,
    pub s1: Vec<Dd>,
    /// Row-major `m × m`, both triangles filled.
    pub s2: Vec<Dd>,
    /// Rows on which each column is non-zero.
    pub nonzero: Vec<u64>,
    /// Every sum is exact (the fast path took every pair): such blocks can
    /// be added to each other in double-double without any rounding.
    pub exact: bool,
}

/// A source column read in place by [`raw_moments_masked`](super::kernel::raw_moments_masked).
#[derive(Clone, Copy)]
pub enum SourceColumn<'a> {
    F64(&'a [f64]),
    I64(&'a [i64]),
    /// A 0/1 column as its bits (bit `r % 8` of byte `r / 8`; at least a
    /// byte per 8 rows; any value on dropped rows and past the last row).
    Bits(&'a [u8]),
}

impl SourceColumn<'_> {
    /// Row `r`'s value as the design block holds it: an integer converted
    /// to the nearest `f64` (as Arrow's cast converts it), a bit as 0 or 1.
    pub fn value(&self, r: usize) -> f64 {
        match self {
            SourceColumn::F64(v) => v[r],
            SourceColumn::I64(v) => v[r] as f64,
            SourceColumn::Bits(b) => f64::from((b[r / 8] >> (r % 8)) & 1),
        }
    }
}

/// A column of the in-place kernel: a numeric source column, or the level
/// codes of a categorical factor whose full cells (indicators) it stands
/// for. Codes are `u32::MAX` only on dropped rows.
#[derive(Clone, Copy)]
pub enum DirectColumn<'a> {
    Source(SourceColumn<'a>),
    Factor {
        codes: &'a [u32],
        levels: usize,
    },
    /// A yes/no factor (levels no = code 0, yes = 1) as the bits of its yes
    /// rows (as [`SourceColumn::Bits`]; dropped rows any value).
    YesNo(&'a [u8]),
}

/// What [`raw_moments_masked_columns`](super::kernel::raw_moments_masked_columns) returns: the raw moments of the
/// output columns — each source column, and each factor's cells present
/// among the kept rows — and for each factor (in order) the level codes of
/// its cells, in order of first appearance among the kept rows.
pub struct MaskedMoments {
    pub raw: RawMoments,
    pub cells: Vec<Vec<u32>>,
}

/// A source column as the second pass's kernels read it.
#[derive(Clone, Copy)]
pub enum KernelColumn<'a> {
    /// `n` values (dropped rows hold anything: every kernel masks them).
    F64(&'a [f64]),
    /// A 0/1 integer column: its bits (a byte per 8 rows, clear on dropped
    /// rows), the `i`-th column of the bits buffer.
    Flag(usize),
}

/// The columns of a column-major `n × m` matrix.
pub fn matrix_columns<'a>(
    values: &'a [f64],
    n: usize,
    lo: &[Option<&'a [f64]>],
    integral: &[bool],
    decimals: bool,
) -> Vec<ColumnRef<'a>> {
    (0..lo.len())
        .map(|j| ColumnRef { hi: &values[j * n..(j + 1) * n], lo: lo[j], integral: integral[j], decimals })
        .collect()
}

/// What the in-place first pass learns of a column in one scan (over the
/// kept rows).
#[derive(Clone, Copy)]
pub struct ColumnStats {
    pub max_abs: f64,
    pub sum: f64,
    pub nonzero: f64,
    /// Every kept value lies in [0, 1]: with whole numbers, 0 or 1, and then
    /// the non-zero bits of the pass are the column itself.
    pub binary: bool,
}

/// A column of the per-level sums of a factor of few levels: values, or
/// a 0/1 column's bits (a byte per 8 rows).
#[derive(Clone, Copy)]
pub enum LevelColumn<'a> {
    F64(&'a [f64]),
    Bits(&'a [u8]),
}

/// The contract of every level's per-level sums (`levels ≤ 16`; `codes`
/// and every column hold `n` rows; `sums` has `levels × cols`, `counts`
/// `levels` slots), checked in release builds: the kernels' loads and
/// stores rely on it.
#[inline]
pub fn assert_level_sums_args(
    codes: &[u32],
    levels: usize,
    cols: &[LevelColumn<'_>],
    n: usize,
    sums: &[f64],
    counts: &[u64],
) {
    assert!(levels <= 16 && codes.len() >= n && sums.len() >= levels * cols.len() && counts.len() >= levels);
    assert!(cols.iter().all(|c| match c {
        LevelColumn::F64(v) => v.len() >= n,
        LevelColumn::Bits(b) => b.len() >= n.div_ceil(8),
    }));
}
