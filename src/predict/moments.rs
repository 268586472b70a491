//! The kernel of a plain model's predictions: each row's mean and the
//! quadratic form of its standard error, the same bits on every
//! instruction set.

use std::borrow::Cow;

/// The design columns of a chunk's kept rows (each `nk` long) and what a
/// prediction needs of the fit.
pub(super) struct Moments<'a> {
    pub x: &'a [Cow<'a, [f64]>],
    pub nk: usize,
    pub beta: &'a [f64],
    pub active: &'a [usize],
    /// Per active column `a`: `V_aa`, then `V_ab + V_ba` for each `b < a`.
    pub pairs: &'a [f64],
}

/// Rows a kernel step keeps in registers: enough independent sums to
/// hide the adds' latency (each row's terms are one dependent chain).
const LANES: usize = 32;

impl Moments<'_> {
    /// `mean = x β` and, with `var`, `xᵀ V x` per row (written, not added).
    pub fn mean_var(&self, mean: &mut [f64], var: Option<&mut [f64]>) {
        #[cfg(gramfit_x86)]
        if crate::isa::Avx512::get().is_some() {
            // SAFETY: the token proves AVX-512F.
            return unsafe { self.mean_var_avx512(mean, var) };
        }
        #[cfg(gramfit_x86)]
        if crate::isa::Avx2::get().is_some() {
            // SAFETY: the token proves AVX2.
            return unsafe { self.mean_var_avx2(mean, var) };
        }
        self.mean_var_body(mean, var)
    }

    /// The same code compiled for 256-bit vectors with FMA: the same
    /// operations in the same order, so the same bits (a fused
    /// multiply-add rounds once wherever it runs: glibc's `fma` in a
    /// portable build).
    #[cfg(gramfit_x86)]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn mean_var_avx2(&self, mean: &mut [f64], var: Option<&mut [f64]>) {
        self.mean_var_body(mean, var)
    }

    /// And for 512-bit vectors (a step's 32 rows in four registers).
    #[cfg(gramfit_x86)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn mean_var_avx512(&self, mean: &mut [f64], var: Option<&mut [f64]>) {
        self.mean_var_body(mean, var)
    }

    /// `LANES` rows at a time, their sums in registers: each row's mean
    /// as `Σ_j β_j x_j` in column order, its variance as `Σ_a x_a u_a`
    /// with `u_a = V_aa x_a + Σ_{b<a} (V_ab + V_ba) x_b`, each sum a chain
    /// of fused multiply-adds in that order (one per pair of columns) — a
    /// fixed order per row, so any tiling (and any thread count) gives the
    /// same bits.
    #[inline(always)]
    fn mean_var_body(&self, mean: &mut [f64], mut var: Option<&mut [f64]>) {
        let (nk, k) = (self.nk, self.active.len());
        let full = nk - nk % LANES;
        let lanes = |j: usize, r: usize| -> [f64; LANES] { self.x[j][r..r + LANES].try_into().expect("LANES rows") };
        for r in (0..full).step_by(LANES) {
            let mut m = [0.0f64; LANES];
            for (j, &b) in self.beta.iter().enumerate() {
                if b != 0.0 {
                    let x = lanes(j, r);
                    for i in 0..LANES {
                        m[i] += b * x[i];
                    }
                }
            }
            mean[r..r + LANES].copy_from_slice(&m);
            let Some(var) = var.as_deref_mut() else { continue };
            let mut v = [0.0f64; LANES];
            let mut pair = self.pairs.iter();
            for a in 0..k {
                let xa = lanes(self.active[a], r);
                let d = *pair.next().expect("a pair");
                let mut u: [f64; LANES] = std::array::from_fn(|i| d * xa[i]);
                for b in 0..a {
                    let c = *pair.next().expect("a pair");
                    if c != 0.0 {
                        let xb = lanes(self.active[b], r);
                        for i in 0..LANES {
                            u[i] = c.mul_add(xb[i], u[i]);
                        }
                    }
                }
                for i in 0..LANES {
                    v[i] = xa[i].mul_add(u[i], v[i]);
                }
            }
            var[r..r + LANES].copy_from_slice(&v);
        }
        for r in full..nk {
            let mut m = 0.0f64;
            for (j, &b) in self.beta.iter().enumerate() {
                if b != 0.0 {
                    m += b * self.x[j][r];
                }
            }
            mean[r] = m;
            let Some(var) = var.as_deref_mut() else { continue };
            let mut v = 0.0f64;
            let mut pair = self.pairs.iter();
            for a in 0..k {
                let xa = self.x[self.active[a]][r];
                let mut u = *pair.next().expect("a pair") * xa;
                for b in 0..a {
                    let c = *pair.next().expect("a pair");
                    if c != 0.0 {
                        u = c.mul_add(self.x[self.active[b]][r], u);
                    }
                }
                v = xa.mul_add(u, v);
            }
            var[r] = v;
        }
    }
}
