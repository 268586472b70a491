//! The second pass: with β known, stream the same files again and
//! accumulate what needs the residuals — their moments (skew, kurtosis,
//! Omnibus, Jarque–Bera), Durbin–Watson in file order, and the "meat" of
//! the heteroskedasticity- and cluster-robust covariances — in bounded
//! memory (O(p²), plus O(clusters × p) for cluster-robust).
//!
//! Everything is on the whitened scale for WLS (`√w·e`, `√w·x`), as
//! statsmodels computes `wresid` and robust covariances on `wexog`.
//!
//! * Omnibus: D'Agostino & Pearson's K² = Z(b₁)² + Z(b₂)² (D'Agostino,
//!   Belanger & D'Agostino 1990, "A suggestion for using powerful and
//!   informative tests of normality", Am. Stat. 44(4)), as
//!   `scipy.stats.normaltest`; p = exp(−K²/2) (χ² with 2 df).
//! * Jarque–Bera: n/6·(S² + (K − 3)²/4), S and K the biased sample skewness
//!   and (Pearson) kurtosis.
//! * Durbin–Watson: Σ(eₜ − eₜ₋₁)² / Σeₜ². Each chunk carries its first and
//!   last residual; merging chunks in order adds the difference across the
//!   seam, so the value is the sequential one for any thread count.
//! * HC0–HC3 (White 1980; MacKinnon & White 1985): meats Σ e²·x xᵀ,
//!   Σ e²/(1−h)·x xᵀ, Σ e²/(1−h)²·x xᵀ with leverage h = xᵀ(XᵀX)⁻¹x.
//! * Cluster-robust (Liang & Zeger 1986): per-cluster score sums
//!   s_g = Σ_{i∈g} x_i e_i, meat Σ_g s_g s_gᵀ.

use crate::accumulator::ChunkSink;
use crate::dd::Dd;
#[cfg(gramfit_x86)]
use crate::design::dictionary_keys;
use crate::design::{categorical_column, DesignBuilder, DesignError};
use crate::formula::columns::Design;
use crate::level::{ColumnKey, Level};
#[cfg(gramfit_x86)]
use crate::stats::kernel::{source_columns, with_scratch, KernelColumn, SourceColumn};
use arrow::array::RecordBatch;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};
use std::collections::{BTreeMap, HashMap};
#[cfg(gramfit_x86)]
use std::sync::Arc;

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

/// Accumulated residual statistics of a run of rows (in file order).
#[derive(Clone, Debug, Default)]
pub struct ResidualStats {
    pub n: u64,
    /// Σ eᵏ for k = 1..4, in double-double.
    pub power: [Dd; 4],
    /// Σ (eₜ − eₜ₋₁)² within the run.
    pub dw_num: Dd,
    pub first: Option<f64>,
    pub last: Option<f64>,
    /// Meats for HC0, HC2, HC3 (`p × p`).
    pub meat0: Vec<f64>,
    pub meat2: Vec<f64>,
    pub meat3: Vec<f64>,
    /// Rows with leverage 1 (within rounding): their HC2/HC3 weights are
    /// 0/0; they are left out of those meats, and a coefficient whose
    /// column is non-zero only on such rows has no HC2/HC3 error.
    pub leverage_one: u64,
    /// Per design column: rows with leverage below 1 where it is non-zero
    /// (counted only until the first, which is all the test needs), and
    /// rows with leverage 1 where it is non-zero.
    pub nonzero_ordinary: Vec<u64>,
    pub nonzero_leverage_one: Vec<u64>,
    /// Per-cluster score sums.
    pub clusters: BTreeMap<Level, Vec<f64>>,
    pub rows_without_cluster: u64,
    /// The in-place pass's leverage table for the last chunk's column
    /// layout (a cache: chunks of a run share it; never merged).
    #[cfg(gramfit_x86)]
    leverage_cache: Option<LeverageCache>,
    /// The in-place pass's meat of the chunks so far, while they share a
    /// column layout (collapsed into `meat*` when it changes and on merge).
    #[cfg(gramfit_x86)]
    pending_meat: Option<PendingMeat>,
    /// Likewise the cluster-robust pass's per-(level, pattern) sums, while
    /// the chunks share a layout and their levels fit the table (collapsed
    /// into `clusters` otherwise and on merge: the engine's merged result
    /// has none pending).
    #[cfg(gramfit_x86)]
    pending_scores: Option<PendingScores>,
}

/// Per-cluster score sums as a table of `level · 2^nf + pattern` rows
/// (weights: the residuals), summed over consecutive chunks with the same
/// kernel layout while their levels fit (each chunk's level codes are
/// mapped to the table's levels).
#[cfg(gramfit_x86)]
#[derive(Clone, Debug)]
struct PendingScores {
    order: Vec<usize>,
    nc: usize,
    nf: usize,
    /// Flags in the main table's key (the others key the side table).
    bits: usize,
    intercept: bool,
    /// The levels met so far, in that order (table rows `l · 2^bits …`
    /// and side entries `l · 2^(nf − bits) …` belong to `levels[l]`), and
    /// their positions.
    levels: Vec<Level>,
    index: BTreeMap<Level, u32>,
    /// The last chunk's levels and their positions in `levels`.
    chunk_levels: Vec<Level>,
    chunk_map: Vec<u32>,
    /// The last chunk's dictionary, when its keys were its codes.
    chunk_dict: Option<arrow::array::ArrayRef>,
    /// Levels with a kept row so far (only those become clusters).
    seen: Vec<bool>,
    table: crate::stats::patterns::Table,
    side: Vec<f64>,
    /// The grouped factor's columns (design indices; see `GroupedMeat`)
    /// and, per cluster, `Σ e` over its rows of each of the factor's
    /// levels (`joint[c·(q + 1) + l]`, `q` columns; the last level is not
    /// a column).
    grouped: Vec<usize>,
    joint: Vec<f64>,
}

#[cfg(gramfit_x86)]
impl PendingScores {
    /// Add the score sums to `st.clusters`.
    fn collapse_into(&self, st: &mut ResidualStats) {
        let (g, mp) = (self.levels.len(), self.order.len());
        let (q, p) = (self.grouped.len(), mp + self.grouped.len());
        let sums = crate::stats::patterns::scores_from_patterns(
            self.table.as_slice(),
            &self.side,
            g,
            self.nc,
            (self.nf, self.bits),
            self.intercept,
        );
        // Kernel order to design order.
        let mut design_sums = vec![0.0; g * p];
        for l in 0..g {
            for (a, &j) in self.order.iter().enumerate() {
                design_sums[l * p + j] = sums[l * mp + a];
            }
            for (a, &j) in self.grouped.iter().enumerate() {
                design_sums[l * p + j] = self.joint[l * (q + 1) + a];
            }
        }
        st.merge_cluster_sums(&self.levels, &design_sums, &self.seen, p);
    }
}

/// A meat as per-pattern sums and column × column products
/// (see [`crate::stats::patterns`]), summed over consecutive chunks of one
/// kernel layout: collapsing the 2ᵏ-row table once per run instead of once
/// per chunk.
#[cfg(gramfit_x86)]
#[derive(Clone, Debug)]
struct PendingMeat {
    cov: CovType,
    /// Kernel order (design indices: columns, flags, intercept).
    order: Vec<usize>,
    nc: usize,
    nf: usize,
    intercept: bool,
    table: crate::stats::patterns::Table,
    /// `Σ w c_i c_j`, `cc[j·nc + i]` for `i ≥ j`.
    cc: Vec<f64>,
    grouped: Option<GroupedMeat>,
}

