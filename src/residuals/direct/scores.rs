//! The in-place pass's cluster-robust scores `s_g = Σ_{i∈g} x_i e_i`: the
//! cluster's level joins each row's pattern of flags as the key of a table
//! of sums (see `patterns::cluster_rows`), which spans consecutive chunks
//! while their column layout stays and the levels met so far fit; rows
//! without a cluster weigh 0. Where the levels outgrow the tables, scores
//! are summed row by row.

use super::Layout;
use crate::design::{categorical_column, dictionary_keys, DesignError};
use crate::level::Level;
use crate::residuals::ResidualStats;
use crate::stats::patterns;
use crate::stats::portable::row_kernels::RowKernels;
use arrow::array::RecordBatch;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Per-cluster score sums as a table of `level · 2^nf + pattern` rows
/// (weights: the residuals), summed over consecutive chunks with the same
/// kernel layout while their levels fit (each chunk's level codes are
/// mapped to the table's levels).
#[derive(Clone, Debug)]
pub(in crate::residuals) struct PendingScores {
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
    table: patterns::Table,
    side: Vec<f64>,
    /// The grouped factor's columns (design indices; see `GroupedMeat`)
    /// and, per cluster, `Σ e` over its rows of each of the factor's
    /// levels (`joint[c·(q + 1) + l]`, `q` columns; the last level is not
    /// a column).
    grouped: Vec<usize>,
    joint: Vec<f64>,
}

impl PendingScores {
    fn new(layout: &Layout<'_>, bits: usize) -> PendingScores {
        PendingScores {
            order: layout.order.clone(),
            nc: layout.nc,
            nf: layout.nf,
            bits,
            intercept: layout.intercept,
            levels: Vec::new(),
            index: BTreeMap::new(),
            chunk_levels: Vec::new(),
            chunk_map: Vec::new(),
            chunk_dict: None,
            seen: Vec::new(),
            table: patterns::Table::zeroed(0, patterns::table_width(layout.nc)),
            side: Vec::new(),
            grouped: layout.grouped.columns.clone(),
            joint: Vec::new(),
        }
    }

    fn same_layout(&self, layout: &Layout<'_>) -> bool {
        self.order == layout.order && self.nc == layout.nc && self.grouped == layout.grouped.columns
    }

    /// Map the chunk's level codes to the table's levels (as for the
    /// previous chunk when its levels were the same), growing the tables
    /// for levels met for the first time.
    fn map_levels(&mut self, table: &[Level]) {
        if self.chunk_levels == table {
            return;
        }
        let width = patterns::table_width(self.nc);
        let (bits, nf, g) = (self.bits, self.nf, self.grouped.len());
        self.chunk_map = table
            .iter()
            .map(|l| match self.index.get(l) {
                Some(&at) => at,
                None => {
                    let at = self.levels.len() as u32;
                    self.index.insert(l.clone(), at);
                    self.levels.push(l.clone());
                    self.seen.push(false);
                    self.table.grow(1 << bits, width);
                    if bits < nf {
                        self.side.resize(self.side.len() + (1 << (nf - bits)), 0.0);
                    }
                    if g > 0 {
                        self.joint.resize(self.joint.len() + g + 1, 0.0);
                    }
                    at
                }
            })
            .collect();
        self.chunk_levels = table.to_vec();
    }

