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

#[inline(always)]
fn raw_moments_impl<const FMA: bool>(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    let m = cols.len();
    let n = cols.first().map_or(0, |c| c.hi.len());
    let mut s1 = vec![Dd::ZERO; m];
    let mut s2 = vec![Dd::ZERO; m * m];
    let sum_w;
    match weights {
        None => {
            sum_w = Dd::from(n as f64);
            let plain = cols.iter().all(|c| c.lo.is_none());
            for i in 0..m {
                s1[i] = sum2(cols[i].hi, cols[i].lo);
                for j in i..m {
                    let v = if plain {
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

/// The portable path, exposed so tests can check it agrees bit for bit.
pub fn raw_moments_portable(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    raw_moments_impl::<false>(cols, weights)
}