/// The part of a meat that involves a grouped factor (one whose level
/// indicators are too many to be flags): its columns are orthogonal
/// (one level per row), so the meat needs per level only `Σ w`, `Σ w·c`
/// and `Σ w` over the rows with each flag, kept in tables as for the
/// cluster scores (level `l` = column `design[l]`; the last level, the
/// reference level's rows and dropped rows, is not a column).
#[cfg(gramfit_x86)]
#[derive(Clone, Debug)]
struct GroupedMeat {
    design: Vec<usize>,
    bits: usize,
    table: crate::stats::patterns::Table,
    side: Vec<f64>,
}

#[cfg(gramfit_x86)]
impl PendingMeat {
    /// Add to `meat` (`p × p`, design order, lower triangle).
    fn collapse_into(&self, meat: &mut [f64]) {
        let mp = self.order.len();
        let p = mp + self.grouped.as_ref().map_or(0, |gm| gm.design.len());
        let folded =
            crate::stats::patterns::fold_spread(self.table.as_slice(), crate::stats::patterns::table_width(self.nc));
        let mk = crate::stats::patterns::meat_from_patterns(&folded, &self.cc, self.nc, self.nf, self.intercept);
        for (a, &i) in self.order.iter().enumerate() {
            for (b, &j) in self.order.iter().enumerate() {
                if i >= j {
                    meat[i * p + j] += mk[a * mp + b];
                }
            }
        }
        let Some(gm) = &self.grouped else { return };
        let g = gm.design.len();
        let (nc, nf) = (self.nc, self.nf);
        let sums =
            crate::stats::patterns::scores_from_patterns(gm.table.as_slice(), &gm.side, g + 1, nc, (nf, gm.bits), true);
        let mut add = |i: usize, j: usize, v: f64| meat[i.max(j) * p + i.min(j)] += v;
        for (l, &i) in gm.design.iter().enumerate() {
            // Per level: Σ w·c (columns), Σ w over the rows with each flag,
            // Σ w (with the intercept, and the column's own square).
            let s = &sums[l * (nc + nf + 1)..(l + 1) * (nc + nf + 1)];
            for (a, &v) in s.iter().enumerate() {
                match self.order.get(a) {
                    Some(&j) if a < nc + nf || self.intercept => add(i, j, v),
                    _ => {}
                }
            }
            add(i, i, s[nc + nf]);
        }
    }
}

/// `(XᵀX)⁻¹` in kernel order and its per-pattern table, for one layout:
/// kernel order (design indices) and the number of `f64` columns.
#[cfg(gramfit_x86)]
#[derive(Clone, Debug)]
struct LeverageCache {
    order: Vec<usize>,
    nc: usize,
    bk: Vec<f64>,
    table: crate::stats::patterns::Table,
    /// The grouped factor's columns, and their part of the leverages (see
    /// [`grouped_leverage_tables`]).
    grouped: Vec<usize>,
    fixed: Vec<f64>,
    by_column: Vec<f64>,
}

impl ResidualStats {
    fn ensure(&mut self, p: usize) {
        if self.meat0.len() != p * p {
            self.meat0 = vec![0.0; p * p];
            self.meat2 = vec![0.0; p * p];
            self.meat3 = vec![0.0; p * p];
            self.nonzero_ordinary = vec![0; p];
            self.nonzero_leverage_one = vec![0; p];
        }
    }

    /// The meat of `cov` (HC0/HC1, HC2 or HC3), lower triangle, including
    /// any still pending as pattern sums (a unit's accumulator before it
    /// is merged).
    pub fn meat(&self, cov: CovType) -> Vec<f64> {
        let m = match cov {
            CovType::Hc2 => &self.meat2,
            CovType::Hc3 => &self.meat3,
            _ => &self.meat0,
        }
        .clone();
        #[cfg(gramfit_x86)]
        let m = {
            let mut m = m;
            if let Some(pm) = self.pending_meat.as_ref().filter(|pm| Self::meat_kind(pm.cov) == Self::meat_kind(cov)) {
                pm.collapse_into(&mut m);
            }
            m
        };
        m
    }

    /// Which meat a covariance type uses (HC0 and HC1 share one).
    #[cfg(gramfit_x86)]
    fn meat_kind(cov: CovType) -> CovType {
        if cov == CovType::Hc1 {
            CovType::Hc0
        } else {
            cov
        }
    }

    /// Add a meat pending as pattern sums to its meat.
    #[cfg(gramfit_x86)]
    fn add_pending(&mut self, pm: &PendingMeat) {
        self.ensure(pm.order.len() + pm.grouped.as_ref().map_or(0, |gm| gm.design.len()));
        let meat = match pm.cov {
            CovType::Hc2 => &mut self.meat2,
            CovType::Hc3 => &mut self.meat3,
            _ => &mut self.meat0,
        };
        pm.collapse_into(meat);
    }

    #[cfg(gramfit_x86)]
    fn flush_meat(&mut self) {
        if let Some(pm) = self.pending_meat.take() {
            self.add_pending(&pm);
        }
    }

    /// Coefficients (design indices) with no HC2/HC3 standard error.
    pub fn undefined_hc23(&self) -> Vec<usize> {
        (0..self.nonzero_ordinary.len())
            .filter(|&j| self.nonzero_leverage_one[j] > 0 && self.nonzero_ordinary[j] == 0)
            .collect()
    }
}

/// `Σ e, Σ e², Σ e³, Σ e⁴` and `Σ (e_t − e_{t−1})²` of a chunk's
/// residuals: row `r` in lane `r % 8`, `e³` and `e⁴` and the squared
/// difference by fused multiply-adds, the lanes added by
/// [`reduce8`](crate::stats::kernel::reduce8) — the same arithmetic on every
/// instruction set, so the same bits.
fn residual_sums(e: &[f64]) -> ([f64; 4], f64) {
    #[cfg(gramfit_x86)]
    {
        if crate::isa::Avx512::get().is_some() {
            // SAFETY: the token proves AVX-512F.
            return unsafe { crate::stats::simd::residual_sums_avx512(e) };
        }
    }
    residual_sums_portable(e)
}

/// [`residual_sums`]' reference loop.
pub fn residual_sums_portable(e: &[f64]) -> ([f64; 4], f64) {
    use crate::stats::kernel::reduce8;
    let mut m = [[0.0f64; 8]; 4];
    let mut dw = [0.0f64; 8];
    for (k, &er) in e.iter().enumerate() {
        let l = k % 8;
        let e2 = er * er;
        m[0][l] += er;
        m[1][l] += e2;
        m[2][l] = e2.mul_add(er, m[2][l]);
        m[3][l] = e2.mul_add(e2, m[3][l]);
        if let Some(&next) = e.get(k + 1) {
            let d = next - er;
            dw[l] = d.mul_add(d, dw[l]);
        }
    }
    (m.map(reduce8), reduce8(dw))
}

fn add_mat(a: &mut Vec<f64>, b: &[f64]) {
    if a.is_empty() {
        *a = b.to_vec();
    } else if !b.is_empty() {
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
    }
}

