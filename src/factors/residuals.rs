//! The second pass of an absorbed fit: each row's within values and
//! residual, summed into the meat of a robust covariance.
//!
//! A row's within value of column `j` is `z̃_j = z_j − μ_j − Σ_f
//! proj_f[level_f, j]` (see [`super::within`]), its residual `e = ỹ −
//! x̃ᵀβ`, its score `w·x̃·e`. The heteroskedasticity-robust meat is `Σ s sᵀ`
//! over rows, the cluster-robust one `Σ_g S_g S_gᵀ` over the clusters'
//! score sums `S_g` — the slopes' block of the full dummy model's
//! sandwich, since `x̃` is `x` minus its projection on the indicators
//! (the same Frisch–Waugh–Lovell step). Rows in removed singleton levels
//! have `x̃ = 0` and `e = 0`: they are skipped.

use super::accumulate::{block_codes, code_rows};
use crate::accumulator::ChunkSink;
use crate::design::{categorical_column, DesignBuilder, DesignError, LevelMap};
use crate::level::{ColumnKey, Level};
use crate::residuals::ResidualStats;
use crate::second_pass::CovType;
use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// What the second pass needs from the first.
#[derive(Clone, Debug)]
pub struct ResidualPlan {
    /// The absorbed columns.
    pub columns: Vec<String>,
    /// Per absorbed column, each level left's position in `proj`.
    pub index: Vec<LevelMap<Level>>,
    /// Per absorbed column, row-major `levels × (k + 1)` projections.
    pub proj: Vec<Vec<f64>>,
    /// Overall means of `[x…, y]`.
    pub mean: Vec<f64>,
    /// The slopes (0 for aliased ones).
    pub beta: Vec<f64>,
    /// The design column (`k`: y) of each accumulated key.
    pub key_col: HashMap<ColumnKey, usize>,
    pub cov: CovType,
    /// The cluster column (with `CovType::Cluster`).
    pub cluster: Option<String>,
    /// Also sum the residuals' moments and Durbin–Watson, in file order
    /// (statsmodels' bottom block, for a factor estimated by blocks).
    pub moments: bool,
    /// A factor estimated by blocks with a robust covariance: what each
    /// row's leverage needs, and the sums per level (see
    /// [`LevelScores`]).
    pub level_scores: Option<LeveragePlan>,
}

/// Each row's leverage in the dummy model of one factor estimated by
/// blocks: `h = w·(1/W_l + x̃ᵀM⁻¹x̃)` (`M` the within moments).
#[derive(Clone, Debug)]
pub struct LeveragePlan {
    pub spread: super::within::LevelSpread,
    /// The meat's weights `u²/(1 − h)^power` (`u = w·e`): 0 for HC0 and
    /// HC1, 1 for HC2, 2 for HC3.
    pub power: i32,
}

/// A factor estimated by blocks, robust covariance: with `f = u²/(1 −
/// h)^power`, per level `Σ f` and `Σ f·x̃`, and `Σ f·x̃x̃ᵀ`. Rows of leverage
/// one (their level's only row) are left out and counted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LevelScores {
    pub q: Vec<f64>,
    /// Per level, its rows of leverage below one.
    pub ordinary: Vec<u64>,
    /// Row-major `levels × k`.
    pub r: Vec<f64>,
    /// Row-major `k × k`.
    pub meat: Vec<f64>,
    pub leverage_one: u64,
    /// With clusters: `Σ u` per (cluster slot, level) met.
    pub cluster_level: HashMap<(u32, u32), f64>,
}

