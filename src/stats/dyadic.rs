//! The exact fast path's test (see [`crate::stats::kernel`]): a column
//! whose values are all multiples of `2^-q` ([`DyadicProfile`]) has
//! products and sums that plain `f64` arithmetic computes exactly while
//! they stay below 2⁵³ units. [`ColumnScan`] finds the profile, the plain
//! sum and the non-zero count in one pass; its outcome is exact, so every
//! instruction set's scan gives the same answer.

const LANES: usize = 8;

/// The finest binary fraction a column needs and its largest magnitude:
/// every value is `k · 2^-q` with integer `k`, `|value| ≤ max_abs`.
#[derive(Clone, Copy, Debug)]
pub struct DyadicProfile {
    /// Negative for slices of large values (`stats::slices`): multiples
    /// of `2^|q|`.
    pub q: i32,
    pub max_abs: f64,
}

/// Largest `q` considered (values with finer fractions use the
/// compensated loop).
pub const MAX_Q: i32 = 16;

impl DyadicProfile {
    /// Whether `Σ a_r b_r` over `n` rows is exact in plain `f64`
    /// arithmetic (all products and partial sums are integers times
    /// `2^-(qa+qb)` below 2⁵³ of those units).
    pub fn exact_dot(a: &DyadicProfile, b: &DyadicProfile, n: usize) -> bool {
        let units = (2f64).powi(a.q + b.q);
        a.max_abs * b.max_abs * units * n as f64 <= 9.0e15
    }

    /// Whether every sum and every sum of products of two (a column with
    /// itself included) of columns with these profiles is exact over `n`
    /// rows: the condition of the exact paths.
    pub fn all_exact(profiles: &[DyadicProfile], n: usize) -> bool {
        profiles.iter().all(|p| p.exact_sum(n))
            && profiles.iter().all(|a| profiles.iter().all(|b| Self::exact_dot(a, b, n)))
    }

    /// Whether `Σ a_r` is exact in plain `f64`.
    pub fn exact_sum(&self, n: usize) -> bool {
        self.max_abs * (2f64).powi(self.q) * n as f64 <= 9.0e15
    }
}

/// What one pass over a column tells the kernel: its [`DyadicProfile`]
/// (if any), its plain sum (exact when the profile says so) and how many
/// values are non-zero.
#[derive(Clone, Copy, Debug)]
pub struct ColumnScan {
    pub profile: Option<DyadicProfile>,
    pub plain_sum: f64,
    pub nonzero: u64,
}

impl ColumnScan {
    /// Lane sums of the fractional parts at `2⁰` and `2⁻¹`, lane maxima of
    /// `|x|`, lane sums and non-zero counts → the scan.
    pub(crate) fn finish(col: &[f64], err0: f64, err1: f64, max_abs: f64, sum: f64, nonzero: f64) -> ColumnScan {
        // A NaN or infinity makes a fractional part NaN: no profile.
        let profile = if err0 == 0.0 {
            Some(DyadicProfile { q: 0, max_abs })
        } else if err1 == 0.0 {
            Some(DyadicProfile { q: 1, max_abs })
        } else {
            finer_profile(col)
        };
        ColumnScan { profile, plain_sum: sum, nonzero: nonzero as u64 }
    }

    /// The portable loop (eight lanes; the fractional part by the 2⁵²
    /// trick, which needs no `trunc` call on baseline x86-64: values past
    /// 2⁵² count as fractional, which no exact product admits anyway).
    pub fn of_portable(col: &[f64], integral: bool) -> ColumnScan {
        const MAGIC: f64 = 4_503_599_627_370_496.0; // 2⁵²
        let mut err0 = [0.0f64; LANES];
        let mut err1 = [0.0f64; LANES];
        let mut mx = [0.0f64; LANES];
        let mut sum = [0.0f64; LANES];
        let mut nz = [0.0f64; LANES];
        for (r, &v) in col.iter().enumerate() {
            let l = r % LANES;
            let a = v.abs();
            if !integral {
                let a2 = a * 2.0;
                err0[l] += (((a + MAGIC) - MAGIC) - a).abs();
                err1[l] += (((a2 + MAGIC) - MAGIC) - a2).abs();
            }
            mx[l] = if a > mx[l] { a } else { mx[l] };
            sum[l] += v;
            nz[l] += if v != 0.0 { 1.0 } else { 0.0 };
        }
        let total = |x: &[f64; LANES]| x.iter().sum::<f64>();
        let max_abs = mx.iter().fold(0.0f64, |m, &a| if a > m { a } else { m });
        Self::finish(col, total(&err0), total(&err1), max_abs, total(&sum), total(&nz))
    }

