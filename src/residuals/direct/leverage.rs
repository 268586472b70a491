//! Leverages `h = xᵀ B x` (`B = (XᵀX)⁻¹`) of the in-place pass, for HC2 and
//! HC3: the flags' part of the quadratic form is looked up by each row's
//! pattern of flags in a table built once per column layout, and a grouped
//! factor's part by its level; the rows' HC2/HC3 weights follow, with rows
//! of leverage 1 (0/0 weights) left out and counted.

use super::{DesignColumn, Layout};
use crate::residuals::ResidualStats;
use crate::second_pass::{CovType, SecondPassSpec};
use crate::stats::patterns;
use crate::stats::portable::row_kernels::RowKernels;

/// `(XᵀX)⁻¹` in kernel order and its per-pattern table, for one layout:
/// kernel order (design indices) and the number of `f64` columns.
#[derive(Clone, Debug)]
pub(in crate::residuals) struct LeverageCache {
    order: Vec<usize>,
    nc: usize,
    bk: Vec<f64>,
    table: patterns::Table,
    /// The grouped factor's columns, and their part of the leverages (see
    /// [`grouped_leverage_tables`]).
    grouped: Vec<usize>,
    fixed: Vec<f64>,
    by_column: Vec<f64>,
}

impl LeverageCache {
    fn new(spec: &SecondPassSpec, layout: &Layout<'_>) -> LeverageCache {
        let p = spec.params.len();
        let order = &layout.order;
        let bk: Vec<f64> = order.iter().flat_map(|&i| order.iter().map(move |&j| spec.xtx_inv[i * p + j])).collect();
        let table = patterns::leverage_table(&bk, layout.nc, layout.nf, layout.intercept);
        let (fixed, by_column) = grouped_leverage_tables(spec, (order, layout.nc, layout.nf), &layout.grouped.columns);
        LeverageCache {
            order: order.clone(),
            nc: layout.nc,
            bk,
            table,
            grouped: layout.grouped.columns.clone(),
            fixed,
            by_column,
        }
    }

    fn fits(&self, layout: &Layout<'_>) -> bool {
        self.order == layout.order && self.nc == layout.nc && self.grouped == layout.grouped.columns
    }
}

impl ResidualStats {
    /// The leverages of the chunk's rows into `h` (`stride` values; 0 on
    /// dropped rows and past `n`).
    pub(super) fn leverages(&mut self, k: impl RowKernels, spec: &SecondPassSpec, layout: &Layout<'_>, h: &mut [f64]) {
        let cache = match self.leverage_cache.take() {
            Some(c) if c.fits(layout) => c,
            _ => LeverageCache::new(spec, layout),
        };
        let (n, mask) = (layout.n, layout.mask);
        k.leverages(
            &layout.cont_cols,
            &cache.bk,
            layout.order.len(),
            &layout.patterns,
            cache.table.as_slice(),
            n,
            mask,
            h,
        );
        let g = &layout.grouped;
        if !g.columns.is_empty() {
            k.add_level_leverage(
                g.codes,
                (&g.code_column, g.columns.len()),
                (&layout.patterns, layout.nf),
                &layout.cont_cols,
                &cache.fixed,
                &cache.by_column,
                n,
                mask,
                h,
            );
        }
        self.leverage_cache = Some(cache);
    }

    /// HC2 (`e²/(1−h)`) or HC3 (`e²/(1−h)²`) weights of the rows into `w`;
    /// rows with leverage 1 weigh 0 and are counted, per design column
    /// where it is non-zero (`kept_rows`: the chunk's kept rows).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_leverage_weights(
        &mut self,
        k: impl RowKernels,
        cov: CovType,
        layout: &Layout<'_>,
        e: &[f64],
        h: &[f64],
        w: &mut [f64],
        kept_rows: usize,
    ) {
        let (n, mask) = (layout.n, layout.mask);
        let any_lev_one = k.robust_weights(e, h, cov == CovType::Hc3, w);
        // Dropped rows have h = 0, and padding rows past n too: only kept
        // rows can have h = 1.
        let lev_one: Vec<usize> =
            if any_lev_one { (0..layout.stride).filter(|&r| 1.0 - h[r] <= 1e-10).collect() } else { Vec::new() };
        self.leverage_one += lev_one.len() as u64;
        for (j, d) in layout.design.iter().enumerate() {
            let on_lev_one = lev_one.iter().filter(|&&r| d.nonzero_at(r)).count() as u64;
            self.nonzero_leverage_one[j] += on_lev_one;
            if self.nonzero_ordinary[j] == 0 {
                let all = match d {
                    DesignColumn::One => kept_rows as u64,
                    DesignColumn::Flag(b) => crate::bits::ones_in(b),
                    DesignColumn::F64(x) => k.count_nonzero_masked(x, n, mask),
                    DesignColumn::Level { .. } => {
                        (0..n).filter(|&r| layout.is_kept(r) && d.nonzero_at(r)).count() as u64
                    }
                };
                self.nonzero_ordinary[j] += all - on_lev_one;
            }
        }
    }
}

/// The grouped factor's part of the leverages (`B = (XᵀX)⁻¹`, design
/// order; `order`: the kernel's columns, flags and intercept): for a row of
/// level column `l` and flag pattern `q`, `fixed[l·2^nf + q] = B_ll +
/// 2 B_1l + 2 Σ_{k ∈ q} B_kl` and `by_column[l·nc + j] = 2 B_jl`, the
/// factor of the row's `j`-th column (see `patterns::add_level_leverage`).
/// Built once per layout.
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