/// `meat += (diag(s) X)ᵀ (diag(s) X)` (lower triangle), by gemm.
fn accumulate_meat(meat: &mut [f64], x: &Mat<f64>, s: &[f64], p: usize, nr: usize) {
    let mut xs = Mat::<f64>::zeros(nr, p);
    for j in 0..p {
        let src = x.col(j).try_as_col_major().expect("contiguous column").as_slice();
        let dst = xs.col_mut(j).try_as_col_major_mut().expect("contiguous column").as_slice_mut();
        for ((d, a), w) in dst.iter_mut().zip(src).zip(s) {
            *d = a * w;
        }
    }
    let mut g = Mat::<f64>::zeros(p, p);
    matmul(g.as_mut(), Accum::Replace, xs.transpose(), xs.as_ref(), 1.0, Par::Seq);
    for i in 0..p {
        for j in 0..=i {
            meat[i * p + j] += g[(i, j)];
        }
    }
}

impl ResidualStats {
    /// Moments and Durbin–Watson of the residuals of a chunk's kept rows,
    /// in file order: chunk sums in f64 (lanes), then added to the
    /// double-double totals.
    fn add_residuals(&mut self, e: &[f64]) {
        self.add_residual_sums(e, residual_sums(e));
    }

    /// [`add_residuals`](Self::add_residuals) with the chunk's sums known.
    fn add_residual_sums(&mut self, e: &[f64], (sums, mut dw): ([f64; 4], f64)) {
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

    /// Per-cluster score sums `Σ x_r e_r` of a chunk: summed per level of
    /// the chunk first, then added to the running sums once per level.
    /// `rows` yields (chunk row, kept-row index); `x(r, j)` is design
    /// column `j` at kept row `r`.
    fn add_cluster_sums(
        &mut self,
        codes: &[u32],
        table: &[Level],
        rows: impl Iterator<Item = (usize, usize)>,
        p: usize,
        x: impl Fn(usize, usize) -> f64,
        e: impl Fn(usize) -> f64,
    ) {
        let mut sums = vec![0.0; table.len() * p];
        let mut seen = vec![false; table.len()];
        for (row, r) in rows {
            let code = codes[row];
            if code == u32::MAX {
                self.rows_without_cluster += 1;
                continue;
            }
            let c = code as usize;
            seen[c] = true;
            let er = e(r);
            for j in 0..p {
                sums[c * p + j] += x(r, j) * er;
            }
        }
        self.merge_cluster_sums(table, &sums, &seen, p);
    }

    /// Add a chunk's per-level sums (`table.len() × p`) for the levels seen.
    fn merge_cluster_sums(&mut self, table: &[Level], sums: &[f64], seen: &[bool], p: usize) {
        for (c, level) in table.iter().enumerate() {
            if !seen[c] {
                continue;
            }
            let s = &sums[c * p..(c + 1) * p];
            match self.clusters.get_mut(level) {
                Some(t) => t.iter_mut().zip(s).for_each(|(a, b)| *a += b),
                None => {
                    self.clusters.insert(level.clone(), s.to_vec());
                }
            }
        }
    }

    /// Per-cluster score sums Σ x_r e_r.
    #[allow(clippy::too_many_arguments)]
    fn add_clusters(
        &mut self,
        codes: &[u32],
        table: &[Level],
        kept: &[usize],
        x: &Mat<f64>,
        e: &[f64],
        p: usize,
        nr: usize,
    ) {
        self.add_cluster_sums(codes, table, (0..nr).map(|r| (kept[r], r)), p, |r, j| x[(r, j)], |r| e[r]);
    }
}

impl ResidualStats {
    /// The second pass over a batch of plain numeric columns read in place
    /// (AVX-512; see [`DesignBuilder::direct_inputs`]): residuals, moments,
    /// Durbin–Watson and the meat the covariance needs, without building
    /// the design block. `Ok(false)` where it does not apply — another
    /// model, another CPU, a value that is not finite — and the general
    /// path runs instead. The figures agree with the general path's to
    /// rounding (the residual is one fused multiply-add per column here).
    #[cfg(gramfit_x86)]
    fn add_chunk_direct(
        &mut self,
        builder: &DesignBuilder,
        spec: &SecondPassSpec,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<bool, DesignError> {
        let Some(inputs) = builder.direct_inputs(chunk, at)? else { return Ok(false) };
        let n = inputs.rows;
        // Numeric design columns are read in place. The design columns of
        // categorical terms (sums of cells) enter the default pass only
        // through the residual, as a per-row offset looked up by level;
        // the robust meats need them as columns, built from the codes.
        let robust = spec.cov != CovType::Nonrobust;
        let mut sources = Vec::with_capacity(spec.design.columns.len() + 1);
        let mut params = Vec::with_capacity(spec.params.len());
        if spec.design.intercept {
            params.push(spec.params[0]);
        }
        let off = usize::from(spec.design.intercept);
        let mut by_level: HashMap<(usize, &Level), f64> = HashMap::new();
        let mut dense: Vec<Vec<LevelCell<'_>>> = Vec::new();
        let mut codes_by_level: HashMap<usize, HashMap<&Level, u32>> = HashMap::new();
        let mut layout: Vec<Option<usize>> = Vec::new();
        for (j, c) in spec.design.columns.iter().enumerate() {
            if let [cell] = c.cells.as_slice() {
                if let Some(i) = builder.direct_index(cell) {
                    sources.push(inputs.column(i));
                    params.push(spec.params[off + j]);
                    layout.push(None);
                    continue;
                }
            }
            // A robust pass's column: its cells, as the codes of their
            // factor and the code of their level in this chunk (none: no
            // row has it); built where the column is used.
            let mut column = robust.then(Vec::new);
            for cell in &c.cells {
                let ColumnKey::Cell { term, levels } = cell else { return Ok(false) };
                let (Some(check), [level]) = (builder.direct_factor(*term), levels.as_slice()) else {
                    return Ok(false);
                };
                match &mut column {
                    None => *by_level.entry((check, level)).or_insert(0.0) += spec.params[off + j],
                    Some(cells) => {
                        let (codes, table) = inputs.codes[check].as_ref().expect("a categorical check has codes");
                        // Each level's code, looked up (a factor of L levels
                        // has L − 1 columns: no search per column).
                        let code_of = codes_by_level
                            .entry(check)
                            .or_insert_with(|| table.iter().enumerate().map(|(c, l)| (l, c as u32)).collect());
                        cells.push((check, &codes[..], code_of.get(level).copied()));
                    }
                }
            }
            if let Some(v) = column {
                params.push(spec.params[off + j]);
                layout.push(Some(dense.len()));
                dense.push(v);
            }
        }
        let offset: Option<Vec<f64>> = (!by_level.is_empty()).then(|| {
            let mut offset = vec![0.0; n];
            let checks: std::collections::BTreeSet<usize> = by_level.keys().map(|k| k.0).collect();
            for check in checks {
                let (codes, table) = inputs.codes[check].as_ref().expect("a categorical check has codes");
                let fitted: Vec<f64> =
                    table.iter().map(|l| by_level.get(&(check, l)).copied().unwrap_or(0.0)).collect();
                add_fitted_by_level(&mut offset, codes, &fitted);
            }
            offset
        });
        let Some(yi) = builder.direct_index(&ColumnKey::Response) else { return Ok(false) };
        sources.push(inputs.column(yi));
        let mask = inputs.mask.as_deref();
        let columns = DirectColumns { sources: &sources, layout: &layout, dense: &dense, params: &params };
        let mut bufs = PASS_BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let r = with_scratch(|scratch| {
            self.direct_pass(spec, chunk, &columns, offset.as_deref(), n, mask, scratch, &mut bufs)
        });
        PASS_BUFFERS.with(|b| *b.borrow_mut() = bufs);
        r
    }

    /// [`add_chunk_direct`](Self::add_chunk_direct) once the columns are
    /// known.
    #[cfg(gramfit_x86)]
    #[allow(clippy::too_many_arguments)]
    fn direct_pass(
        &mut self,
        spec: &SecondPassSpec,
        chunk: &RecordBatch,
        columns: &DirectColumns<'_>,
        offset: Option<&[f64]>,
        n: usize,
        mask: Option<&[u8]>,
        scratch: &mut Vec<f64>,
        bufs: &mut [Vec<f64>; 4],
    ) -> Result<bool, DesignError> {
        use crate::stats::{patterns, simd};
        let [full, kept, w, h] = bufs;
        let params = columns.params;
        let p = params.len();
        let nbytes = n.div_ceil(8);
        let stride = nbytes * 8;
        // 0/1 integer columns (at most a pattern's worth) are read as bits;
        // the response never is.
        let last = columns.sources.len() - 1;
        let may_flag: Vec<bool> = (0..=last).map(|i| i < last).collect();
        let mut bits = Vec::with_capacity(patterns::MAX_FLAGS * nbytes);
        let Some(read) = source_columns(columns.sources, &may_flag, patterns::MAX_FLAGS, n, mask, scratch, &mut bits)
        else {
            return Ok(false);
        };
        let flag_bits = |i: usize| &bits[i * nbytes..(i + 1) * nbytes];
        let (KernelColumn::F64(y), xread) = read.split_last().expect("the response is last") else {
            unreachable!("the response is never a flag")
        };
        // A factor's indicator columns (built from level codes) are flags
        // too, while the pattern has room: then a factor with a few levels
        // costs the robust kernels no more than a few 0/1 columns do.
        // A column of one cell is its level's indicator (0/1); others are
        // sums of indicators.
        let mut room = patterns::MAX_FLAGS - xread.iter().filter(|c| matches!(c, KernelColumn::Flag(_))).count();
        // A factor with more one-level columns than that (the one with the
        // most): its columns are not built at all; each row's level indexes
        // sums per level instead (see `GroupedMeat`, and `PendingScores`'
        // sums per cluster and level).
        let single = |cells: &[LevelCell<'_>]| match cells {
            [(check, _, _)] => Some(*check),
            _ => None,
        };
        let grouped: Option<usize> = if spec.cov != CovType::Nonrobust {
            let mut counts: Vec<(usize, usize)> = Vec::new();
            for cells in columns.dense {
                if let Some(at) = single(cells) {
                    match counts.iter_mut().find(|(q, _)| *q == at) {
                        Some(c) => c.1 += 1,
                        None => counts.push((at, 1)),
                    }
                }
            }
            counts.into_iter().max_by_key(|c| c.1).filter(|c| c.1 > room && c.1 < GROUPED_MAX_LEVELS).map(|c| c.0)
        } else {
            None
        };
        let mut grouped_codes: &[u32] = &[];
        let (mut dense_bits, mut dense_f64) = (Vec::new(), Vec::new());
        let mut dense_at: Vec<Dense> = Vec::with_capacity(columns.dense.len());
        for cells in columns.dense {
            if let [(check, codes, code)] = cells.as_slice() {
                if grouped == Some(*check) {
                    grouped_codes = codes;
                    dense_at.push(Dense::Level(*code));
                    continue;
                }
                if room > 0 {
                    let at = dense_bits.len();
                    dense_bits.resize(at + nbytes, 0);
                    if let Some(code) = *code {
                        // SAFETY: `source_columns` returned Some: the CPU has AVX-512F.
                        unsafe { simd::equal_bits_u32_avx512(codes, code, n, mask, &mut dense_bits[at..]) };
                    }
                    dense_at.push(Dense::Flag(at));
                    room -= 1;
                    continue;
                }
            }
            let mut v = vec![0.0; n];
            for &(_, codes, code) in cells {
                let Some(code) = code else { continue };
                for (x, &c) in v.iter_mut().zip(codes) {
                    *x += if c == code { 1.0 } else { 0.0 };
                }
            }
            dense_at.push(Dense::F64(dense_f64.len()));
            dense_f64.push(v);
        }
        // Design columns in design order.
        let mut design: Vec<DesignColumn<'_>> = Vec::with_capacity(p);
        if spec.design.intercept {
            design.push(DesignColumn::One);
        }
        let mut numeric = xread.iter();
        for l in columns.layout {
            design.push(match l {
                None => match numeric.next().expect("a source per numeric column") {
                    KernelColumn::F64(v) => DesignColumn::F64(v),
                    KernelColumn::Flag(i) => DesignColumn::Flag(flag_bits(*i)),
                },
                Some(d) => match dense_at[*d] {
                    Dense::Flag(at) => DesignColumn::Flag(&dense_bits[at..at + nbytes]),
                    Dense::F64(i) => DesignColumn::F64(&dense_f64[i]),
                    Dense::Level(code) => DesignColumn::Level { codes: grouped_codes, code },
                },
            });
        }
        if design.len() != p {
            return Ok(false);
        }
        // Kernel order: f64 columns, flags, intercept.
        let pick = |f: fn(&DesignColumn<'_>) -> bool| -> Vec<usize> { (0..p).filter(|&j| f(&design[j])).collect() };
        let cont = pick(|d| matches!(d, DesignColumn::F64(_)));
        let flags = pick(|d| matches!(d, DesignColumn::Flag(_)));
        let one = pick(|d| matches!(d, DesignColumn::One));
        let order: Vec<usize> = cont.iter().chain(&flags).chain(&one).copied().collect();
        // The grouped factor's columns (design indices), and each code's
        // column among them (none: `g`, the reference level's row).
        let grouped = pick(|d| matches!(d, DesignColumn::Level { .. }));
        let g = grouped.len();
        let mut code_column: Vec<u32> = Vec::new();
        for (l, &j) in grouped.iter().enumerate() {
            if let DesignColumn::Level { code: Some(c), .. } = design[j] {
                let c = c as usize;
                if code_column.len() <= c {
                    code_column.resize(c + 1, g as u32);
                }
                code_column[c] = l as u32;
            }
        }
        // Their fitted part joins the per-row offset (as the default pass
        // adds every factor's).
        let grouped_offset: Option<Vec<f64>> = (g > 0).then(|| {
            let fitted: Vec<f64> =
                code_column.iter().map(|&l| grouped.get(l as usize).map_or(0.0, |&j| params[j])).collect();
            let mut o = offset.map_or_else(|| vec![0.0; n], <[f64]>::to_vec);
            add_fitted_by_level(&mut o, grouped_codes, &fitted);
            o
        });
        let offset = grouped_offset.as_deref().or(offset);
        let cont_cols: Vec<&[f64]> = cont
            .iter()
            .map(|&j| match design[j] {
                DesignColumn::F64(v) => v,
                _ => unreachable!("an f64 column"),
            })
            .collect();
        let flag_cols: Vec<&[u8]> = flags
            .iter()
            .map(|&j| match design[j] {
                DesignColumn::Flag(b) => b,
                _ => unreachable!("a flag"),
            })
            .collect();
        let beta: Vec<f64> = cont.iter().map(|&j| params[j]).collect();
        let gamma: Vec<f64> = flags.iter().map(|&j| params[j]).collect();
        let b0 = one.first().map_or(0.0, |&j| params[j]);
        let (nc, nf) = (cont.len(), flags.len());
        let intercept = !one.is_empty();
        // The grouped factor's sums per level: tables split as for a
        // cluster pass (`patterns::cluster_rows`), one level more than it
        // has columns (rows of the reference level, and dropped rows).
        // Checked before anything is added: declining hands the chunk to
        // `block`, which adds all of it.
        let width = patterns::table_width(nc);
        let grouped_bits = patterns::cluster_bits(g + 1, nf, width);
        let grouped_fits = (g + 1) << grouped_bits <= (1 << 16) / width && (g + 1) << (nf - grouped_bits) <= 1 << 16;
        if g > 0 && spec.cov != CovType::Cluster && !grouped_fits {
            return Ok(false);
        }
        let (full, kept) = (sized(full, stride), sized(kept, n));
        // Rows' patterns of flags: the flags' fitted part is looked up by
        // them, and the robust covariances' sums are kept by them.
        let patterns =
            if nf == 0 && spec.cov == CovType::Nonrobust { Vec::new() } else { patterns::row_patterns(&flag_cols, n) };
        let terms = simd::FlagTerms::new(&gamma);
        let flag_part = (nf > 0).then_some((&patterns[..], &terms));
        // SAFETY (all `simd` and `patterns` calls below): `source_columns`
        // returned Some, so the CPU has AVX-512F and DQ; every column holds
        // n rows and every bit column a byte per 8 rows.
        let k =
            unsafe { simd::residuals_masked_avx512(y, offset, &cont_cols, &beta, flag_part, b0, n, mask, full, kept) };
        let kept = &kept[..k];
        // A NaN or infinite residual makes Σ e or the Durbin–Watson sum
        // NaN or infinite: let `block` sort those rows out.
        let sums = residual_sums(kept);
        if !(sums.0[0].is_finite() && sums.1.is_finite()) {
            return Ok(false);
        }
        self.ensure(spec.params.len());
        self.add_residual_sums(kept, sums);
        // The meat Σ w x xᵀ, as pattern sums and column products added to
        // those of the previous chunks of the same layout.
        let add_meat = |pending: &mut Option<PendingMeat>, w: &[f64]| -> Option<PendingMeat> {
            let same = |pm: &PendingMeat| {
                pm.order == order
                    && pm.nc == nc
                    && pm.cov == spec.cov
                    && pm.grouped.as_ref().map_or(0, |gm| gm.design.len()) == g
                    && pm.grouped.as_ref().is_none_or(|gm| gm.design == grouped && gm.bits == grouped_bits)
            };
            let done = pending.take_if(|pm| !same(pm));
            let pm = pending.get_or_insert_with(|| PendingMeat {
                cov: spec.cov,
                order: order.clone(),
                nc,
                nf,
                intercept,
                table: patterns::Table::zeroed(patterns::SPREAD * 256, width),
                cc: vec![0.0; nc * nc],
                grouped: (g > 0).then(|| GroupedMeat {
                    design: grouped.clone(),
                    bits: grouped_bits,
                    table: patterns::Table::zeroed((g + 1) << grouped_bits, width),
                    side: if grouped_bits < nf { vec![0.0; (g + 1) << (nf - grouped_bits)] } else { Vec::new() },
                }),
            });
            let mut cc = [0.0; 64];
            let cc = if nc <= 8 { &mut cc[..nc * nc] } else { &mut vec![0.0; nc * nc][..] };
            unsafe {
                if !patterns::meat_sums(&cont_cols, &patterns, n, mask, w, pm.table.as_mut_slice(), cc) {
                    simd::gram_lower_cols_avx512(&cont_cols, n, mask, Some(w), cc);
                    patterns::spread_pattern_sums(&cont_cols, &patterns, n, mask, Some(w), pm.table.as_mut_slice());
                }
            }
            for (a, b) in pm.cc.iter_mut().zip(cc.iter()) {
                *a += b;
            }
            if let Some(gm) = &mut pm.grouped {
                let (mut index, mut side) = (vec![0u16; stride], vec![0u16; stride]);
                let mut wl = vec![0.0; stride];
                let bits = gm.bits;
                unsafe {
                    patterns::cluster_rows(
                        grouped_codes,
                        &code_column,
                        &patterns,
                        w,
                        (nf, bits),
                        n,
                        mask,
                        &mut index,
                        &mut side,
                        &mut wl,
                    );
                    let rows = (g + 1) << bits;
                    patterns::pattern_sums(&cont_cols, &index, rows, n, mask, Some(&wl), gm.table.as_mut_slice());
                }
                if bits < nf {
                    patterns::side_sums(&side, &wl, n, &mut gm.side);
                }
            }
            done
        };
        match spec.cov {
            CovType::Nonrobust => {}
            CovType::Hc0 | CovType::Hc1 => {
                let w = sized(w, stride);
                for (w, e) in w.iter_mut().zip(full.iter()) {
                    *w = e * e;
                }
                if let Some(done) = add_meat(&mut self.pending_meat, w) {
                    self.add_pending(&done);
                }
            }
            CovType::Hc2 | CovType::Hc3 => {
                let cache = match self.leverage_cache.take() {
                    Some(c) if c.order == order && c.nc == nc && c.grouped == grouped => c,
                    _ => {
                        let bk: Vec<f64> =
                            order.iter().flat_map(|&i| order.iter().map(move |&j| spec.xtx_inv[i * p + j])).collect();
                        let table = patterns::leverage_table(&bk, nc, nf, intercept);
                        let (fixed, by_column) = grouped_leverage_tables(spec, (&order, nc, nf), &grouped);
                        LeverageCache {
                            order: order.clone(),
                            nc,
                            bk,
                            table,
                            grouped: grouped.clone(),
                            fixed,
                            by_column,
                        }
                    }
                };
                let h = sized(h, stride);
                unsafe {
                    patterns::leverage_by_patterns(
                        &cont_cols,
                        &cache.bk,
                        order.len(),
                        &patterns,
                        cache.table.as_slice(),
                        n,
                        mask,
                        h,
                    )
                };
                if g > 0 {
                    // SAFETY: as above; every level in `code_column` is at
                    // most g, and the tables hold g levels.
                    unsafe {
                        patterns::add_level_leverage(
                            grouped_codes,
                            (&code_column, g),
                            (&patterns, nf),
                            &cont_cols,
                            &cache.fixed,
                            &cache.by_column,
                            n,
                            mask,
                            h,
                        )
                    };
                }
                self.leverage_cache = Some(cache);
                let hc3 = spec.cov == CovType::Hc3;
                // Rows with leverage 1 (0/0 weights) are left out and
                // listed afterwards.
                let w = sized(w, stride);
                let any_lev_one = unsafe { simd::robust_weights_avx512(full, h, hc3, w) };
                let lev_one: Vec<usize> =
                    if any_lev_one { (0..stride).filter(|&r| 1.0 - h[r] <= 1e-10).collect() } else { Vec::new() };
                // Dropped rows have h = 0, and padding rows past n too:
                // only kept rows can have h = 1.
                self.leverage_one += lev_one.len() as u64;
                for (j, d) in design.iter().enumerate() {
                    let on_lev_one = lev_one.iter().filter(|&&r| d.nonzero_at(r)).count() as u64;
                    self.nonzero_leverage_one[j] += on_lev_one;
                    if self.nonzero_ordinary[j] == 0 {
                        let all = match d {
                            DesignColumn::One => k as u64,
                            DesignColumn::Flag(b) => simd::ones_in(b),
                            DesignColumn::F64(x) => unsafe { simd::count_nonzero_masked_avx512(x, n, mask) },
                            DesignColumn::Level { .. } => {
                                let is_kept = |r: usize| mask.is_none_or(|m| m[r / 8] >> (r % 8) & 1 == 1);
                                (0..n).filter(|&r| is_kept(r) && d.nonzero_at(r)).count() as u64
                            }
                        };
                        self.nonzero_ordinary[j] += all - on_lev_one;
                    }
                }
                if let Some(done) = add_meat(&mut self.pending_meat, w) {
                    self.add_pending(&done);
                }
            }
            CovType::Cluster => {
                let Some(column) = &spec.cluster else { return Ok(true) };
                let is_kept = |r: usize| mask.is_none_or(|m| m[r / 8] >> (r % 8) & 1 == 1);
                // The level is part of the row's pattern (see
                // `patterns::cluster_rows`), and rows without a cluster
                // weigh 0. The tables of (level, pattern) sums span chunks
                // while the layout stays and the levels seen so far fit.
                let width = patterns::table_width(nc);
                // A Parquet row group's batches share the cluster column's
                // dictionary: while a chunk's is the one the table's level
                // map was made for, its keys are its codes, and no level
                // table is built.
                let keyed = dictionary_keys(chunk, column);
                let reuse = self.pending_scores.as_ref().is_some_and(|ps| {
                    let same = match (&keyed, &ps.chunk_dict) {
                        (Some((_, v)), Some(d)) => std::ptr::addr_eq(Arc::as_ptr(v), Arc::as_ptr(d)),
                        _ => false,
                    };
                    same && ps.order == order && ps.nc == nc && ps.grouped == grouped
                });
                let coded = if reuse { None } else { Some(categorical_column(chunk, column)?) };
                let (codes, table): (&[u32], Option<&Vec<Level>>) = match (&coded, &keyed) {
                    (Some((codes, table)), _) => (codes, Some(table)),
                    (None, Some((keys, _))) => (keys, None),
                    (None, None) => unreachable!("reused for a dictionary only"),
                };
                // Table indices are u16; the main table at most 4 MiB.
                // Beyond, score sums row by row.
                // With a grouped factor, a (cluster, level) table of at most
                // 2²¹ sums (16 MiB).
                let fits = |levels: usize, bits: usize| {
                    levels << bits <= (1 << 16) / width
                        && levels << (nf - bits) <= 1 << 16
                        && (g == 0 || levels * (g + 1) <= 1 << 21)
                };
                let fresh = |ps: &PendingScores, table: &Vec<Level>| {
                    if ps.chunk_levels == *table {
                        0
                    } else {
                        table.iter().filter(|l| !ps.index.contains_key(l)).count()
                    }
                };
                // A table that has come to hold more levels than its split
                // suits (levels met late, in a stream) starts over, split
                // for at least as many.
                let keep = |ps: &PendingScores| {
                    let Some(table) = table else { return true };
                    let levels = ps.levels.len() + fresh(ps, table);
                    ps.order == order
                        && ps.nc == nc
                        && ps.grouped == grouped
                        && fits(levels, ps.bits)
                        && ps.bits <= patterns::cluster_bits(levels, nf, width)
                };
                let mut prior = 0;
                if let Some(done) = self.pending_scores.take_if(|ps| !keep(ps)) {
                    prior = done.levels.len();
                    done.collapse_into(self);
                }
                let bits = match (&self.pending_scores, table) {
                    (Some(ps), _) => ps.bits,
                    (None, Some(table)) => patterns::cluster_bits(table.len().max(prior), nf, width),
                    (None, None) => unreachable!("reused with a table pending"),
                };
                if table.is_none_or(|t| fits(t.len(), bits)) {
                    let ps = self.pending_scores.get_or_insert_with(|| PendingScores {
                        order: order.clone(),
                        nc,
                        nf,
                        bits,
                        intercept,
                        levels: Vec::new(),
                        index: BTreeMap::new(),
                        chunk_levels: Vec::new(),
                        chunk_map: Vec::new(),
                        chunk_dict: None,
                        seen: Vec::new(),
                        table: patterns::Table::zeroed(0, width),
                        side: Vec::new(),
                        grouped: grouped.clone(),
                        joint: Vec::new(),
                    });
                    // The chunk's level codes to the table's levels (as for
                    // the previous chunk when its levels were the same).
                    if let Some(table) = table {
                        if ps.chunk_levels != *table {
                            ps.chunk_map = table
                                .iter()
                                .map(|l| match ps.index.get(l) {
                                    Some(&at) => at,
                                    None => {
                                        let at = ps.levels.len() as u32;
                                        ps.index.insert(l.clone(), at);
                                        ps.levels.push(l.clone());
                                        ps.seen.push(false);
                                        ps.table.grow(1 << bits, width);
                                        if bits < nf {
                                            ps.side.resize(ps.side.len() + (1 << (nf - bits)), 0.0);
                                        }
                                        if g > 0 {
                                            ps.joint.resize(ps.joint.len() + g + 1, 0.0);
                                        }
                                        at
                                    }
                                })
                                .collect();
                            ps.chunk_levels = table.clone();
                        }
                        ps.chunk_dict = keyed.and_then(|(_, v)| (v.len() == table.len()).then(|| Arc::clone(v)));
                    }
                    let levels = &ps.chunk_map;
                    let w = sized(w, stride);
                    let mut index = vec![0u16; stride];
                    let mut side = if bits < nf { vec![0u16; stride] } else { Vec::new() };
                    let with_cluster = unsafe {
                        patterns::cluster_rows(
                            codes,
                            levels,
                            &patterns,
                            full,
                            (nf, bits),
                            n,
                            mask,
                            &mut index,
                            &mut side,
                            w,
                        )
                    };
                    self.rows_without_cluster += k as u64 - with_cluster;
                    // Levels with a kept row (codes past the levels: none;
                    // they land on the extra last entry).
                    if levels.iter().any(|&l| !ps.seen[l as usize]) {
                        let g = levels.len();
                        let mut met = vec![false; g + 1];
                        for (r, &code) in codes[..n].iter().enumerate() {
                            met[(code as usize).min(g)] |= is_kept(r);
                        }
                        for (&l, &m) in levels.iter().zip(&met) {
                            ps.seen[l as usize] |= m;
                        }
                    }
                    let rows = ps.levels.len() << bits;
                    unsafe {
                        patterns::pattern_sums(&cont_cols, &index, rows, n, mask, Some(w), ps.table.as_mut_slice())
                    };
                    if bits < nf {
                        patterns::side_sums(&side, w, n, &mut ps.side);
                    }
                    if g > 0 {
                        // Rows without a cluster weigh 0 (on cluster 0).
                        for r in 0..n {
                            let c = usize::from(index[r]) >> bits;
                            let l = code_column.get(grouped_codes[r] as usize).map_or(g, |&l| l as usize);
                            ps.joint[c * (g + 1) + l] += w[r];
                        }
                    }
                } else {
                    let rows = (0..n).filter(|&r| is_kept(r)).map(|r| (r, r));
                    let table = table.expect("a fresh table when it does not fit");
                    self.add_cluster_sums(codes, table, rows, p, |r, j| design[j].value_at(r), |r| full[r]);
                }
            }
        }
        Ok(true)
    }

    #[cfg(not(gramfit_x86))]
    fn add_chunk_direct(
        &mut self,
        _builder: &DesignBuilder,
        _spec: &SecondPassSpec,
        _chunk: &RecordBatch,
        _at: &dyn Fn(usize) -> String,
    ) -> Result<bool, DesignError> {
        Ok(false)
    }
}

/// `offset[r] += fitted[codes[r]]`: a factor's fitted part by level (a code
/// past `fitted` — a missing level's, or one without a column — adds
/// nothing).
#[cfg(gramfit_x86)]
fn add_fitted_by_level(offset: &mut [f64], codes: &[u32], fitted: &[f64]) {
    for (o, &code) in offset.iter_mut().zip(codes) {
        if let Some(f) = fitted.get(code as usize) {
            *o += f;
        }
    }
}

/// A cell of a design column built from level codes: the factor, its codes
/// in the chunk, and the code of the cell's level (none: no row has it).
#[cfg(gramfit_x86)]
type LevelCell<'a> = (usize, &'a [u32], Option<u32>);

/// The design columns of a chunk for the in-place second pass: numeric
/// ones read from `sources` (in order; the response last), categorical ones
/// from level codes (`dense`: per column its cells, as the factor, the
/// factor's codes and the level's code in the chunk), interleaved as
/// `layout` says (one entry per design column after the intercept);
/// `params` matches.
#[cfg(gramfit_x86)]
struct DirectColumns<'a> {
    sources: &'a [SourceColumn<'a>],
    layout: &'a [Option<usize>],
    dense: &'a [Vec<LevelCell<'a>>],
    params: &'a [f64],
}

