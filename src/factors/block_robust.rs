//! Robust covariances (HC0–HC3, CRV1) of a fit by blocks
//! ([`super::estimated`]), from the second pass's per-level and
//! per-cluster sums ([`super::LevelScores`]).

use super::estimated::{coefficient_forms, FullDesign, LevelPart};
use super::within::WithinFit;
use crate::results::{apply_robust, OlsResults};

/// What a robust covariance of a fit by blocks is made of: per level `R_l`
/// (`k` values), per pair of levels `P_lm`, and `Φ` (`k × k`), with a
/// small-sample factor (see [`apply_block_robust`]).
struct BlockMeat {
    r: Vec<Vec<f64>>,
    pairs: Pairs,
    phi: Vec<f64>,
    factor: f64,
}

/// `P_lm`: diagonal (heteroskedasticity-robust: `Q_l`), or sparse over
/// the clusters (`Σ_G U_Gl U_Gm`, each level's `(cluster, U)` sorted).
enum Pairs {
    Diagonal(Vec<f64>),
    Clusters(Vec<Vec<(u32, f64)>>),
}

impl Pairs {
    fn get(&self, l: usize, m: usize) -> f64 {
        match self {
            Pairs::Diagonal(q) => {
                if l == m {
                    q[l]
                } else {
                    0.0
                }
            }
            Pairs::Clusters(u) => {
                let (a, b) = (&u[l], &u[m]);
                let (mut i, mut j, mut s) = (0, 0, 0.0);
                while i < a.len() && j < b.len() {
                    match a[i].0.cmp(&b[j].0) {
                        std::cmp::Ordering::Less => i += 1,
                        std::cmp::Ordering::Greater => j += 1,
                        std::cmp::Ordering::Equal => {
                            s += a[i].1 * b[j].1;
                            i += 1;
                            j += 1;
                        }
                    }
                }
                s
            }
        }
    }
}

/// `M⁻¹v` for the within inverse `minv` (`k × k`).
fn times(minv: &[f64], v: &[f64], k: usize) -> Vec<f64> {
    (0..k).map(|i| (0..k).map(|j| minv[i * k + j] * v[j]).sum()).collect()
}

/// The robust covariance a second pass asks for, from its sums: HC0–HC3
/// from the per-level sums, cluster (CRV1) from the clusters' score sums
/// and each cluster's `Σ u` per level.
fn block_meat(
    res: &OlsResults,
    within: &WithinFit,
    scores: &super::LevelScores,
    clusters: Option<(&[f64], usize)>,
) -> BlockMeat {
    use crate::second_pass::CovType;
    let k = within.mean.len() - 1;
    let n_levels = within.factors[0].levels.len();
    let minv: Vec<f64> = within.sol.normalized_cov.iter().map(|d| d.to_f64()).collect();
    let sandwich = |m: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                out[i * k + j] =
                    (0..k).map(|a| (0..k).map(|b| minv[i * k + a] * m[a * k + b] * minv[b * k + j]).sum::<f64>()).sum();
            }
        }
        out
    };
    let (n, df_resid) = (res.nobs as f64, res.df_resid);
    match clusters {
        None => BlockMeat {
            r: scores.r.chunks(k.max(1)).take(n_levels).map(|v| times(&minv, v, k)).collect(),
            pairs: Pairs::Diagonal(scores.q.clone()),
            phi: sandwich(&scores.meat),
            factor: if res.cov_type == CovType::Hc1 { n / df_resid } else { 1.0 },
        },
        Some((sums, groups)) => {
            // F_G = M⁻¹ S_G; T_l = Σ_G U_Gl F_G; Φ = Σ_G F_G F_Gᵀ.
            let f: Vec<Vec<f64>> = sums.chunks(k.max(1)).take(groups).map(|v| times(&minv, v, k)).collect();
            let mut phi = vec![0.0; k * k];
            for fg in &f {
                for i in 0..k {
                    for j in 0..k {
                        phi[i * k + j] += fg[i] * fg[j];
                    }
                }
            }
            let mut entries: Vec<(&(u32, u32), &f64)> = scores.cluster_level.iter().collect();
            entries.sort_unstable_by_key(|&(&(g, l), _)| (l, g));
            let mut u: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n_levels];
            let mut r = vec![vec![0.0; k]; n_levels];
            for (&(g, l), &v) in entries {
                u[l as usize].push((g, v));
                for (t, x) in r[l as usize].iter_mut().zip(&f[g as usize]) {
                    *t += v * x;
                }
            }
            let g = groups as f64;
            BlockMeat { r, pairs: Pairs::Clusters(u), phi, factor: g / (g - 1.0) * (n - 1.0) / df_resid }
        }
    }
}

