//! The residuals' moments and Durbin–Watson: per chunk, `Σ eᵏ` (k = 1..4)
//! and `Σ (eₜ − eₜ₋₁)²` in eight `f64` lanes, added to double-double totals;
//! the chunk's first and last residual carry Durbin–Watson across seams.
//! From them skew, kurtosis, Omnibus and Jarque–Bera as statsmodels.

use super::ResidualStats;
use crate::dd::Dd;
use crate::second_pass::ResidualDiagnostics;
use crate::stats::portable::row_kernels::RowKernels;
use crate::stats::portable::Portable;

/// `Σ e, Σ e², Σ e³, Σ e⁴` and `Σ (e_t − e_{t−1})²` of a chunk's
/// residuals (see [`RowKernels::residual_sums`]): the same arithmetic on
/// every instruction set, so the same bits.
pub(super) fn residual_sums(e: &[f64]) -> ([f64; 4], f64) {
    #[cfg(gramfit_x86)]
    {
        if let Some(k) = crate::isa::Avx512::get() {
            return k.residual_sums(e);
        }
        if let Some(k) = crate::isa::Avx2::get() {
            return k.residual_sums(e);
        }
    }
    Portable.residual_sums(e)
}

impl ResidualStats {
    /// Moments and Durbin–Watson of the residuals of a chunk's kept rows,
    /// in file order: chunk sums in f64 (lanes), then added to the
    /// double-double totals.
    pub(crate) fn add_residuals(&mut self, e: &[f64]) {
        self.add_residual_sums(e, residual_sums(e));
    }

    /// [`add_residuals`](Self::add_residuals) with the chunk's sums known.
    pub(super) fn add_residual_sums(&mut self, e: &[f64], (sums, mut dw): ([f64; 4], f64)) {
        if e.is_empty() {
            return;
        }
        for (p, s) in self.power.iter_mut().zip(sums) {
            *p += Dd::from(s);
        }
        if let Some(prev) = self.last {
            let d = e[0] - prev;
            dw += d * d;
        }
        self.dw_num += Dd::from(dw);
        if self.first.is_none() {
            self.first = Some(e[0]);
        }
        self.last = e.last().copied();
        self.n += e.len() as u64;
    }
}

/// scipy.stats.skewtest's Z.
fn skew_z(b2: f64, n: f64) -> f64 {
    let y = b2 * ((n + 1.0) * (n + 3.0) / (6.0 * (n - 2.0))).sqrt();
    let beta2 =
        3.0 * (n * n + 27.0 * n - 70.0) * (n + 1.0) * (n + 3.0) / ((n - 2.0) * (n + 5.0) * (n + 7.0) * (n + 9.0));
    let w2 = -1.0 + (2.0 * (beta2 - 1.0)).sqrt();
    let delta = 1.0 / (0.5 * w2.ln()).sqrt();
    let alpha = (2.0 / (w2 - 1.0)).sqrt();
    let y = if y == 0.0 { 1.0 } else { y };
    delta * (y / alpha + ((y / alpha).powi(2) + 1.0).sqrt()).ln()
}

/// scipy.stats.kurtosistest's Z (b2: Pearson kurtosis).
fn kurtosis_z(b2: f64, n: f64) -> f64 {
    let e = 3.0 * (n - 1.0) / (n + 1.0);
    let varb2 = 24.0 * n * (n - 2.0) * (n - 3.0) / ((n + 1.0).powi(2) * (n + 3.0) * (n + 5.0));
    let x = (b2 - e) / varb2.sqrt();
    let sqrtbeta1 = 6.0 * (n * n - 5.0 * n + 2.0) / ((n + 7.0) * (n + 9.0))
        * (6.0 * (n + 3.0) * (n + 5.0) / (n * (n - 2.0) * (n - 3.0))).sqrt();
    let a = 6.0 + 8.0 / sqrtbeta1 * (2.0 / sqrtbeta1 + (1.0 + 4.0 / (sqrtbeta1 * sqrtbeta1)).sqrt());
    let term1 = 1.0 - 2.0 / (9.0 * a);
    let denom = 1.0 + x * (2.0 / (a - 4.0)).sqrt();
    let term2 = denom.signum() * ((1.0 - 2.0 / a) / denom.abs()).cbrt();
    (term1 - term2) / (2.0 / (9.0 * a)).sqrt()
}

impl ResidualStats {
    /// Skew, kurtosis, Omnibus, Jarque–Bera and Durbin–Watson.
    pub fn diagnostics(&self) -> ResidualDiagnostics {
        let n = self.n as f64;
        let nd = Dd::from(n);
        let m1 = self.power[0] / nd;
        let s2 = self.power[1] / nd;
        let s3 = self.power[2] / nd;
        let s4 = self.power[3] / nd;
        // Central moments from raw ones, in double-double.
        let c2 = s2 - m1 * m1;
        let c3 = s3 - Dd::from(3.0) * m1 * s2 + Dd::from(2.0) * m1 * m1 * m1;
        let c4 = s4 - Dd::from(4.0) * m1 * s3 + Dd::from(6.0) * m1 * m1 * s2 - Dd::from(3.0) * m1 * m1 * m1 * m1;
        let (c2, c3, c4) = (c2.to_f64(), c3.to_f64(), c4.to_f64());
        let skew = c3 / c2.powf(1.5);
        let kurtosis = c4 / (c2 * c2);
        let jb = n / 6.0 * (skew * skew + 0.25 * (kurtosis - 3.0).powi(2));
        let (omnibus, prob_omnibus) = if self.n >= 8 {
            let k2 = skew_z(skew, n).powi(2) + kurtosis_z(kurtosis, n).powi(2);
            (k2, (-k2 / 2.0).exp())
        } else {
            (f64::NAN, f64::NAN)
        };
        ResidualDiagnostics {
            omnibus,
            prob_omnibus,
            skew,
            kurtosis,
            jarque_bera: jb,
            prob_jb: (-jb / 2.0).exp(),
            durbin_watson: (self.dw_num / self.power[1]).to_f64(),
        }
    }
}