thread_local! {
    /// Per-chunk buffers of the in-place second pass (residuals at row
    /// positions, kept residuals, weights, leverages), kept between chunks
    /// so that they are neither allocated nor zeroed each time: the
    /// kernels write every value they read.
    #[cfg(gramfit_x86)]
    static PASS_BUFFERS: std::cell::RefCell<[Vec<f64>; 4]> = const {
        std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new(), Vec::new()])
    };
}

/// The first `len` values of a reused buffer, grown if need be.
#[cfg(gramfit_x86)]
fn sized(v: &mut Vec<f64>, len: usize) -> &mut [f64] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// The grouped factor's part of the leverages (`B = (XᵀX)⁻¹`, design
/// order; `order`: the kernel's columns, flags and intercept): for a row of
/// level column `l` and flag pattern `q`, `fixed[l·2^nf + q] = B_ll +
/// 2 B_1l + 2 Σ_{k ∈ q} B_kl` and `by_column[l·nc + j] = 2 B_jl`, the
/// factor of the row's `j`-th column (see `patterns::add_level_leverage`).
/// Built once per layout.
#[cfg(gramfit_x86)]
fn grouped_leverage_tables(
    spec: &SecondPassSpec,
    (order, nc, nf): (&[usize], usize, usize),
    grouped: &[usize],
) -> (Vec<f64>, Vec<f64>) {
    let p = spec.params.len();
    let b = |i: usize, j: usize| spec.xtx_inv[i * p + j];
    let g = grouped.len();
    let one = order.get(nc + nf).copied();
    let pats = 1usize << nf;
    let mut fixed = vec![0.0; g * pats];
    let mut by_column = vec![0.0; g * nc];
    for (l, &i) in grouped.iter().enumerate() {
        let base = b(i, i) + one.map_or(0.0, |o| 2.0 * b(o, i));
        let flag: Vec<f64> = (0..nf).map(|k| 2.0 * b(order[nc + k], i)).collect();
        for (q, v) in fixed[l * pats..(l + 1) * pats].iter_mut().enumerate() {
            *v = base + (0..nf).filter(|k| q >> k & 1 == 1).map(|k| flag[k]).sum::<f64>();
        }
        for (jc, v) in by_column[l * nc..(l + 1) * nc].iter_mut().enumerate() {
            *v = 2.0 * b(order[jc], i);
        }
    }
    (fixed, by_column)
}

