//! Predictions from an absorbed fit: `ŷ = ȳ + Σ_j β_j (x_j − x̄_j) +
//! Σ_f effect_f[level]`, each level's effect recovered from its
//! projections (`effect = proj[y] − Σ_j β_j proj[x_j]`, see
//! [`super::within`]): the fitted value of the dummy model, so on the
//! fit's own rows the residuals sum to zero within every level and their
//! squares to the fit's SSR.
//!
//! A fit by blocks (one factor estimated, [`super::estimated`]) also gives
//! each mean's variance. In cell-means coding the dummy model's `XᵀWX` is
//! `[[D, S], [Sᵀ, X_xᵀWX_x]]` with `D = diag(W_l)` and `S_l = W_l x̄_lᵀ`;
//! its Schur complement is the within moments `M`, so for a row of level
//! `l` and slope columns `x` (block inversion, e.g. Golub & Van Loan,
//! *Matrix Computations*, 4th ed., §3.2.10):
//! `Var(ŷ) = σ² (1/W_l + dᵀ M⁻¹ d)`, `d = x − x̄_l` — exactly the dense
//! fit's `σ² x_fullᵀ (XᵀWX)⁻¹ x_full`, without the `(L + k)²` matrix. An
//! absorbed fit (`| fe`) estimates no variance of its effects (nor do
//! fixest and pyfixest), so it gives means only.

use super::accumulate::{block_codes, code_rows};
use super::within::WithinFit;
use crate::design::{categorical_column, DesignBuilder, DesignError, LevelMap, MissingPolicy};
use crate::formula::ModelSpec;
use crate::level::{ColumnKey, Level};
use arrow::array::RecordBatch;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// What a prediction needs of an absorbed fit.
#[derive(Clone, Debug)]
pub struct AbsorbedModel {
    pub columns: Vec<String>,
    /// Per absorbed column: each level's effect.
    effects: Vec<LevelMap<Level>>,
    effect: Vec<Vec<f64>>,
    mean: Vec<f64>,
    beta: Vec<f64>,
    key_col: HashMap<ColumnKey, usize>,
    /// The design of the part before `|`, its response a constant (new
    /// rows need not have it).
    builder: DesignBuilder,
    /// Per categorical factor of that part: its column and the levels the
    /// fit saw (another level has no coefficient).
    categorical: Vec<(String, BTreeSet<Level>)>,
    /// A fit by blocks: what a mean's variance needs.
    spread: Option<MeanSpread>,
}

/// `Var(ŷ) = σ²(1/W_l + dᵀM⁻¹d)` for a row of level `l` of the one factor
/// (see the module's note).
#[derive(Clone, Debug)]
struct MeanSpread {
    /// `σ²`.
    scale: f64,
    spread: super::within::LevelSpread,
    /// The factor's `proj`: its levels' centered means of `[x…, y]`
    /// (row-major, `k + 1` a level).
    level_means: Vec<f64>,
}

/// Per chunk: the means (NaN where not predicted), their variances (a fit
/// by blocks only) and the tallies.
pub struct AbsorbedPrediction {
    pub mean: Vec<f64>,
    pub var: Option<Vec<f64>>,
    pub unseen: BTreeMap<String, u64>,
    pub missing: u64,
    /// The first row with a missing predictor or level.
    pub first_missing: Option<usize>,
    /// The first row with a level the fit did not estimate: `(column,
    /// level, row)`.
    pub first_unseen: Option<(String, String, usize)>,
}

impl AbsorbedPrediction {
    /// Count a row with a level the fit did not estimate.
    fn note_unseen(&mut self, column: &str, level: String, row: usize) {
        *self.unseen.entry(format!("{column} = {level}")).or_insert(0) += 1;
        if self.first_unseen.as_ref().is_none_or(|f| row < f.2) {
            self.first_unseen = Some((column.to_string(), level, row));
        }
    }
}

impl AbsorbedModel {
    /// The model of a fit: `spec` the part before `|` as fitted, `levels`
    /// the levels its factors saw.
    pub fn new(
        fit: &WithinFit,
        design: &crate::formula::columns::Design,
        spec: &Arc<ModelSpec>,
        levels: &[BTreeSet<Level>],
    ) -> Self {
        let builder = DesignBuilder::new(Arc::new(spec.without_response()), None, MissingPolicy::Drop);
        let categorical = spec.categorical_levels(levels);
        let k = fit.ne.k();
        let k1 = k + 1;
        let beta: Vec<f64> = fit.sol.params.iter().map(|b| b.map_or(0.0, |d| d.to_f64())).collect();
        let key_col = design.key_columns();
        let mut effects = Vec::new();
        let mut effect = Vec::new();
        for f in &fit.factors {
            let ix: LevelMap<Level> = f.levels.iter().cloned().enumerate().map(|(i, l)| (l, i as u32)).collect();
            let e: Vec<f64> = (0..f.levels.len())
                .map(|l| {
                    let p = &f.proj[l * k1..(l + 1) * k1];
                    p[k] - p[..k].iter().zip(&beta).map(|(x, b)| x * b).sum::<f64>()
                })
                .collect();
            effects.push(ix);
            effect.push(e);
        }
        AbsorbedModel {
            columns: fit.factors.iter().map(|f| f.column.clone()).collect(),
            effects,
            effect,
            mean: fit.mean.clone(),
            beta,
            key_col,
            builder,
            categorical,
            spread: None,
        }
    }

