//! What the second pass is asked and what it answers: the fitted model it
//! needs from the first pass ([`SecondPassSpec`]), the covariance asked for
//! ([`CovType`]), and what a state keeps of its result
//! ([`ResidualSnapshot`]). Kept apart from the pass itself
//! ([`crate::residuals`]) so that the design, the results and the state
//! name these types without depending on the kernels.

use crate::formula::columns::Design;

/// What the second pass needs from the first: the design, β and (XᵀWX)⁻¹.
#[derive(Clone, Debug)]
pub struct SecondPassSpec {
    pub design: Design,
    /// Coefficients in design order (Intercept first when present); aliased
    /// ones as 0 (the residuals are the same for every least-squares β).
    pub params: Vec<f64>,
    /// `(XᵀWX)⁻¹` (drop or pseudo-inverse), `p × p` row-major.
    pub xtx_inv: Vec<f64>,
    /// Column whose levels are the clusters, for cluster-robust errors.
    pub cluster: Option<String>,
    /// The covariance asked for: only its meat is accumulated (leverages
    /// only for HC2/HC3), so the default pass costs little beyond reading.
    pub cov: CovType,
}

/// Covariance types of the standard errors, as statsmodels' `cov_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum CovType {
    #[default]
    #[value(name = "nonrobust")]
    Nonrobust,
    #[value(name = "HC0")]
    Hc0,
    #[value(name = "HC1")]
    Hc1,
    #[value(name = "HC2")]
    Hc2,
    #[value(name = "HC3")]
    Hc3,
    #[value(name = "cluster")]
    Cluster,
}

impl CovType {
    /// statsmodels' summary note for this covariance type.
    pub fn description(self) -> &'static str {
        match self {
            CovType::Nonrobust => {
                "Standard Errors assume that the covariance matrix of the errors is correctly specified."
            }
            CovType::Hc0 => "Standard Errors are heteroscedasticity robust (HC0)",
            CovType::Hc1 => "Standard Errors are heteroscedasticity robust (HC1)",
            CovType::Hc2 => "Standard Errors are heteroscedasticity robust (HC2)",
            CovType::Hc3 => "Standard Errors are heteroscedasticity robust (HC3)",
            CovType::Cluster => "Standard Errors are robust to cluster correlation (cluster)",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CovType::Nonrobust => "nonrobust",
            CovType::Hc0 => "HC0",
            CovType::Hc1 => "HC1",
            CovType::Hc2 => "HC2",
            CovType::Hc3 => "HC3",
            CovType::Cluster => "cluster",
        }
    }
}

/// Residual diagnostics as statsmodels' summary shows them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResidualDiagnostics {
    pub omnibus: f64,
    pub prob_omnibus: f64,
    pub skew: f64,
    pub kurtosis: f64,
    pub jarque_bera: f64,
    pub prob_jb: f64,
    pub durbin_watson: f64,
}

/// What a state keeps of its last second pass (so that `summary` shows what
/// `fit` showed); dropped when the state changes.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ResidualSnapshot {
    pub cov_type: CovType,
    #[serde(flatten)]
    pub diagnostics: ResidualDiagnostics,
    /// The robust covariance (`p × p`), when `cov_type` is robust.
    pub robust_cov: Option<Vec<f64>>,
    /// Coefficients without a robust error (HC2/HC3, leverage 1).
    pub undefined: Vec<usize>,
    pub leverage_one: u64,
    pub n_clusters: usize,
}