/// Where a column built from level codes went in the in-place second
/// pass: bits (at a byte offset), an `f64` vector (by index), or a level
/// of the grouped factor (its code in the chunk; none: no row has it).
#[cfg(gramfit_x86)]
#[derive(Clone, Copy)]
enum Dense {
    Flag(usize),
    F64(usize),
    Level(Option<u32>),
}

/// Levels the grouped factor may have (table rows are u16 indices).
#[cfg(gramfit_x86)]
const GROUPED_MAX_LEVELS: usize = 4096;

/// A design column in the in-place second pass.
#[cfg(gramfit_x86)]
enum DesignColumn<'a> {
    /// The intercept: 1 on every kept row.
    One,
    F64(&'a [f64]),
    /// A 0/1 column as bits (clear on dropped rows).
    Flag(&'a [u8]),
    /// The indicator of one level of the grouped factor: 1 where the
    /// row's code is `code`.
    Level {
        codes: &'a [u32],
        code: Option<u32>,
    },
}

#[cfg(gramfit_x86)]
impl DesignColumn<'_> {
    /// The value at chunk row `r` (a kept row).
    fn value_at(&self, r: usize) -> f64 {
        match self {
            DesignColumn::F64(x) => x[r],
            _ => f64::from(u8::from(self.nonzero_at(r))),
        }
    }

    /// Non-zero at chunk row `r` (the intercept: everywhere; callers ask
    /// only about kept rows).
    fn nonzero_at(&self, r: usize) -> bool {
        match self {
            DesignColumn::One => true,
            DesignColumn::F64(x) => x.get(r).is_some_and(|&v| v != 0.0),
            DesignColumn::Flag(b) => b.get(r / 8).is_some_and(|&v| v >> (r % 8) & 1 == 1),
            DesignColumn::Level { codes, code } => code.is_some_and(|c| codes.get(r) == Some(&c)),
        }
    }
}