impl LevelScores {
    fn merge(&mut self, other: &LevelScores) {
        for (a, b) in [(&mut self.q, &other.q), (&mut self.r, &other.r), (&mut self.meat, &other.meat)] {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        self.ordinary.iter_mut().zip(&other.ordinary).for_each(|(x, y)| *x += y);
        self.leverage_one += other.leverage_one;
    }

    /// Add `other`'s cluster sums, its cluster slots mapped to ours.
    fn merge_clusters(&mut self, other: &LevelScores, slot_of: &[u32]) {
        let mut keys: Vec<&(u32, u32)> = other.cluster_level.keys().collect();
        keys.sort_unstable();
        for key in keys {
            *self.cluster_level.entry((slot_of[key.0 as usize], key.1)).or_insert(0.0) += other.cluster_level[key];
        }
    }
}

impl ResidualPlan {
    /// The plan of a within fit's second pass: `design` the fit's (the
    /// part before `|`), `columns` its absorbed columns; no moments, no
    /// per-level scores (set them after).
    pub fn new(
        fit: &super::WithinFit,
        design: &crate::formula::columns::Design,
        columns: Vec<String>,
        cov: CovType,
        cluster: Option<String>,
    ) -> ResidualPlan {
        let mut key_col = design.key_columns();
        key_col.insert(ColumnKey::Response, fit.ne.k());
        ResidualPlan {
            columns,
            index: fit
                .factors
                .iter()
                .map(|f| f.levels.iter().cloned().enumerate().map(|(i, l)| (l, i as u32)).collect())
                .collect(),
            proj: fit.factors.iter().map(|f| f.proj.clone()).collect(),
            mean: fit.mean.clone(),
            beta: fit.sol.params.iter().map(|b| b.map_or(0.0, |d| d.to_f64())).collect(),
            key_col,
            cov,
            cluster,
            moments: false,
            level_scores: None,
        }
    }
}

/// Whether each level of an absorbed factor lies in a single cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Nesting {
    #[default]
    Unseen,
    One(Level),
    Many,
}

impl Nesting {
    fn see(&mut self, c: &Level) {
        match self {
            Nesting::Unseen => *self = Nesting::One(c.clone()),
            Nesting::One(d) if d != c => *self = Nesting::Many,
            _ => {}
        }
    }

    fn merge(&mut self, other: &Nesting) {
        match other {
            Nesting::Unseen => {}
            Nesting::One(c) => self.see(c),
            Nesting::Many => *self = Nesting::Many,
        }
    }
}

/// The meat of the robust covariance, and what it was summed over.
#[derive(Clone, Debug)]
pub struct AbsorbResiduals {
    plan: Arc<ResidualPlan>,
    /// `Σ s sᵀ` over rows (`HC0`/`HC1`), row-major `k × k`.
    pub meat: Vec<f64>,
    /// The clusters met, in order of first appearance, and their score
    /// sums (row-major `clusters × k`).
    clusters: Vec<Level>,
    cluster_slot: LevelMap<Level>,
    cluster_sums: Vec<f64>,
    /// Per absorbed column, per level: the clusters it met.
    pub nesting: Vec<Vec<Nesting>>,
    /// `Σ w e²`, a check on the first pass's SSR.
    pub ssr: f64,
    pub rows_without_cluster: u64,
    /// The residuals' moments (with `plan.moments`).
    pub moments: Option<ResidualStats>,
    /// With `plan.level_scores`.
    pub level_scores: Option<LevelScores>,
    rows: (u64, u64),
}

impl AbsorbResiduals {
    pub fn new(plan: Arc<ResidualPlan>) -> Self {
        let k = plan.beta.len();
        let nesting = plan.index.iter().map(|ix| vec![Nesting::Unseen; ix.len()]).collect();
        let moments = plan.moments.then(ResidualStats::default);
        let level_scores = plan.level_scores.as_ref().map(|lp| {
            let (levels, k) = (lp.spread.inv_weight.len(), plan.beta.len());
            LevelScores {
                q: vec![0.0; levels],
                ordinary: vec![0; levels],
                r: vec![0.0; levels * k],
                meat: vec![0.0; k * k],
                leverage_one: 0,
                cluster_level: HashMap::new(),
            }
        });
        AbsorbResiduals {
            plan,
            meat: vec![0.0; k * k],
            clusters: Vec::new(),
            cluster_slot: LevelMap::default(),
            cluster_sums: Vec::new(),
            nesting,
            ssr: 0.0,
            rows_without_cluster: 0,
            moments,
            level_scores,
            rows: (0, 0),
        }
    }
}

