//! The in-place pass's meats `Σ w·x xᵀ` (`w`: e², or the HC2/HC3
//! weights): sums per pattern of flags and `f64`-column products (see
//! [`crate::stats::patterns`]), summed over consecutive chunks of one
//! column layout and collapsed into the `p × p` meat once per run instead
//! of once per chunk.

use super::Layout;
use crate::residuals::ResidualStats;
use crate::second_pass::CovType;
use crate::stats::patterns;
use crate::stats::portable::row_kernels::RowKernels;

/// A meat as per-pattern sums and column × column products, pending.
#[derive(Clone, Debug)]
pub(in crate::residuals) struct PendingMeat {
    cov: CovType,
    /// Kernel order (design indices: columns, flags, intercept).
    order: Vec<usize>,
    nc: usize,
    nf: usize,
    intercept: bool,
    table: patterns::Table,
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
#[derive(Clone, Debug)]
struct GroupedMeat {
    design: Vec<usize>,
    bits: usize,
    table: patterns::Table,
    side: Vec<f64>,
}

/// Which meat a covariance type uses (HC0 and HC1 share one).
fn meat_kind(cov: CovType) -> CovType {
    if cov == CovType::Hc1 {
        CovType::Hc0
    } else {
        cov
    }
}

impl PendingMeat {
    fn new(cov: CovType, layout: &Layout<'_>) -> PendingMeat {
        let (nc, nf) = (layout.nc, layout.nf);
        let width = patterns::table_width(nc);
        let g = &layout.grouped;
        let levels = g.columns.len() + 1;
        PendingMeat {
            cov,
            order: layout.order.clone(),
            nc,
            nf,
            intercept: layout.intercept,
            table: patterns::Table::zeroed(patterns::SPREAD * 256, width),
            cc: vec![0.0; nc * nc],
            grouped: (!g.columns.is_empty()).then(|| GroupedMeat {
                design: g.columns.clone(),
                bits: g.bits,
                table: patterns::Table::zeroed(levels << g.bits, width),
                side: if g.bits < nf { vec![0.0; levels << (nf - g.bits)] } else { Vec::new() },
            }),
        }
    }

    /// Whether the chunks of `layout` add to these sums.
    fn fits(&self, cov: CovType, layout: &Layout<'_>) -> bool {
        let g = &layout.grouped;
        self.order == layout.order
            && self.nc == layout.nc
            && self.cov == cov
            && match &self.grouped {
                None => g.columns.is_empty(),
                Some(gm) => gm.design == g.columns && gm.bits == g.bits,
            }
    }

    /// Add to `meat` (`p × p`, design order, lower triangle).
    fn collapse_into(&self, meat: &mut [f64]) {
        let mp = self.order.len();
        let p = mp + self.grouped.as_ref().map_or(0, |gm| gm.design.len());
        let folded = patterns::fold_spread(self.table.as_slice(), patterns::table_width(self.nc));
        let mk = patterns::meat_from_patterns(&folded, &self.cc, self.nc, self.nf, self.intercept);
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
        let sums = patterns::scores_from_patterns(gm.table.as_slice(), &gm.side, g + 1, nc, (nf, gm.bits), true);
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

impl ResidualStats {
    /// Add the chunk's `Σ w·x xᵀ` to the pending sums of its layout
    /// (collapsing those of another layout first).
    pub(super) fn add_meat(&mut self, k: impl RowKernels, cov: CovType, layout: &Layout<'_>, w: &[f64]) {
        if let Some(done) = self.pending_meat.take_if(|pm| !pm.fits(cov, layout)) {
            self.add_pending(&done);
        }
        let pm = self.pending_meat.get_or_insert_with(|| PendingMeat::new(cov, layout));
        let (n, mask, nc, cols) = (layout.n, layout.mask, layout.nc, &layout.cont_cols[..]);
        let mut cc = [0.0; 64];
        let cc = if nc <= 8 { &mut cc[..nc * nc] } else { &mut vec![0.0; nc * nc][..] };
        k.meat_sums(cols, &layout.patterns, n, mask, w, pm.table.as_mut_slice(), cc);
        for (a, b) in pm.cc.iter_mut().zip(cc.iter()) {
            *a += b;
        }
        if let Some(gm) = &mut pm.grouped {
            let g = &layout.grouped;
            let stride = layout.stride;
            let (mut index, mut side) = (vec![0u16; stride], vec![0u16; stride]);
            let mut wl = vec![0.0; stride];
            let bits = gm.bits;
            k.cluster_rows(
                g.codes,
                &g.code_column,
                &layout.patterns,
                w,
                (layout.nf, bits),
                n,
                mask,
                &mut index,
                &mut side,
                &mut wl,
            );
            let rows = (g.columns.len() + 1) << bits;
            k.pattern_sums(cols, &index, rows, n, mask, Some(&wl), gm.table.as_mut_slice());
            if bits < layout.nf {
                patterns::side_sums(&side, &wl, n, &mut gm.side);
            }
        }
    }

    /// Add a meat pending as pattern sums to its meat.
    pub(in crate::residuals) fn add_pending(&mut self, pm: &PendingMeat) {
        self.ensure(pm.order.len() + pm.grouped.as_ref().map_or(0, |gm| gm.design.len()));
        let meat = match pm.cov {
            CovType::Hc2 => &mut self.meat2,
            CovType::Hc3 => &mut self.meat3,
            _ => &mut self.meat0,
        };
        pm.collapse_into(meat);
    }

    /// Collapse the pending meat into its meat.
    pub(in crate::residuals) fn flush_meat(&mut self) {
        if let Some(pm) = self.pending_meat.take() {
            self.add_pending(&pm);
        }
    }

    /// Add the pending meat to `m`, a copy of the meat of `cov`, when it is
    /// that meat's.
    pub(in crate::residuals) fn add_pending_meat_to(&self, cov: CovType, m: &mut [f64]) {
        if let Some(pm) = self.pending_meat.as_ref().filter(|pm| meat_kind(pm.cov) == meat_kind(cov)) {
            pm.collapse_into(m);
        }
    }
}