impl crate::accumulator::EmptySink for ResidualStats {
    fn empty(_builder: &DesignBuilder) -> Self {
        ResidualStats::default()
    }
}

impl ChunkSink for ResidualStats {
    fn add_chunk(
        &mut self,
        builder: &DesignBuilder,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<(), DesignError> {
        let spec = builder.second_pass.as_ref().expect("a second pass has its spec");
        if self.add_chunk_direct(builder, spec, chunk, at)? {
            return Ok(());
        }
        let block = builder.block(chunk, at)?;
        let p = spec.params.len();
        self.ensure(p);
        let pos: HashMap<&ColumnKey, usize> = block.keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
        let y = pos[&ColumnKey::Response];
        let off = usize::from(spec.design.intercept);
        // Which block columns make up each design column.
        let parts: Vec<Vec<usize>> =
            spec.design.columns.iter().map(|c| c.cells.iter().filter_map(|k| pos.get(k).copied()).collect()).collect();
        // Clusters of the kept rows (rows dropped for missing values are
        // dropped from the clusters too).
        let cluster_levels: Option<(Vec<u32>, Vec<Level>)> = match &spec.cluster {
            Some(c) => Some(categorical_column(chunk, c)?),
            None => None,
        };
        let kept: Vec<usize> = block.kept.clone().unwrap_or_else(|| (0..block.rows_in).collect());
        let nr = block.nrows();
        if nr == 0 {
            return Ok(());
        }
        // The chunk's design matrix, whitened (√w x), column-major; columns
        // are filled as contiguous slices so the loops vectorise.
        let sw: Vec<f64> = match &block.weights {
            Some(w) => w.iter().map(|v| v.sqrt()).collect(),
            None => vec![1.0; nr],
        };
        let mut x = Mat::<f64>::zeros(nr, p);
        {
            if off == 1 {
                let c0 = x.col_mut(0).try_as_col_major_mut().expect("contiguous column").as_slice_mut();
                c0.copy_from_slice(&sw);
            }
            for (j, cols) in parts.iter().enumerate() {
                let cj = x.col_mut(off + j).try_as_col_major_mut().expect("contiguous column").as_slice_mut();
                for &c in cols {
                    for (v, h) in cj.iter_mut().zip(block.col(c)) {
                        *v += h;
                    }
                    if let Some(lo) = &block.lo[c] {
                        for (v, l) in cj.iter_mut().zip(lo.iter()) {
                            *v += l;
                        }
                    }
                }
                if block.weights.is_some() {
                    for (v, s) in cj.iter_mut().zip(&sw) {
                        *v *= s;
                    }
                }
            }
        }
        let xcol = |j: usize| -> &[f64] { x.col(j).try_as_col_major().expect("contiguous column").as_slice() };
        // Residuals e = √w (y − x β).
        let mut e: Vec<f64> = (0..nr).map(|r| sw[r] * block.value(y, r)).collect();
        for j in 0..p {
            let b = spec.params[j];
            if b != 0.0 {
                for (er, xv) in e.iter_mut().zip(xcol(j)) {
                    *er -= b * xv;
                }
            }
        }
        self.add_residuals(&e);
        let need_leverage = matches!(spec.cov, CovType::Hc2 | CovType::Hc3);
        let need_meat0 = matches!(spec.cov, CovType::Hc0 | CovType::Hc1);
        if need_meat0 {
            accumulate_meat(&mut self.meat0, &x, &e, p, nr);
        }
        if !need_leverage {
            if let Some((codes, table)) = &cluster_levels {
                self.add_clusters(codes, table, &kept, &x, &e, p, nr);
            }
            return Ok(());
        }
        // Leverages h = diag(X B Xᵀ).
        let mut b = Mat::<f64>::zeros(p, p);
        for i in 0..p {
            for j in 0..p {
                b[(i, j)] = spec.xtx_inv[i * p + j];
            }
        }
        let mut xb = Mat::<f64>::zeros(nr, p);
        matmul(xb.as_mut(), Accum::Replace, x.as_ref(), b.as_ref(), 1.0, Par::Seq);
        let mut h = vec![0.0; nr];
        for j in 0..p {
            let xbj = xb.col(j).try_as_col_major().expect("contiguous column").as_slice();
            for ((hv, a), c) in h.iter_mut().zip(xbj).zip(xcol(j)) {
                *hv += a * c;
            }
        }
        let mut s2 = vec![0.0; nr];
        let mut s3 = vec![0.0; nr];
        let mut lev_one = vec![false; nr];
        for r in 0..nr {
            let one_minus_h = 1.0 - h[r];
            if one_minus_h <= 1e-10 {
                self.leverage_one += 1;
                lev_one[r] = true;
            } else {
                s2[r] = e[r] / one_minus_h.sqrt();
                s3[r] = e[r] / one_minus_h;
            }
        }
        for j in 0..p {
            for (r, &v) in xcol(j).iter().enumerate() {
                if v != 0.0 {
                    if lev_one[r] {
                        self.nonzero_leverage_one[j] += 1;
                    } else {
                        self.nonzero_ordinary[j] += 1;
                    }
                }
            }
        }
        if spec.cov == CovType::Hc2 {
            accumulate_meat(&mut self.meat2, &x, &s2, p, nr);
        } else {
            accumulate_meat(&mut self.meat3, &x, &s3, p, nr);
        }
        Ok(())
    }

    #[cfg(gramfit_x86)]
    fn finish(&mut self) {
        self.flush_meat();
        if let Some(ps) = self.pending_scores.take() {
            ps.collapse_into(self);
        }
    }

    /// `self` followed by `other` in file order.
    fn merge(&mut self, other: &Self) {
        if other.n == 0 {
            return;
        }
        #[cfg(gramfit_x86)]
        {
            self.flush_meat();
            if let Some(pm) = &other.pending_meat {
                self.add_pending(pm);
            }
            if let Some(ps) = self.pending_scores.take() {
                ps.collapse_into(self);
            }
            if let Some(ps) = &other.pending_scores {
                ps.collapse_into(self);
            }
        }
        if let (Some(l), Some(f)) = (self.last, other.first) {
            let d = f - l;
            self.dw_num += Dd::mul_f64s(d, d);
        }
        if self.first.is_none() {
            self.first = other.first;
        }
        self.last = other.last;
        self.n += other.n;
        for k in 0..4 {
            self.power[k] += other.power[k];
        }
        self.dw_num += other.dw_num;
        add_mat(&mut self.meat0, &other.meat0);
        add_mat(&mut self.meat2, &other.meat2);
        add_mat(&mut self.meat3, &other.meat3);
        self.leverage_one += other.leverage_one;
        for (v, o) in [
            (&mut self.nonzero_ordinary, &other.nonzero_ordinary),
            (&mut self.nonzero_leverage_one, &other.nonzero_leverage_one),
        ] {
            if v.is_empty() {
                *v = o.clone();
            } else {
                for (a, b) in v.iter_mut().zip(o) {
                    *a += b;
                }
            }
        }
        for (l, s) in &other.clusters {
            match self.clusters.get_mut(l) {
                Some(t) => {
                    for (a, b) in t.iter_mut().zip(s) {
                        *a += b;
                    }
                }
                None => {
                    self.clusters.insert(l.clone(), s.clone());
                }
            }
        }
        self.rows_without_cluster += other.rows_without_cluster;
    }

    fn rows(&self) -> (u64, u64) {
        (self.n, 0)
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

/// The robust covariance of β (`p × p`), statsmodels' conventions: the
/// sandwich (XᵀX)⁻¹ M (XᵀX)⁻¹; HC1 scales by n/(n−k); cluster by
/// G/(G−1)·(n−1)/(n−k).
pub fn robust_cov(st: &ResidualStats, spec: &SecondPassSpec, cov: CovType, df_resid: f64) -> Option<Vec<f64>> {
    if st.n == 0 || st.meat0.is_empty() {
        return None;
    }
    let p = spec.params.len();
    let full = |m: &[f64]| -> Vec<f64> {
        let mut f = vec![0.0; p * p];
        for i in 0..p {
            for j in 0..=i {
                f[i * p + j] = m[i * p + j];
                f[j * p + i] = m[i * p + j];
            }
        }
        f
    };
    let n = st.n as f64;
    let (meat, factor) = match cov {
        CovType::Nonrobust => return None,
        CovType::Hc0 | CovType::Hc2 | CovType::Hc3 => (full(&st.meat(cov)), 1.0),
        CovType::Hc1 => (full(&st.meat(cov)), n / df_resid),
        CovType::Cluster => {
            let mut m = vec![0.0; p * p];
            for s in st.clusters.values() {
                for i in 0..p {
                    for j in 0..p {
                        m[i * p + j] += s[i] * s[j];
                    }
                }
            }
            let g = st.clusters.len() as f64;
            let k = n - df_resid;
            (m, g / (g - 1.0) * (n - 1.0) / (n - k))
        }
    };
    let b = &spec.xtx_inv;
    let mut out = square_product(&square_product(b, &meat, p), b, p);
    out.iter_mut().for_each(|v| *v *= factor);
    Some(out)
}

/// `a · b` for row-major `p × p` matrices (small: the sandwich only).
fn square_product(a: &[f64], b: &[f64], p: usize) -> Vec<f64> {
    let mut out = vec![0.0; p * p];
    for i in 0..p {
        for l in 0..p {
            let ail = a[i * p + l];
            for j in 0..p {
                out[i * p + j] += ail * b[l * p + j];
            }
        }
    }
    out
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