    /// Fold the rows past the last full vector into the lanes, then finish
    /// the scan: `lanes` are the fractional parts at 2⁰ and 2⁻¹, maxima of
    /// |x|, sums and non-zero counts (`integral`: the column is known to hold
    /// whole numbers, and its fractional parts stay zero).
    pub fn from_lanes(col: &[f64], rest: &[f64], lanes: [[f64; 8]; 5], integral: bool) -> ColumnScan {
        let [mut e0, mut e1, mut mx, mut sum, mut nz] = lanes;
        for (l, &v) in rest.iter().enumerate() {
            let a = v.abs();
            if !integral {
                e0[l] += a - a.trunc();
                e1[l] += 2.0 * a - (2.0 * a).trunc();
            }
            mx[l] = if a > mx[l] { a } else { mx[l] };
            sum[l] += v;
            nz[l] += if v != 0.0 { 1.0 } else { 0.0 };
        }
        let total = |x: &[f64; 8]| x.iter().sum::<f64>();
        // A NaN lane maximum is ignored here; the NaN fractional part has
        // already refused the column.
        let max_abs = mx.iter().fold(0.0f64, |m, &a| if a > m { a } else { m });
        ColumnScan::finish(col, total(&e0), total(&e1), max_abs, total(&sum), total(&nz))
    }
}

/// The finer scales a column of binary fractions is profiled at, coarsest
/// first, after `2⁰` and `2⁻¹`; the last is [`MAX_Q`].
const FINER_Q: [i32; 3] = [4, 8, MAX_Q];

/// The fractional part of `a ≥ 0` by the `2⁵²` trick: 0 exactly when `a`
/// is a whole number below 2⁵²; NaN for NaN and ∞.
#[inline(always)]
fn fraction(a: f64) -> f64 {
    const MAGIC: f64 = 4_503_599_627_370_496.0;
    ((a + MAGIC) - MAGIC) - a
}

/// The coarsest of `2^-4`, `2^-8`, `2^-16` that a column is a multiple
/// of (a finer `q` than needed is only conservative).
#[inline(always)]
fn finer_profile(col: &[f64]) -> Option<DyadicProfile> {
    let pass = |scale: f64| -> (bool, f64) {
        let mut err = [0.0f64; LANES];
        let mut mx = [0.0f64; LANES];
        for (r, &v) in col.iter().enumerate() {
            let l = r % LANES;
            let a = v.abs() * scale;
            err[l] += fraction(a).abs();
            mx[l] = if a > mx[l] { a } else { mx[l] };
        }
        (err.iter().sum::<f64>() == 0.0, mx.iter().fold(0.0f64, |m, &a| if a > m { a } else { m }) / scale)
    };
    // The finest scale first: a column that fails it fails them all.
    let (ok, max_abs) = pass((1u64 << MAX_Q) as f64);
    if !ok {
        return None;
    }
    let q = FINER_Q.into_iter().find(|&q| q == MAX_Q || pass((1u64 << q) as f64).0);
    q.map(|q| DyadicProfile { q, max_abs })
}

/// The general path's finer `q` (`finer_profile`) of a column's kept rows
/// (`mask`): the in-place first pass profiles such a column
/// (`I(bathrooms ** 2)`, a product of two columns of halves) as the
/// general path profiles the design block's column of the same values, so
/// both take it on the exact path alike.
/// Stops at the first value that is no multiple of `2^-16` (every real
/// column, at once).
pub fn finer_q_masked(col: &[f64], mask: Option<&[u8]>) -> Option<i32> {
    let multiple = |q: i32| {
        let scale = (1u64 << q) as f64;
        col.iter().enumerate().all(|(r, &v)| !crate::bits::is_kept(mask, r) || fraction(v.abs() * scale) == 0.0)
    };
    if !multiple(MAX_Q) {
        return None;
    }
    FINER_Q.into_iter().find(|&q| q == MAX_Q || multiple(q))
}