impl ChunkSink for AbsorbResiduals {
    fn add_chunk(
        &mut self,
        builder: &DesignBuilder,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<(), DesignError> {
        let plan = self.plan.clone();
        let (sub, coded) = code_rows(chunk, &plan.columns)?;
        self.rows.0 += chunk.num_rows() as u64;
        let batch = sub.as_ref().map_or(chunk, |(b, _)| b);
        let block = match &sub {
            Some((b, rows)) => builder.block(b, &|r| at(rows[r]))?,
            None => builder.block(chunk, at)?,
        };
        let kept = block.kept.as_deref();
        let codes: Vec<Vec<u32>> = coded.iter().map(|(c, _)| block_codes(c, kept)).collect();
        // Each code's position among the levels left (None: a singleton).
        let pos: Vec<Vec<Option<usize>>> = coded
            .iter()
            .zip(&plan.index)
            .map(|((_, table), ix)| table.iter().map(|l| ix.get(l).map(|&i| i as usize)).collect())
            .collect();
        let cluster = match &plan.cluster {
            Some(c) => Some(match plan.columns.iter().position(|f| f == c) {
                Some(f) => (codes[f].clone(), coded[f].1.clone()),
                None => {
                    let (c, table) = categorical_column(batch, c)?;
                    (block_codes(&c, kept), table)
                }
            }),
            None => None,
        };
        let (n, k1) = (block.nrows(), plan.mean.len());
        let k = k1 - 1;
        let cols: Vec<Option<usize>> = block.keys.iter().map(|key| plan.key_col.get(key).copied()).collect();
        let mut z = vec![0.0; k1];
        let mut s = vec![0.0; k];
        // Score sums per cluster code of this chunk, added to the
        // clusters' totals once per chunk.
        let mut local = cluster.as_ref().map(|(_, table)| vec![0.0; table.len() * k]);
        let mut met = cluster.as_ref().map(|(_, table)| vec![false; table.len()]);
        let mut residuals = Vec::with_capacity(if self.moments.is_some() { n } else { 0 });
        // Σ u per (chunk cluster code, level), for a factor by blocks.
        let mut local_level: HashMap<(u32, u32), f64> = HashMap::new();
        'rows: for r in 0..n {
            let mut lv = [0usize; 2];
            for f in 0..codes.len() {
                match pos[f][codes[f][r] as usize] {
                    Some(p) => lv[f] = p,
                    None => continue 'rows,
                }
            }
            for (v, &m) in z.iter_mut().zip(&plan.mean) {
                *v = -m;
            }
            for (j, col) in cols.iter().enumerate() {
                if let Some(c) = *col {
                    z[c] += block.values[j * n + r] + block.lo[j].as_ref().map_or(0.0, |lo| lo[r]);
                }
            }
            for (f, p) in plan.proj.iter().enumerate() {
                for (v, &q) in z.iter_mut().zip(&p[lv[f] * k1..(lv[f] + 1) * k1]) {
                    *v -= q;
                }
            }
            let e = z[k] - z[..k].iter().zip(&plan.beta).map(|(x, b)| x * b).sum::<f64>();
            let w = block.weights.as_ref().map_or(1.0, |w| w[r]);
            self.ssr += w * e * e;
            if self.moments.is_some() {
                // statsmodels' `wresid`: √w·e.
                residuals.push(w.sqrt() * e);
            }
            // Per-row sums of a heteroskedasticity-robust covariance by
            // blocks (a cluster-robust one sums per cluster below).
            if let (Some(ls), Some(lp), None) = (&mut self.level_scores, &plan.level_scores, &cluster) {
                let x = &z[..k];
                let l = lv[0];
                // The leverage matters to HC2/HC3 only. Leverage one (a
                // level's only row; its residual is zero) is left out of
                // their meats, as the dense path does.
                let h = if lp.power == 0 { 0.0 } else { w * lp.spread.at(l, x) };
                let one = 1.0 - h <= 1e-10;
                if one {
                    ls.leverage_one += 1;
                } else {
                    ls.ordinary[l] += 1;
                }
                if !one {
                    let u = w * e;
                    let f = u * u / (1.0 - h).powi(lp.power);
                    ls.q[l] += f;
                    for i in 0..k {
                        ls.r[l * k + i] += f * x[i];
                        for j in 0..k {
                            ls.meat[i * k + j] += f * x[i] * x[j];
                        }
                    }
                }
            }
            for (sj, &xj) in s.iter_mut().zip(&z[..k]) {
                *sj = w * xj * e;
            }
            match (&cluster, &mut local, &mut met) {
                (Some((cc, table)), Some(local), Some(met)) => {
                    let c = cc[r] as usize;
                    let Some(level) = table.get(c) else {
                        self.rows_without_cluster += 1;
                        continue;
                    };
                    met[c] = true;
                    local[c * k..(c + 1) * k].iter_mut().zip(&s).for_each(|(a, b)| *a += b);
                    if self.level_scores.is_some() {
                        *local_level.entry((c as u32, lv[0] as u32)).or_insert(0.0) += w * e;
                    }
                    for f in 0..codes.len() {
                        self.nesting[f][lv[f]].see(level);
                    }
                }
                _ => {
                    for i in 0..k {
                        for j in 0..k {
                            self.meat[i * k + j] += s[i] * s[j];
                        }
                    }
                }
            }
        }
        if let Some(m) = &mut self.moments {
            m.add_residuals(&residuals);
        }
        if let (Some((_, table)), Some(local), Some(met)) = (&cluster, &local, &met) {
            let mut slot_of = vec![u32::MAX; table.len()];
            for (c, level) in table.iter().enumerate().filter(|&(c, _)| met[c]) {
                let slot = self.cluster(level);
                slot_of[c] = slot as u32;
                self.cluster_sums[slot * k..(slot + 1) * k]
                    .iter_mut()
                    .zip(&local[c * k..(c + 1) * k])
                    .for_each(|(a, b)| *a += b);
            }
            if let Some(ls) = &mut self.level_scores {
                let chunk = LevelScores { cluster_level: local_level, ..LevelScores::default() };
                ls.merge_clusters(&chunk, &slot_of);
            }
        }
        self.rows.1 += (chunk.num_rows() - n) as u64;
        Ok(())
    }

