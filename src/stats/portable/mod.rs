//! The reference kernels: compensated raw moments of one block of design
//! rows, in plain Rust over eight lanes, shared by every instruction set.
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
//! **Real values.** A plain column that is no such fraction (prices in
//! cents, coordinates, logs) is split into slices that are
//! (`super::slices`, Ozaki et al. 2012), when that makes every sum of the
//! block exact: the slices join the exact product, and their sums are
//! folded in double-double — within 2⁻¹⁰⁶ of the largest partial, and the
//! same bits as the in-place path's. Otherwise (a column spanning too many
//! binades, NaN, a sum past the bound) it takes the compensated loop.
//!
//! Eight independent lanes over the rows let the compiler vectorise the
//! transformation (they are element-wise on arrays); the lanes are combined
//! at the end in a fixed order, so results do not depend on the machine.
//! The FMA path and the Veltkamp-splitting path compute the same exact error
//! terms, so results are bit-identical with or without FMA. An instruction
//! set lends these algorithms its scan and gram product through
//! [`Primitives`]; `x86` compiles them again with its target features.

pub mod row_kernels;
pub mod rows;
pub mod scans;

use super::columns::{ColumnRef, RawMoments};
use super::dyadic::{ColumnScan, DyadicProfile};
use super::reals::{self, Reading};
use super::slices::{self, MAX_SLICES};
use crate::dd::{two_prod_err_split, two_sum, Dd};

const LANES: usize = 8;

/// What an instruction set lends the shared algorithms: a column scan and,
/// where it has one, an exact gram product. Implemented by [`Portable`] and
/// by the x86 tokens (`crate::isa::Avx2`, `Avx512`), whose existence proves
/// the features their kernels need.
pub trait Primitives: Copy {
    /// The [`ColumnScan`] of a column (`integral`: known whole numbers).
    fn scan(self, col: &[f64], integral: bool) -> ColumnScan;
    /// `ZᵀZ` (lower triangle, column-major `k × k`) of an `n × k`
    /// column-major block whose every product is exact; `None` where this
    /// set has no kernel of its own (faer's gemm runs).
    fn gram_lower(self, values: &[f64], n: usize, k: usize) -> Option<Vec<f64>>;
}

/// The portable set: the reference scan, faer's gemm.
#[derive(Clone, Copy, Debug)]
pub struct Portable;

impl Primitives for Portable {
    #[inline(always)]
    fn scan(self, col: &[f64], integral: bool) -> ColumnScan {
        ColumnScan::of_portable(col, integral)
    }