    /// Add the score sums to `st.clusters`.
    pub(in crate::residuals) fn collapse_into(&self, st: &mut ResidualStats) {
        let (g, mp) = (self.levels.len(), self.order.len());
        let (q, p) = (self.grouped.len(), mp + self.grouped.len());
        let sums = patterns::scores_from_patterns(
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

impl ResidualStats {
    /// Add the chunk's cluster scores (`e`: residuals at row positions; `w`:
    /// a buffer of `stride` values; `kept_rows`: kept rows).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_scores(
        &mut self,
        k: impl RowKernels,
        chunk: &RecordBatch,
        column: &str,
        layout: &Layout<'_>,
        e: &[f64],
        w: &mut [f64],
        kept_rows: usize,
    ) -> Result<(), DesignError> {
        let (n, mask, nf, stride) = (layout.n, layout.mask, layout.nf, layout.stride);
        let g = layout.grouped.columns.len();
        let width = patterns::table_width(layout.nc);
        // A Parquet row group's batches share the cluster column's
        // dictionary: while a chunk's is the one the table's level map was
        // made for, its keys are its codes, and no level table is built.
        let keyed = dictionary_keys(chunk, column);
        let reuse = self.pending_scores.as_ref().is_some_and(|ps| {
            let same = match (&keyed, &ps.chunk_dict) {
                (Some((_, v)), Some(d)) => std::ptr::addr_eq(Arc::as_ptr(v), Arc::as_ptr(d)),
                _ => false,
            };
            same && ps.same_layout(layout)
        });
        let coded = if reuse { None } else { Some(categorical_column(chunk, column)?) };
        let (codes, table): (&[u32], Option<&Vec<Level>>) = match (&coded, &keyed) {
            (Some((codes, table)), _) => (codes, Some(table)),
            (None, Some((keys, _))) => (keys, None),
            (None, None) => unreachable!("reused for a dictionary only"),
        };
        // Table indices are u16; the main table at most 4 MiB. With a
        // grouped factor, a (cluster, level) table of at most 2²¹ sums
        // (16 MiB). Beyond, score sums row by row.
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
        // A table that has come to hold more levels than its split suits
        // (levels met late, in a stream) starts over, split for at least
        // as many.
        let keep = |ps: &PendingScores| {
            let Some(table) = table else { return true };
            let levels = ps.levels.len() + fresh(ps, table);
            ps.same_layout(layout) && fits(levels, ps.bits) && ps.bits <= patterns::cluster_bits(levels, nf, width)
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
        if !table.is_none_or(|t| fits(t.len(), bits)) {
            let rows = (0..n).filter(|&r| layout.is_kept(r)).map(|r| (r, r));
            let table = table.expect("a fresh table when it does not fit");
            let design = &layout.design;
            self.add_cluster_sums(codes, table, rows, design.len(), |r, j| design[j].value_at(r), |r| e[r]);
            return Ok(());
        }
        let ps = self.pending_scores.get_or_insert_with(|| PendingScores::new(layout, bits));
        if let Some(table) = table {
            ps.map_levels(table);
            ps.chunk_dict = keyed.and_then(|(_, v)| (v.len() == table.len()).then(|| Arc::clone(v)));
        }
        let levels = &ps.chunk_map;
        let mut index = vec![0u16; stride];
        let mut side = if bits < nf { vec![0u16; stride] } else { Vec::new() };
        let with_cluster =
            k.cluster_rows(codes, levels, &layout.patterns, e, (nf, bits), n, mask, &mut index, &mut side, w);
        self.rows_without_cluster += kept_rows as u64 - with_cluster;
        // Levels with a kept row (codes past the levels: none; they land on
        // the extra last entry).
        if levels.iter().any(|&l| !ps.seen[l as usize]) {
            let g = levels.len();
            let mut met = vec![false; g + 1];
            for (r, &code) in codes[..n].iter().enumerate() {
                met[(code as usize).min(g)] |= layout.is_kept(r);
            }
            for (&l, &m) in levels.iter().zip(&met) {
                ps.seen[l as usize] |= m;
            }
        }
        let rows = ps.levels.len() << bits;
        k.pattern_sums(&layout.cont_cols, &index, rows, n, mask, Some(w), ps.table.as_mut_slice());
        if bits < nf {
            patterns::side_sums(&side, w, n, &mut ps.side);
        }
        if g > 0 {
            // Rows without a cluster weigh 0 (on cluster 0).
            let gf = &layout.grouped;
            for r in 0..n {
                let c = usize::from(index[r]) >> bits;
                let l = gf.code_column.get(gf.codes[r] as usize).map_or(g, |&l| l as usize);
                ps.joint[c * (g + 1) + l] += w[r];
            }
        }
        Ok(())
    }
}