    /// With the variance of each mean: a fit by blocks' (one factor, its
    /// levels estimated) whose residual variance is `scale`.
    pub fn with_variance(mut self, fit: &WithinFit, scale: f64) -> Self {
        debug_assert_eq!(fit.factors.len(), 1, "one factor estimated by blocks");
        self.spread = Some(MeanSpread {
            scale,
            spread: super::within::LevelSpread::of(fit),
            level_means: fit.factors[0].proj.clone(),
        });
        self
    }

    /// Every column a prediction reads.
    pub fn source_columns(&self) -> Vec<String> {
        let mut cols = self.builder.source_columns();
        for c in &self.columns {
            if !cols.contains(c) {
                cols.push(c.clone());
            }
        }
        cols
    }

    /// The predicted means of a chunk's rows: NaN for a row with a missing
    /// predictor or level (counted), or with a level the fit did not
    /// estimate (never seen, or a removed singleton: counted by level).
    pub fn compute(
        &self,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<AbsorbedPrediction, DesignError> {
        let n = chunk.num_rows();
        let mut out = AbsorbedPrediction {
            mean: vec![f64::NAN; n],
            var: self.spread.as_ref().map(|_| vec![f64::NAN; n]),
            unseen: BTreeMap::new(),
            missing: 0,
            first_missing: None,
            first_unseen: None,
        };
        // Rows with a level of a design factor the fit never saw: no
        // coefficient for it.
        let mut unseen_row = vec![false; n];
        for (column, seen) in &self.categorical {
            let (codes, table) = categorical_column(chunk, column)?;
            let new: Vec<bool> = table.iter().map(|l| !seen.contains(l)).collect();
            for (r, &c) in codes.iter().enumerate() {
                if c != u32::MAX && new[c as usize] && !unseen_row[r] {
                    unseen_row[r] = true;
                    out.note_unseen(column, table[c as usize].to_string(), r);
                }
            }
        }
        let (sub, coded) = code_rows(chunk, &self.columns)?;
        let rows: Vec<usize> = match &sub {
            Some((_, rows)) => rows.clone(),
            None => (0..n).collect(),
        };
        out.missing += (n - rows.len()) as u64;
        let block = match &sub {
            Some((b, rows)) => self.builder.block(b, &|r| at(rows[r]))?,
            None => self.builder.block(chunk, at)?,
        };
        let kept: Vec<usize> = block.kept.clone().unwrap_or_else(|| (0..rows.len()).collect());
        out.missing += (rows.len() - kept.len()) as u64;
        if out.missing > 0 {
            let mut predicted = vec![false; n];
            kept.iter().for_each(|&i| predicted[rows[i]] = true);
            out.first_missing = predicted.iter().position(|p| !p);
        }
        let codes: Vec<Vec<u32>> = coded.iter().map(|(c, _)| block_codes(c, block.kept.as_deref())).collect();
        let pos: Vec<Vec<Option<usize>>> = coded
            .iter()
            .zip(&self.effects)
            .map(|((_, table), ix)| table.iter().map(|l| ix.get(l).map(|&i| i as usize)).collect())
            .collect();
        let k = self.beta.len();
        let cols: Vec<Option<usize>> = block.keys.iter().map(|key| self.key_col.get(key).copied()).collect();
        let nb = block.nrows();
        let mut x = vec![0.0; k];
        'rows: for (r, &row) in kept.iter().enumerate() {
            if unseen_row[rows[row]] {
                continue;
            }
            let mut effect = 0.0;
            let mut level0 = 0;
            for f in 0..codes.len() {
                let code = codes[f][r] as usize;
                match pos[f][code] {
                    Some(p) => {
                        effect += self.effect[f][p];
                        if f == 0 {
                            level0 = p;
                        }
                    }
                    None => {
                        let level = coded[f].1[code].to_string();
                        out.note_unseen(&self.columns[f], level, rows[row]);
                        continue 'rows;
                    }
                }
            }
            x.iter_mut().zip(&self.mean).for_each(|(v, m)| *v = -m);
            for (j, col) in cols.iter().enumerate() {
                if let Some(c) = col.filter(|&c| c < k) {
                    x[c] += block.values[j * nb + r] + block.lo[j].as_ref().map_or(0.0, |lo| lo[r]);
                }
            }
            let fitted = self.mean[k] + x.iter().zip(&self.beta).map(|(v, b)| v * b).sum::<f64>() + effect;
            out.mean[rows[row]] = fitted;
            if let (Some(s), Some(var)) = (&self.spread, out.var.as_mut()) {
                // d = x − x̄_l, in place (x is centered, proj the level's
                // centered means).
                let proj = &s.level_means[level0 * (k + 1)..level0 * (k + 1) + k];
                x.iter_mut().zip(proj).for_each(|(v, p)| *v -= p);
                var[rows[row]] = s.scale * s.spread.at(level0, &x);
            }
        }
        Ok(out)
    }
}