    #[inline(always)]
    fn gram_lower(self, _values: &[f64], _n: usize, _k: usize) -> Option<Vec<f64>> {
        None
    }
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
fn exact_gram<I: Primitives>(isa: I, cols: &[ColumnRef<'_>], idx: &[usize], matrix: Option<&[f64]>) -> Vec<f64> {
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
            if let Some(out) = isa.gram_lower(&values[..n * k], n, k) {
                return out;
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
pub(super) fn raw_moments_with<I: Primitives, const FMA: bool, const FAST: bool>(
    isa: I,
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
                    let scan = isa.scan(c.hi, c.integral);
                    profiles.push(scan.profile);
                    plain_sums.push(scan.plain_sum);
                    nonzero[i] = scan.nonzero;
                } else {
                    profiles.push(None);
                    plain_sums.push(0.0);
                    nonzero[i] = count_nonzero(c.hi);
                }
            }
            // Real values (not binary fractions) split into slices, when
            // that makes every sum exact — as the in-place path does, with
            // the same bits.
            // So are whole numbers or halves too long for the exact
            // kernels as they are (ids, timestamps, `I(sqft ** 2)`).
            let long: Vec<bool> = profiles.iter().map(|p| p.is_some_and(|p| reals::too_long(&p, n))).collect();
            if FAST && plain && (profiles.iter().any(Option::is_none) || long.contains(&true)) {
                if let Some(raw) = sliced_moments(isa, cols, &profiles, &long, &plain_sums, &nonzero) {
                    return raw;
                }
            }
            // Columns whose every pair is exact in plain arithmetic: one
            // blocked product (faer's gemm) gives all their sums at once.
            let exact_set: Vec<usize> = (0..m).filter(|&i| profiles[i].is_some()).collect();
            let all_exact = exact_set.iter().all(|&i| {
                exact_set.iter().all(|&j| DyadicProfile::exact_dot(&profiles[i].unwrap(), &profiles[j].unwrap(), n))
            });
            exact = all_exact && exact_set.len() == m && profiles.iter().all(|p| p.is_some_and(|p| p.exact_sum(n)));
            let gram =
                if all_exact && exact_set.len() > 1 { Some(exact_gram(isa, cols, &exact_set, matrix)) } else { None };
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

/// The raw moments of plain columns with the real-valued ones (`profiles[i]`
/// `None`) and the too long ones (`long[i]`: [`reals::too_long`]) read by
/// [`reals::kernel_columns`] (as decimals or in slices), or `None` where a
/// column cannot be read so or some sum would not be exact: the general
/// path's form of the in-place path's real columns, the same bits.
#[inline(always)]
fn sliced_moments<I: Primitives>(
    isa: I,
    cols: &[ColumnRef<'_>],
    profiles: &[Option<DyadicProfile>],
    long: &[bool],
    plain_sums: &[f64],
    nonzero: &[u64],
) -> Option<RawMoments> {
    let n = cols[0].hi.len();
    let stride = n.div_ceil(8) * 8;
    let reals = profiles.iter().zip(long).filter(|(p, &l)| p.is_none() || l).count();
    let mut buf = vec![0.0; reals * MAX_SLICES * stride];
    let mut wide_profiles = Vec::new();
    let mut wide_sums = Vec::new();
    let mut groups = Vec::with_capacity(cols.len());
    // Per wide column: its source column, and where its slice is in `buf`.
    let mut places: Vec<(usize, Option<usize>)> = Vec::new();
    let mut next_real = 0;
    let mut decimals = vec![None; cols.len()];
    for (i, c) in cols.iter().enumerate() {
        let at = wide_profiles.len();
        match profiles[i] {
            Some(p) if !long[i] => {
                wide_profiles.push(p);
                wide_sums.push(plain_sums[i]);
                places.push((i, None));
            }
            _ => {
                let max_abs = c.hi.iter().fold(0.0f64, |m, &x| if x.abs() > m { x.abs() } else { m });
                let region = next_real * MAX_SLICES * stride;
                next_real += 1;
                let dst = &mut buf[region..region + MAX_SLICES * stride];
                let real = reals::kernel_columns(
                    Portable,
                    c.hi,
                    None,
                    n,
                    max_abs,
                    Reading { decimals: c.decimals, binary: long[i] },
                    dst,
                )?;
                decimals[i] = real.decimal;
                for (k, (profile, &sum)) in real.profiles.into_iter().zip(&real.sums).enumerate() {
                    wide_profiles.push(profile);
                    wide_sums.push(sum);
                    places.push((i, Some(region + k * stride)));
                }
            }
        }
        groups.push(at..wide_profiles.len());
    }
    let wide = wide_profiles.len();
    if !DyadicProfile::all_exact(&wide_profiles, n) {
        return None;
    }
    let wide_cols: Vec<ColumnRef<'_>> = places
        .iter()
        .map(|&(i, at)| match at {
            Some(at) => ColumnRef::plain(&buf[at..at + n]),
            None => cols[i],
        })
        .collect();
    let all: Vec<usize> = (0..wide).collect();
    let g = exact_gram(isa, &wide_cols, &all, None);
    let mut s2 = vec![Dd::ZERO; wide * wide];
    for a in 0..wide {
        for b in a..wide {
            s2[a * wide + b] = Dd::from(g[a * wide + b]);
            s2[b * wide + a] = Dd::from(g[a * wide + b]);
        }
    }
    let raw = RawMoments {
        sum_w: Dd::from(n as f64),
        s1: wide_sums.into_iter().map(Dd::from).collect(),
        s2,
        nonzero: vec![0; wide],
        exact: true,
    };
    Some(reals::unshift(slices::fold(&raw, &groups, nonzero), &decimals))
}

/// The sum of eight lanes in the fixed order every path uses: halves
/// added lane by lane, then quarters, then the last pair — what
/// `_mm512_reduce_add_pd` computes, written out so that portable code
/// gives the same bits.
#[inline(always)]
pub fn reduce8(l: [f64; 8]) -> f64 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}