    fn merge(&mut self, other: &Self) {
        self.meat.iter_mut().zip(&other.meat).for_each(|(a, b)| *a += b);
        let k = self.plan.beta.len();
        let mut slot_of = Vec::with_capacity(other.clusters.len());
        for (c, level) in other.clusters.iter().enumerate() {
            let slot = self.cluster(level);
            slot_of.push(slot as u32);
            self.cluster_sums[slot * k..(slot + 1) * k]
                .iter_mut()
                .zip(&other.cluster_sums[c * k..(c + 1) * k])
                .for_each(|(a, b)| *a += b);
        }
        for (a, b) in self.nesting.iter_mut().zip(&other.nesting) {
            a.iter_mut().zip(b).for_each(|(a, b)| a.merge(b));
        }
        self.ssr += other.ssr;
        if let (Some(a), Some(b)) = (&mut self.moments, &other.moments) {
            a.merge(b);
        }
        if let (Some(a), Some(b)) = (&mut self.level_scores, &other.level_scores) {
            a.merge(b);
            a.merge_clusters(b, &slot_of);
        }
        self.rows_without_cluster += other.rows_without_cluster;
        self.rows.0 += other.rows.0;
        self.rows.1 += other.rows.1;
    }

    fn rows(&self) -> (u64, u64) {
        self.rows
    }
}

/// An absorbed second pass's sums without their plan: what a part of a
/// fit in parts returns (see `app::parts`). Its invariants are those of
/// [`AbsorbResiduals`], checked against the plan when it is taken back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AbsorbScores {
    meat: Vec<f64>,
    clusters: Vec<Level>,
    cluster_sums: Vec<f64>,
    nesting: Vec<Vec<Nesting>>,
    ssr: f64,
    rows_without_cluster: u64,
    rows: (u64, u64),
    /// A factor estimated by blocks: the residuals' moments, and the
    /// per-level scores of a robust covariance.
    moments: Option<ResidualStats>,
    level_scores: Option<LevelScores>,
}

impl AbsorbScores {
    /// Rows summed (read less those dropped for a missing value).
    pub fn rows_used(&self) -> u64 {
        self.rows.0 - self.rows.1
    }
}

impl AbsorbResiduals {
    /// The sums without the plan.
    pub fn scores(&self) -> AbsorbScores {
        AbsorbScores {
            meat: self.meat.clone(),
            clusters: self.clusters.clone(),
            cluster_sums: self.cluster_sums.clone(),
            nesting: self.nesting.clone(),
            ssr: self.ssr,
            rows_without_cluster: self.rows_without_cluster,
            rows: self.rows,
            moments: self.moments.clone(),
            level_scores: self.level_scores.clone(),
        }
    }