/// A robust covariance of a fit by blocks, from the second pass's
/// [`super::LevelScores`] (and for clusters the clusters' score sums and
/// count), put into `res` with `snap` (the second pass's moments).
///
/// Each coefficient's influence on row `i` of level `g` is `c[g]·u/W_g −
/// aᵀφ` (`u = w·e`, `φ = M⁻¹x̃·u`, `c` its level contrast: `e_r`, `e_l −
/// e_r` or 0; `a` as in [`super::estimated::block_results`]). Summed over rows (HC, with the
/// meat's weights `u²/(1 − h)^power`) or within clusters first (CRV1),
/// two coefficients' covariance is
///
/// ```text
/// Σ_lm c[l]c'[m]·P_lm/(W_l W_m) − Σ_l c[l]/W_l·a'ᵀR_l − Σ_m c'[m]/W_m·aᵀR_m + aᵀΦa'
/// ```
///
/// — rows: `P_ll = Σ f`, `R_l = M⁻¹Σ f·x̃` per level, `Φ = M⁻¹(Σ f·x̃x̃ᵀ)M⁻¹`;
/// clusters: `P_lm = Σ_G U_Gl U_Gm`, `R_l = Σ_G U_Gl F_G`, `Φ = Σ_G F_G F_Gᵀ`
/// with `U_Gl = Σ u` and `F_G = M⁻¹Σ u·x̃` over the cluster's rows (of
/// level `l`). The slopes' block is the absorbed fit's sandwich. Scaled as statsmodels scales: HC1 by `n/(n − p)`, CRV1 by
/// `G/(G − 1)·(n − 1)/(n − p)`. HC2/HC3 leave a level of one row's
/// contrast undefined, as the dense path does. The whole matrix (for
/// `cov_params` and the robust F) is formed up to
/// [`crate::report::FULL_COV_COLUMNS`] columns or with `full_cov`.
pub fn apply_block_robust(
    res: &mut OlsResults,
    within: &WithinFit,
    full: &FullDesign,
    scores: &super::LevelScores,
    clusters: Option<(&[f64], usize)>,
    mut snap: crate::second_pass::ResidualSnapshot,
    full_cov: bool,
) {
    use crate::second_pass::CovType;
    res.cov_type = snap.cov_type;
    let meat = block_meat(res, within, scores, clusters);
    let fac = &within.factors[0];
    let k = within.mean.len() - 1;
    let cols = coefficient_forms(within, full);
    let r = full.reference;
    let inv_w = |l: usize| 1.0 / fac.weight[l].to_f64();
    let contrast = |lp: LevelPart| -> Vec<(usize, f64)> {
        match lp {
            LevelPart::None => Vec::new(),
            LevelPart::Reference => vec![(r, 1.0)],
            LevelPart::Difference(l) => vec![(l, 1.0), (r, -1.0)],
        }
    };
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let phi_times =
        |a: &[f64]| -> Vec<f64> { (0..k).map(|i| (0..k).map(|j| meat.phi[i * k + j] * a[j]).sum()).collect() };
    let cov = |i: usize, j: usize| -> f64 {
        let ((li, ai, _), (lj, aj, _)) = (&cols[i], &cols[j]);
        let (ci, cj) = (contrast(*li), contrast(*lj));
        let mut v = dot(ai, &phi_times(aj));
        for &(l, c) in &ci {
            for &(m, d) in &cj {
                v += c * d * meat.pairs.get(l, m) * inv_w(l) * inv_w(m);
            }
            v -= c * inv_w(l) * dot(aj, &meat.r[l]);
        }
        for &(m, d) in &cj {
            v -= d * inv_w(m) * dot(ai, &meat.r[m]);
        }
        meat.factor * v
    };
    if matches!(snap.cov_type, CovType::Hc2 | CovType::Hc3) {
        snap.undefined = cols
            .iter()
            .enumerate()
            .filter(|(_, (lp, _, _))| matches!(lp, LevelPart::Difference(l) if scores.ordinary[*l] == 0))
            .map(|(i, _)| i)
            .collect();
        snap.leverage_one = scores.leverage_one;
    }
    if let Some((_, groups)) = clusters {
        snap.n_clusters = groups;
    }
    let whole = full_cov || cols.len() <= crate::report::FULL_COV_COLUMNS;
    res.residuals = Some(snap.clone());
    apply_robust(res, &snap, &cov, whole);
}
