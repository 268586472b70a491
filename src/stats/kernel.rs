//! The hot loop: compensated raw moments of one block of design rows.
//!
//! For columns `z_0 … z_{m-1}` of a block (each an `f64` column, optionally
//! with a second `lo` column when a derived term was evaluated in
//! double-double) and optional weights `w`, this computes in double-double
//!
//! * `sw  = Σ_r w_r`
//! * `s1_i = Σ_r w_r z_ri`
//! * `s2_ij = Σ_r w_r z_ri z_rj` for `i ≤ j`
//!
//! Each product is split exactly into `p + e` (TwoProduct) and summed with
//! TwoSum, carrying the rounding errors in a second accumulator: the
//! compensated dot product "Dot2" of Ogita, Rump & Oishi (2005), "Accurate sum
//! and dot product", SIAM J. Sci. Comput. 26(6), Alg. 5.3. Its error bound is
//! `eps·|s| + γ²_{n}·Σ|z_i z_j|` — as if computed in twice the working
//! precision — and we keep both words, so the block sums carry ~30 digits.
//!
//! **Exact fast path.** Most real columns are integers or short binary
//! fractions (counts, square feet, flags, halves of bedrooms, whole dollars).
//! When every value of two columns in a block is a multiple of `2^-q` and the
//! block's products and sums stay below 2⁵³ in those units, every product and
//! every partial sum is exactly representable, so a plain fused multiply-add
//! loop computes the *exact* sum — bit for bit what the compensated loop would
//! return, at a fraction of the cost. [`DyadicProfile`] decides this per
//! column per block; nothing about the result depends on the decision.
//!
//! Eight independent lanes over the rows let the compiler vectorise the
//! transformation (they are element-wise on arrays); the lanes are combined
//! at the end in a fixed order, so results do not depend on the machine.
//! The FMA path and the Veltkamp-splitting path compute the same exact error
//! terms, so results are bit-identical with or without FMA.

#[cfg(gramfit_x86)]
use super::inplace;
#[cfg(gramfit_x86)]
use super::simd;
use crate::dd::{two_prod_err_split, two_sum, Dd};

const LANES: usize = 8;

/// One column of a block: the `f64` values and, for derived terms evaluated
/// in double-double, the low words (`value = hi + lo`).
#[derive(Clone, Copy)]
pub struct ColumnRef<'a> {
    pub hi: &'a [f64],
    pub lo: Option<&'a [f64]>,
    /// Every value is known to be a whole number (an integer source type,
    /// the intercept, an indicator): the scan skips the integrality test.
    pub integral: bool,
}