    /// Sums from [`AbsorbResiduals::scores`] back under `plan`, refused
    /// when their shapes are not the plan's (sums of another fit).
    pub fn from_scores(plan: Arc<ResidualPlan>, s: AbsorbScores) -> Result<Self, String> {
        let k = plan.beta.len();
        let levels: Vec<usize> = plan.index.iter().map(|ix| ix.len()).collect();
        let shapes_agree = s.meat.len() == k * k
            && s.cluster_sums.len() == s.clusters.len() * k
            && s.nesting.iter().map(Vec::len).eq(levels.iter().copied())
            && s.rows.1 <= s.rows.0
            && s.moments.is_some() == plan.moments
            && match (&s.level_scores, &plan.level_scores) {
                (None, None) => true,
                (Some(ls), Some(lp)) => {
                    let l = lp.spread.inv_weight.len();
                    let slots = s.clusters.len();
                    ls.q.len() == l
                        && ls.ordinary.len() == l
                        && ls.r.len() == l * k
                        && ls.meat.len() == k * k
                        && ls.cluster_level.keys().all(|&(c, lv)| (c as usize) < slots && (lv as usize) < l)
                }
                _ => false,
            };
        if !shapes_agree {
            return Err(format!(
                "the second pass's sums are not of this fit ({} slopes and levels {levels:?} expected)",
                k
            ));
        }
        let mut r = AbsorbResiduals::new(plan);
        for level in &s.clusters {
            r.cluster(level);
        }
        if r.clusters.len() != s.clusters.len() {
            return Err("the second pass's sums list a cluster twice".into());
        }
        r.meat = s.meat;
        r.cluster_sums = s.cluster_sums;
        r.nesting = s.nesting;
        r.ssr = s.ssr;
        r.rows_without_cluster = s.rows_without_cluster;
        r.rows = s.rows;
        r.moments = s.moments;
        r.level_scores = s.level_scores;
        Ok(r)
    }

    /// The slot of cluster `level`, made when new.
    fn cluster(&mut self, level: &Level) -> usize {
        if let Some(&i) = self.cluster_slot.get(level) {
            return i as usize;
        }
        self.clusters.push(level.clone());
        self.cluster_slot.insert(level.clone(), (self.clusters.len() - 1) as u32);
        self.cluster_sums.resize(self.clusters.len() * self.plan.beta.len(), 0.0);
        self.clusters.len() - 1
    }

    /// Per cluster met (its slot), its score sum `Σ u·x̃` (`k` values).
    pub fn cluster_scores(&self) -> &[f64] {
        &self.cluster_sums
    }

    /// An error when rows had no cluster (a cluster-robust covariance
    /// needs every row's).
    pub fn require_clusters(&self) -> Result<(), String> {
        if self.rows_without_cluster == 0 {
            return Ok(());
        }
        Err(format!(
            "the cluster column '{}' has no value on {} of the rows the fit uses; fill them or drop those rows",
            self.plan.cluster.as_deref().unwrap_or_default(),
            self.rows_without_cluster
        ))
    }

    /// Whether the pass sums per cluster (a cluster-robust covariance).
    pub fn has_clusters(&self) -> bool {
        self.plan.cluster.is_some()
    }

    /// Clusters met.
    pub fn n_clusters(&self) -> usize {
        self.clusters.len()
    }

    /// The meat `Σ_g S_g S_gᵀ` (cluster) or `Σ s sᵀ` (rows), `k × k`.
    pub fn meat(&self) -> Vec<f64> {
        if self.plan.cluster.is_none() {
            return self.meat.clone();
        }
        let k = self.plan.beta.len();
        let mut m = vec![0.0; k * k];
        for s in self.cluster_sums.chunks_exact(k.max(1)) {
            for i in 0..k {
                for j in 0..k {
                    m[i * k + j] += s[i] * s[j];
                }
            }
        }
        m
    }

    /// Per absorbed column: whether every level lies in one cluster.
    pub fn nested(&self) -> Vec<bool> {
        self.nesting.iter().map(|levels| levels.iter().all(|n| !matches!(n, Nesting::Many))).collect()
    }
}
