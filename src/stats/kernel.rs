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

use crate::dd::{two_prod_err_split, two_sum, Dd};

const LANES: usize = 8;

/// One column of a block: the `f64` values and, for derived terms evaluated
/// in double-double, the low words (`value = hi + lo`).
#[derive(Clone, Copy)]
pub struct ColumnRef<'a> {
    pub hi: &'a [f64],
    pub lo: Option<&'a [f64]>,
}

/// Raw (uncentered) block sums in double-double.
#[derive(Clone, Debug)]
pub struct RawMoments {
    pub sum_w: Dd,
    pub s1: Vec<Dd>,
    /// Row-major `m × m`, both triangles filled.
    pub s2: Vec<Dd>,
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
    /// Branch-free passes, so they vectorise.
    #[inline(always)]
    pub fn of(col: &[f64]) -> Option<DyadicProfile> {
        // Integrality by the 2⁵² rounding trick: plain adds, so it
        // vectorises on any x86-64 (no `trunc` call); |t| ≥ 2⁵² counts as
        // integral and is caught by the magnitude bound; NaN fails. The
        // magnitude is found in the same pass, by a select rather than
        // `f64::max` (whose NaN rule blocks vectorisation).
        #[inline(always)]
        fn integral_and_max(col: &[f64], scale: f64) -> (bool, f64) {
            const MAGIC: f64 = 4_503_599_627_370_496.0; // 2⁵²
            let mut ok = [true; LANES];
            let mut mx = [0.0f64; LANES];
            let mut step = |l: usize, v: f64| {
                let a = (v * scale).abs();
                ok[l] &= ((a + MAGIC) - MAGIC == a) | (a >= MAGIC);
                mx[l] = if a > mx[l] { a } else { mx[l] };
            };
            let mut it = col.chunks_exact(LANES);
            for c in &mut it {
                for l in 0..LANES {
                    step(l, c[l]);
                }
            }
            for (l, &v) in it.remainder().iter().enumerate() {
                step(l, v);
            }
            (ok.iter().all(|&o| o), mx.iter().fold(0.0f64, |m, &a| if a > m { a } else { m }) / scale)
        }
        // Most columns are integers: one pass. Otherwise the coarsest of a
        // few scales that works (a finer `q` than needed is only conservative).
        for q in [0u32, 1, 4, 8, MAX_Q] {
            let (ok, max_abs) = integral_and_max(col, (1u64 << q) as f64);
            if ok {
                return Some(DyadicProfile { q, max_abs });
            }
        }
        None
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

/// `Σ a_r` in plain arithmetic over eight lanes; exact under
/// [`DyadicProfile::exact_sum`], so the lane order does not matter.
#[inline(always)]
fn plain_sum(a: &[f64]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut it = a.chunks_exact(LANES);
    for c in &mut it {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    for (l, &x) in it.remainder().iter().enumerate() {
        acc[l] += x;
    }
    acc.iter().sum()
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
fn exact_gram(cols: &[ColumnRef<'_>], idx: &[usize]) -> Vec<f64> {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, Mat, Par};
    let n = cols[idx[0]].hi.len();
    let k = idx.len();
    let mut z = Mat::<f64>::zeros(n, k);
    for (c, &i) in idx.iter().enumerate() {
        z.col_mut(c).try_as_col_major_mut().expect("contiguous column").as_slice_mut().copy_from_slice(cols[i].hi);
    }
    let mut g = Mat::<f64>::zeros(k, k);
    matmul(g.as_mut(), Accum::Replace, z.transpose(), z.as_ref(), 1.0, Par::Seq);
    let mut out = vec![0.0; k * k];
    for c in 0..k {
        for r in c..k {
            out[c * k + r] = g[(r, c)];
        }
    }
    out
}

#[inline(always)]
fn raw_moments_impl<const FMA: bool>(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    raw_moments_with::<FMA, true>(cols, weights)
}

#[inline(always)]
fn raw_moments_with<const FMA: bool, const FAST: bool>(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    let m = cols.len();
    let n = cols.first().map_or(0, |c| c.hi.len());
    let mut s1 = vec![Dd::ZERO; m];
    let mut s2 = vec![Dd::ZERO; m * m];
    let sum_w;
    match weights {
        None => {
            sum_w = Dd::from(n as f64);
            let plain = cols.iter().all(|c| c.lo.is_none());
            // A plain loop (not an iterator adapter) keeps the profile
            // inside this function, compiled with its target features.
            let mut profiles: Vec<Option<DyadicProfile>> = Vec::with_capacity(m);
            for c in cols {
                profiles.push(if FAST && c.lo.is_none() { DyadicProfile::of(c.hi) } else { None });
            }
            // Columns whose every pair is exact in plain arithmetic: one
            // blocked product (faer's gemm) gives all their sums at once.
            let exact_set: Vec<usize> = (0..m).filter(|&i| profiles[i].is_some()).collect();
            let all_exact = exact_set.iter().all(|&i| {
                exact_set.iter().all(|&j| DyadicProfile::exact_dot(&profiles[i].unwrap(), &profiles[j].unwrap(), n))
            });
            let gram = if all_exact && exact_set.len() > 1 { Some(exact_gram(cols, &exact_set)) } else { None };
            let pos: Vec<Option<usize>> = {
                let mut p = vec![None; m];
                for (k, &i) in exact_set.iter().enumerate() {
                    p[i] = Some(k);
                }
                p
            };
            for i in 0..m {
                s1[i] = match profiles[i] {
                    Some(p) if p.exact_sum(n) => Dd::from(plain_sum(cols[i].hi)),
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
    RawMoments { sum_w, s1, s2 }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn raw_moments_fma(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    raw_moments_impl::<true>(cols, weights)
}

/// Compensated raw moments of a block; dispatches at run time to an
/// AVX2+FMA build of the same code where the CPU has it.
pub fn raw_moments(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function was compiled for.
            return unsafe { raw_moments_fma(cols, weights) };
        }
    }
    raw_moments_impl::<false>(cols, weights)
}

/// The compensated loop only (no exact fast path), so tests can check that
/// the fast path returns the same bits.
pub fn raw_moments_compensated(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    raw_moments_with::<false, false>(cols, weights)
}

/// The portable path, exposed so tests can check it agrees bit for bit.
pub fn raw_moments_portable(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    raw_moments_impl::<false>(cols, weights)
}
