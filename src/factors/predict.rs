//! Predictions from an absorbed fit: `ŷ = ȳ + Σ_j β_j (x_j − x̄_j) +
//! Σ_f effect_f[level]`, each level's effect recovered from its
//! projections (`effect = proj[y] − Σ_j β_j proj[x_j]`, see
//! [`super::within`]): the fitted value of the dummy model, so on the
//! fit's own rows the residuals sum to zero within every level and their
//! squares to the fit's SSR.

use super::accumulate::{block_codes, code_rows};
use super::within::WithinFit;
use crate::design::{categorical_column, DesignBuilder, DesignError, LevelMap, MissingPolicy};
use crate::formula::{Factor, FactorKind, ModelSpec};
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
}

/// Per chunk: the means (NaN where not predicted) and the tallies.
pub struct AbsorbedPrediction {
    pub mean: Vec<f64>,
    pub unseen: BTreeMap<String, u64>,
    pub missing: u64,
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
        let constant =
            Factor { name: "0".into(), kind: FactorKind::Numeric(crate::formula::expr::NumExpr::Const(0.0)) };
        let builder = DesignBuilder::new(
            Arc::new(ModelSpec { response: constant, ..(**spec).clone() }),
            None,
            MissingPolicy::Drop,
        );
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
        }
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
        let mut out = AbsorbedPrediction { mean: vec![f64::NAN; n], unseen: BTreeMap::new(), missing: 0 };
        // Rows with a level of a design factor the fit never saw: no
        // coefficient for it.
        let mut unseen_row = vec![false; n];
        for (column, seen) in &self.categorical {
            let (codes, table) = categorical_column(chunk, column)?;
            let new: Vec<bool> = table.iter().map(|l| !seen.contains(l)).collect();
            for (r, &c) in codes.iter().enumerate() {
                if c != u32::MAX && new[c as usize] && !unseen_row[r] {
                    unseen_row[r] = true;
                    *out.unseen.entry(format!("{column} = {}", table[c as usize])).or_insert(0) += 1;
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
            for f in 0..codes.len() {
                let code = codes[f][r] as usize;
                match pos[f][code] {
                    Some(p) => effect += self.effect[f][p],
                    None => {
                        let level = &coded[f].1[code];
                        *out.unseen.entry(format!("{} = {level}", self.columns[f])).or_insert(0) += 1;
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
        }
        Ok(out)
    }
}
