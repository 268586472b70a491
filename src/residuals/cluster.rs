//! Cluster-robust score sums `s_g = Σ_{i∈g} x_i e_i` (Liang & Zeger 1986),
//! per level of the cluster column, row by row (the general path; the
//! in-place pass keeps them as pattern tables, see `direct::scores`).

use super::ResidualStats;
use crate::level::Level;
use faer::Mat;

impl ResidualStats {
    /// Per-cluster score sums `Σ x_r e_r` of a chunk: summed per level of
    /// the chunk first, then added to the running sums once per level.
    /// `rows` yields (chunk row, kept-row index); `x(r, j)` is design
    /// column `j` at kept row `r`.
    pub(super) fn add_cluster_sums(
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
    pub(super) fn merge_cluster_sums(&mut self, table: &[Level], sums: &[f64], seen: &[bool], p: usize) {
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
    pub(super) fn add_clusters(
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