impl<'a> ColumnRef<'a> {
    /// A plain `f64` column with nothing known about its values.
    pub fn plain(hi: &'a [f64]) -> Self {
        ColumnRef { hi, lo: None, integral: false }
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

/// Compensated accumulator of `Σ a_r b_r` over eight lanes.
#[derive(Clone, Copy)]
struct Lanes {
    s: [f64; LANES],
    c: [f64; LANES],
}

impl Lanes {
    #[inline(always)]
    fn new() -> Self {
        Lanes { s: [0.0; LANES], c: [0.0; LANES] }
    }

    #[inline(always)]
    fn finish(self) -> Dd {
        let mut total = Dd::ZERO;
        for l in 0..LANES {
            total += Dd::new(self.s[l], self.c[l]);
        }
        total
    }
}

#[inline(always)]
fn prod_err<const FMA: bool>(a: f64, b: f64, p: f64) -> f64 {
    if FMA {
        a.mul_add(b, -p)
    } else {
        two_prod_err_split(a, b, p)
    }
}

/// `Σ a_r b_r` for plain `f64` columns.
#[inline(always)]
fn dot2<const FMA: bool>(a: &[f64], b: &[f64]) -> Dd {
    let n = a.len().min(b.len());
    let mut acc = Lanes::new();
    let chunks = n / LANES;
    for k in 0..chunks {
        let a8: &[f64; LANES] = a[k * LANES..(k + 1) * LANES].try_into().unwrap();
        let b8: &[f64; LANES] = b[k * LANES..(k + 1) * LANES].try_into().unwrap();
        for l in 0..LANES {
            let p = a8[l] * b8[l];
            let e = prod_err::<FMA>(a8[l], b8[l], p);
            let (s, t) = two_sum(acc.s[l], p);
            acc.s[l] = s;
            acc.c[l] += t + e;
        }
    }
    for (l, r) in (chunks * LANES..n).enumerate() {
        let p = a[r] * b[r];
        let e = prod_err::<FMA>(a[r], b[r], p);
        let (s, t) = two_sum(acc.s[l], p);
        acc.s[l] = s;
        acc.c[l] += t + e;
    }
    acc.finish()
}

/// `Σ (ah + al)_r (bh + bl)_r` where either side may carry low words.
/// The `al·bl` term is below the double-double unit roundoff and dropped.
#[inline(always)]
fn dot2_dd<const FMA: bool>(ah: &[f64], al: Option<&[f64]>, bh: &[f64], bl: Option<&[f64]>) -> Dd {
    let n = ah.len();
    let mut acc = Lanes::new();
    for r in 0..n {
        let l = r % LANES;
        let p = ah[r] * bh[r];
        let mut e = prod_err::<FMA>(ah[r], bh[r], p);
        if let Some(bl) = bl {
            e += ah[r] * bl[r];
        }
        if let Some(al) = al {
            e += al[r] * bh[r];
        }
        let (s, t) = two_sum(acc.s[l], p);
        acc.s[l] = s;
        acc.c[l] += t + e;
    }
    acc.finish()
}

/// `Σ a_r` compensated (Ogita–Rump–Oishi Sum2).
#[inline(always)]
fn sum2(a: &[f64], lo: Option<&[f64]>) -> Dd {
    let mut acc = Lanes::new();
    for (r, &x) in a.iter().enumerate() {
        let l = r % LANES;
        let (s, t) = two_sum(acc.s[l], x);
        acc.s[l] = s;
        acc.c[l] += t + lo.map_or(0.0, |lo| lo[r]);
    }
    acc.finish()
}

/// The finest binary fraction a column needs and its largest magnitude:
/// every value is `k · 2^-q` with integer `k`, `|value| ≤ max_abs`.
#[derive(Clone, Copy, Debug)]
pub struct DyadicProfile {
    pub q: u32,
    pub max_abs: f64,
}

/// Largest `q` considered (values with finer fractions use the
/// compensated loop).
const MAX_Q: u32 = 16;

impl DyadicProfile {
    /// `None` when some value is not a multiple of `2^-16` (or is NaN).
    pub fn of(col: &[f64]) -> Option<DyadicProfile> {
        ColumnScan::of(col, false).profile
    }

    /// Whether `Σ a_r b_r` over `n` rows is exact in plain `f64`
    /// arithmetic (all products and partial sums are integers times
    /// `2^-(qa+qb)` below 2⁵³ of those units).
    pub fn exact_dot(a: &DyadicProfile, b: &DyadicProfile, n: usize) -> bool {
        let units = (2f64).powi((a.q + b.q) as i32);
        a.max_abs * b.max_abs * units * n as f64 <= 9.0e15
    }

    /// Whether `Σ a_r` is exact in plain `f64`.
    pub fn exact_sum(&self, n: usize) -> bool {
        self.max_abs * (2f64).powi(self.q as i32) * n as f64 <= 9.0e15
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
    /// One pass tests integrality at `2⁰` and `2⁻¹` — whole numbers and
    /// halves, nearly every real column — and takes the magnitude, sum and
    /// non-zero count; finer fractions are tried only when both fail. The
    /// outcome is exact (a yes/no, a maximum, a count, and a sum that is
    /// used only when it is exact), so the explicit-SIMD versions give
    /// the same result as the portable loop.
    /// `integral`: the caller knows every value is a whole number, so
    /// only the magnitude, sum and count are taken.
    #[inline]
    pub fn of(col: &[f64], integral: bool) -> ColumnScan {
        #[cfg(gramfit_x86)]
        {
            if crate::isa::Avx512::get().is_some() {
                // SAFETY: the token proves AVX-512F.
                return unsafe {
                    if integral {
                        simd::scan_integral_avx512(col)
                    } else {
                        simd::scan_avx512(col)
                    }
                };
            }
            if crate::isa::Avx2::get().is_some() && !integral {
                // SAFETY: the token proves AVX2.
                return unsafe { simd::scan_avx2(col) };
            }
        }
        Self::of_portable(col, integral)
    }

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
}

/// The coarsest of `2^-4`, `2^-8`, `2^-16` that a column is a multiple
/// of (a finer `q` than needed is only conservative).
#[inline(always)]
fn finer_profile(col: &[f64]) -> Option<DyadicProfile> {
    const MAGIC: f64 = 4_503_599_627_370_496.0;
    let pass = |scale: f64| -> (bool, f64) {
        let mut err = [0.0f64; LANES];
        let mut mx = [0.0f64; LANES];
        for (r, &v) in col.iter().enumerate() {
            let l = r % LANES;
            let a = v.abs() * scale;
            err[l] += (((a + MAGIC) - MAGIC) - a).abs();
            mx[l] = if a > mx[l] { a } else { mx[l] };
        }
        (err.iter().sum::<f64>() == 0.0, mx.iter().fold(0.0f64, |m, &a| if a > m { a } else { m }) / scale)
    };
    // The finest scale first: a column that fails it fails them all.
    let (ok, max_abs) = pass((1u64 << MAX_Q) as f64);
    if !ok {
        return None;
    }
    for q in [4u32, 8] {
        if pass((1u64 << q) as f64).0 {
            return Some(DyadicProfile { q, max_abs });
        }
    }
    Some(DyadicProfile { q: MAX_Q, max_abs })
}

/// Number of non-zero values, in lanes so that it vectorises.
#[inline(always)]
pub fn count_nonzero(v: &[f64]) -> u64 {
    let mut lanes = [0.0f64; LANES];
    for (r, &x) in v.iter().enumerate() {
        lanes[r % LANES] += if x != 0.0 { 1.0 } else { 0.0 };
    }
    lanes.iter().sum::<f64>() as u64
}

/// `Σ a_r b_r` in plain arithmetic; exact under [`DyadicProfile::exact_dot`].
#[inline(always)]
fn plain_dot<const FMA: bool>(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let mut acc = [0.0f64; LANES];
    let chunks = n / LANES;
    for k in 0..chunks {
        let a8: &[f64; LANES] = a[k * LANES..(k + 1) * LANES].try_into().unwrap();
        let b8: &[f64; LANES] = b[k * LANES..(k + 1) * LANES].try_into().unwrap();
        for l in 0..LANES {
            acc[l] = if FMA { a8[l].mul_add(b8[l], acc[l]) } else { acc[l] + a8[l] * b8[l] };
        }
    }
    for r in chunks * LANES..n {
        acc[0] += a[r] * b[r];
    }
    acc.iter().sum()
}

/// `ZᵀZ` (lower triangle, column-major `k × k`) of the listed columns, by
/// faer's blocked product. Exact when every pair passes
/// [`DyadicProfile::exact_dot`], so the order of summation is irrelevant.
/// `matrix` is the block as one column-major slice, when the caller has it:
/// if the listed columns are all of them, it is multiplied in place.
fn exact_gram(cols: &[ColumnRef<'_>], idx: &[usize], matrix: Option<&[f64]>) -> Vec<f64> {
    use faer::linalg::matmul::triangular::{matmul, BlockStructure};
    use faer::{Accum, Mat, MatRef, Par};
    let n = cols[idx[0]].hi.len();
    let k = idx.len();
    let mut g = Mat::<f64>::zeros(k, k);
    let mut product = |z: MatRef<'_, f64>| {
        matmul(
            g.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Replace,
            z.transpose(),
            BlockStructure::Rectangular,
            z,
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        )
    };
    match matrix {
        Some(values) if k == cols.len() && idx.iter().enumerate().all(|(a, &i)| a == i) => {
            #[cfg(gramfit_x86)]
            {
                if crate::isa::Avx512::get().is_some() {
                    let mut out = vec![0.0; k * k];
                    // SAFETY: the token proves AVX-512F; `values` is n × k.
                    unsafe { simd::gram_lower_avx512(&values[..n * k], n, k, &mut out) };
                    return out;
                }
            }
            product(MatRef::from_column_major_slice(&values[..n * k], n, k))
        }
        _ => {
            let mut z = Mat::<f64>::zeros(n, k);
            for (c, &i) in idx.iter().enumerate() {
                z.col_mut(c)
                    .try_as_col_major_mut()
                    .expect("contiguous column")
                    .as_slice_mut()
                    .copy_from_slice(cols[i].hi);
            }
            product(z.as_ref())
        }
    }
    let mut out = vec![0.0; k * k];
    for c in 0..k {
        for r in c..k {
            out[c * k + r] = g[(r, c)];
        }
    }
    out
}

#[inline(always)]
fn raw_moments_impl<const FMA: bool>(
    cols: &[ColumnRef<'_>],
    matrix: Option<&[f64]>,
    weights: Option<&[f64]>,
) -> RawMoments {
    raw_moments_with::<FMA, true>(cols, matrix, weights)
}

#[inline(always)]
fn raw_moments_with<const FMA: bool, const FAST: bool>(
    cols: &[ColumnRef<'_>],
    matrix: Option<&[f64]>,
    weights: Option<&[f64]>,
) -> RawMoments {
    let m = cols.len();
    let n = cols.first().map_or(0, |c| c.hi.len());
    let mut s1 = vec![Dd::ZERO; m];
    let mut s2 = vec![Dd::ZERO; m * m];
    let mut nonzero = vec![0u64; m];
    let mut exact = false;
    let sum_w;
    match weights {
        None => {
            sum_w = Dd::from(n as f64);
            let plain = cols.iter().all(|c| c.lo.is_none());
            // A plain loop (not an iterator adapter) keeps the scans
            // inside this function, compiled with its target features.
            let mut profiles: Vec<Option<DyadicProfile>> = Vec::with_capacity(m);
            let mut plain_sums: Vec<f64> = Vec::with_capacity(m);
            for (i, c) in cols.iter().enumerate() {
                if FAST && c.lo.is_none() {
                    let scan = ColumnScan::of(c.hi, c.integral);
                    profiles.push(scan.profile);
                    plain_sums.push(scan.plain_sum);
                    nonzero[i] = scan.nonzero;
                } else {
                    profiles.push(None);
                    plain_sums.push(0.0);
                    nonzero[i] = count_nonzero(c.hi);
                }
            }
            // Columns whose every pair is exact in plain arithmetic: one
            // blocked product (faer's gemm) gives all their sums at once.
            let exact_set: Vec<usize> = (0..m).filter(|&i| profiles[i].is_some()).collect();
            let all_exact = exact_set.iter().all(|&i| {
                exact_set.iter().all(|&j| DyadicProfile::exact_dot(&profiles[i].unwrap(), &profiles[j].unwrap(), n))
            });
            exact = all_exact && exact_set.len() == m && profiles.iter().all(|p| p.is_some_and(|p| p.exact_sum(n)));
            let gram = if all_exact && exact_set.len() > 1 { Some(exact_gram(cols, &exact_set, matrix)) } else { None };
            let pos: Vec<Option<usize>> = {
                let mut p = vec![None; m];
                for (k, &i) in exact_set.iter().enumerate() {
                    p[i] = Some(k);
                }
                p
            };
            for i in 0..m {
                s1[i] = match profiles[i] {
                    Some(p) if p.exact_sum(n) => Dd::from(plain_sums[i]),
                    _ => sum2(cols[i].hi, cols[i].lo),
                };
                for j in i..m {
                    let v = if let (Some(g), Some(a), Some(b)) = (&gram, pos[i], pos[j]) {
                        Dd::from(g[a * exact_set.len() + b])
                    } else if let (Some(a), Some(b)) = (&profiles[i], &profiles[j]) {
                        if DyadicProfile::exact_dot(a, b, n) {
                            Dd::from(plain_dot::<FMA>(cols[i].hi, cols[j].hi))
                        } else {
                            dot2::<FMA>(cols[i].hi, cols[j].hi)
                        }
                    } else if plain {
                        dot2::<FMA>(cols[i].hi, cols[j].hi)
                    } else {
                        dot2_dd::<FMA>(cols[i].hi, cols[i].lo, cols[j].hi, cols[j].lo)
                    };
                    s2[i * m + j] = v;
                    s2[j * m + i] = v;
                }
            }
        }
        Some(w) => {
            sum_w = sum2(w, None);
            // a_i = w ⊙ z_i exactly, as a double-double column.
            let mut wh = vec![0.0; n];
            let mut wl = vec![0.0; n];
            for i in 0..m {
                let c = cols[i];
                nonzero[i] = count_nonzero(c.hi);
                for r in 0..n {
                    let p = w[r] * c.hi[r];
                    let mut e = prod_err::<FMA>(w[r], c.hi[r], p);
                    if let Some(lo) = c.lo {
                        e += w[r] * lo[r];
                    }
                    let (h, l) = two_sum(p, e);
                    wh[r] = h;
                    wl[r] = l;
                }
                s1[i] = sum2(&wh, Some(&wl));
                for j in i..m {
                    let v = dot2_dd::<FMA>(&wh, Some(&wl), cols[j].hi, cols[j].lo);
                    s2[i * m + j] = v;
                    s2[j * m + i] = v;
                }
            }
        }
    }
    RawMoments { sum_w, s1, s2, nonzero, exact }
}

#[cfg(gramfit_x86)]
#[target_feature(enable = "avx2,fma")]
fn raw_moments_fma(cols: &[ColumnRef<'_>], matrix: Option<&[f64]>, weights: Option<&[f64]>) -> RawMoments {
    raw_moments_impl::<true>(cols, matrix, weights)
}

/// The same code again with 512-bit vectors: the lanes are the same eight
/// accumulators, so the result is the same bits.
#[cfg(gramfit_x86)]
#[target_feature(enable = "avx512f,avx2,fma")]
fn raw_moments_avx512(cols: &[ColumnRef<'_>], matrix: Option<&[f64]>, weights: Option<&[f64]>) -> RawMoments {
    raw_moments_impl::<true>(cols, matrix, weights)
}

/// Compensated raw moments of a block; dispatches at run time to an
/// AVX2+FMA build of the same code where the CPU has it.
pub fn raw_moments(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    raw_moments_dispatch(cols, None, weights)
}

/// [`raw_moments`] of a block held as one column-major matrix
/// (`values.len() == n · lo.len()`), multiplied in place on the exact path.
/// `integral[j]`: column `j` is known to hold whole numbers.
pub fn raw_moments_of_matrix(
    values: &[f64],
    n: usize,
    lo: &[Option<&[f64]>],
    integral: &[bool],
    weights: Option<&[f64]>,
) -> RawMoments {
    assert_eq!(values.len(), n * lo.len(), "an n × m column-major matrix");
    raw_moments_dispatch(&matrix_columns(values, n, lo, integral), Some(values), weights)
}

/// The columns of a column-major `n × m` matrix.
pub fn matrix_columns<'a>(
    values: &'a [f64],
    n: usize,
    lo: &[Option<&'a [f64]>],
    integral: &[bool],
) -> Vec<ColumnRef<'a>> {
    (0..lo.len()).map(|j| ColumnRef { hi: &values[j * n..(j + 1) * n], lo: lo[j], integral: integral[j] }).collect()
}

fn raw_moments_dispatch(cols: &[ColumnRef<'_>], matrix: Option<&[f64]>, weights: Option<&[f64]>) -> RawMoments {
    #[cfg(gramfit_x86)]
    {
        if crate::isa::Avx512::get().is_some() {
            // SAFETY: the token proves AVX-512F, AVX2 and FMA.
            return unsafe { raw_moments_avx512(cols, matrix, weights) };
        }
        if crate::isa::Avx2::get().is_some() {
            // SAFETY: the token proves AVX2 and FMA.
            return unsafe { raw_moments_fma(cols, matrix, weights) };
        }
    }
    raw_moments_impl::<false>(cols, matrix, weights)
}

/// The compensated loop only (no exact fast path), so tests can check that
/// the fast path returns the same bits.
pub fn raw_moments_compensated(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    raw_moments_with::<false, false>(cols, None, weights)
}

/// The portable path, exposed so tests can check it agrees bit for bit.
pub fn raw_moments_portable(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    raw_moments_impl::<false>(cols, None, weights)
}

/// The sum of eight lanes in the fixed order every path uses: halves
/// added lane by lane, then quarters, then the last pair — what
/// `_mm512_reduce_add_pd` computes, written out so that portable code
/// gives the same bits.
#[inline(always)]
pub fn reduce8(l: [f64; 8]) -> f64 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

/// Rows kept by a row mask (bit `r % 8` of byte `r / 8`; `None`: all `n`);
/// bits past row `n` are ignored.
pub fn kept_rows(mask: Option<&[u8]>, n: usize) -> usize {
    mask.map_or(n, |mk| {
        let full = mk.len().min(n / 8);
        // Eight bytes at a time: one popcount per 64 rows.
        let words = mk[..full].chunks_exact(8);
        let rest = words.remainder();
        let mut k: usize =
            words.map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")).count_ones() as usize).sum();
        k += rest.iter().map(|b| b.count_ones() as usize).sum::<usize>();
        if !n.is_multiple_of(8) {
            k += (mk[full] & ((1u8 << (n % 8)) - 1)).count_ones() as usize;
        }
        k
    })
}

/// A source column read in place by [`raw_moments_masked`].
#[derive(Clone, Copy)]
pub enum SourceColumn<'a> {
    F64(&'a [f64]),
    I64(&'a [i64]),
    /// A 0/1 column as its bits (bit `r % 8` of byte `r / 8`; at least a
    /// byte per 8 rows; any value on dropped rows and past the last row).
    Bits(&'a [u8]),
}

/// The bits of a [`SourceColumn::Bits`] on the kept rows below `n` (clear
/// elsewhere), into `out` (a byte per 8 rows).
pub fn kept_bits(src: &[u8], mask: Option<&[u8]>, n: usize, out: &mut [u8]) {
    let nbytes = n.div_ceil(8);
    let (out, src) = (&mut out[..nbytes], &src[..nbytes]);
    match mask {
        Some(m) => {
            for ((o, &s), &m) in out.iter_mut().zip(src).zip(&m[..nbytes]) {
                *o = s & m;
            }
        }
        None => out.copy_from_slice(src),
    }
    if !n.is_multiple_of(8) {
        out[nbytes - 1] &= (1u8 << (n % 8)) - 1;
    }
}

/// `f64` 0/1 values of bits (a byte per 8 rows) for the first `n` rows.
pub fn bits_to_f64(bits: &[u8], n: usize, out: &mut [f64]) {
    for (r, x) in out[..n].iter_mut().enumerate() {
        *x = f64::from(bits[r / 8] >> (r % 8) & 1);
    }
}

/// A column of the in-place kernel: a numeric source column, or the level
/// codes of a categorical factor whose full cells (indicators) it stands
/// for. Codes are `u32::MAX` only on dropped rows.
#[derive(Clone, Copy)]
pub enum DirectColumn<'a> {
    Source(SourceColumn<'a>),
    Factor { codes: &'a [u32], levels: usize },
}

/// What [`raw_moments_masked_columns`] returns: the raw moments of the
/// output columns — each source column, and each factor's cells present
/// among the kept rows — and for each factor (in order) the level codes of
/// its cells, in order of first appearance among the kept rows.
pub struct MaskedMoments {
    pub raw: RawMoments,
    pub cells: Vec<Vec<u32>>,
}

/// Raw moments of the kept rows of source columns read in place — the
/// common case of a model whose every term is a plain numeric column,
/// without weights — with no design matrix built: dropped rows are masked
/// out as they are loaded (`mask`: bit `r % 8` of byte `r / 8` set for a
/// kept row; `None`: all kept).
///
/// Returns `None` where this path does not apply (no AVX-512, or some pair
/// of columns is not exact in plain arithmetic); the caller then builds the
/// design block and takes [`raw_moments`]. When it applies, every sum is
/// exact, so the result is the same bits the general path returns.
pub fn raw_moments_masked(cols: &[SourceColumn<'_>], n: usize, mask: Option<&[u8]>) -> Option<RawMoments> {
    let cols: Vec<DirectColumn<'_>> = cols.iter().map(|&c| DirectColumn::Source(c)).collect();
    raw_moments_masked_columns(&cols, n, mask).map(|m| m.raw)
}

/// [`raw_moments_masked`] with categorical factors among the columns: a
/// factor's cells are indicators, so their sums are counts, their products
/// with a numeric column are per-level sums of it (one pass, whatever the
/// number of levels), with another factor's cells a cross tabulation, and
/// with each other zero. All exact, so again the same bits as the general
/// path, which builds the indicator columns densely.
pub fn raw_moments_masked_columns(cols: &[DirectColumn<'_>], n: usize, mask: Option<&[u8]>) -> Option<MaskedMoments> {
    #[cfg(gramfit_x86)]
    {
        if crate::isa::Avx512::get().is_some() {
            // SAFETY: the token proves AVX-512F and DQ and POPCNT.
            return with_scratch(|converted| unsafe { inplace::masked_moments_with(cols, n, mask, converted) });
        }
    }
    let _ = (cols, n, mask);
    None
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

/// Source columns for the second pass: floats in place; integer columns
/// whose kept values are all 0 or 1 as bits (at most `max_flags` of them,
/// and only where `may_flag` allows), appended to `bits` (`n.div_ceil(8)`
/// bytes each); other integers converted into `scratch`. `None` without
/// AVX-512 (F and DQ).
pub fn source_columns<'a>(
    cols: &[SourceColumn<'a>],
    may_flag: &[bool],
    max_flags: usize,
    n: usize,
    mask: Option<&[u8]>,
    scratch: &'a mut Vec<f64>,
    bits: &mut Vec<u8>,
) -> Option<Vec<KernelColumn<'a>>> {
    #[cfg(gramfit_x86)]
    if let Some(token) = crate::isa::Avx512::get() {
        return Some(inplace::source_columns(token, cols, may_flag, max_flags, n, mask, scratch, bits));
    }
    let _ = (cols, may_flag, max_flags, n, mask, scratch, bits);
    None
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's scratch buffer for converted integer columns
/// (both passes; never nested), kept between chunks so that it is neither
/// allocated nor zeroed each time: every value is written before it is read.
pub fn with_scratch<R>(f: impl FnOnce(&mut Vec<f64>) -> R) -> R {
    let mut v = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let r = f(&mut v);
    SCRATCH.with(|s| *s.borrow_mut() = v);
    r
}
