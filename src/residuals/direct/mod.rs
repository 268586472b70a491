//! The second pass in place: a chunk's numeric columns are read where
//! Arrow holds them, its 0/1 columns and a factor's few level indicators
//! as bits, a many-level factor by its codes — the design block is never
//! built. The kernels are the instruction set's [`RowKernels`] (the same
//! bits on every one). The residual is one fused multiply-add per column
//! here (the general path subtracts products), so the figures agree with
//! the general path's to rounding; the tests compare the two.
//!
//! [`ResidualStats::add_chunk_direct`] lays a chunk's columns out for the
//! kernels ([`Layout`]), takes the residuals and their moments, then what
//! the covariance asks for: [`meat`] (HC0–HC3 meats as pattern sums),
//! [`leverage`] (HC2/HC3 leverages and weights), [`scores`] (cluster
//! scores).

mod leverage;
mod meat;
mod scores;

pub(super) use leverage::LeverageCache;
pub(super) use meat::PendingMeat;
pub(super) use scores::PendingScores;

use super::ResidualStats;
use crate::design::{DesignBuilder, DesignError, DirectInputs};
use crate::level::{ColumnKey, Level};
use crate::second_pass::{CovType, SecondPassSpec};
use crate::stats::columns::{KernelColumn, SourceColumn};
use crate::stats::kernel::with_scratch;
use crate::stats::patterns;
use crate::stats::portable::row_kernels::{source_columns, RowKernels};
use crate::stats::portable::rows::FlagTerms;
use crate::stats::portable::Portable;
use arrow::array::RecordBatch;
use std::collections::HashMap;

impl ResidualStats {
    /// The second pass over a batch of plain numeric columns read in place
    /// (AVX-512; see [`DesignBuilder::direct_inputs`]): residuals, moments,
    /// Durbin–Watson and the meat the covariance needs, without building
    /// the design block. `Ok(false)` where it does not apply — another
    /// model, another CPU, a value that is not finite — and the general
    /// path runs instead. The figures agree with the general path's to
    /// rounding (the residual is one fused multiply-add per column here).
    pub(super) fn add_chunk_direct(
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
        // A term read by level (`size_sqft:C(borough)`): its slope per
        // (values check, factor check, level).
        let mut slopes: HashMap<(usize, usize, &Level), f64> = HashMap::new();
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
                // The yes column of a yes/no factor is its bits: a 0/1
                // column like any other.
                if let Some(yes) = yes_no_column(builder, &inputs, cell) {
                    sources.push(SourceColumn::Bits(yes));
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
                if let (Some((values, check)), [level]) = (builder.direct_by_level(*term), levels.as_slice()) {
                    // Only the residual needs it: a robust meat's column
                    // builds the block.
                    if robust {
                        return Ok(false);
                    }
                    *slopes.entry((values, check, level)).or_insert(0.0) += spec.params[off + j];
                    continue;
                }
                let (Some(check), [level]) = (builder.direct_factor(*term), levels.as_slice()) else {
                    return Ok(false);
                };
                match &mut column {
                    None => *by_level.entry((check, level)).or_insert(0.0) += spec.params[off + j],
                    Some(cells) => {
                        let factor = inputs.codes[check].as_ref().expect("a categorical check has codes");
                        // Each level's code, looked up (a factor of L levels
                        // has L − 1 columns: no search per column).
                        let code_of = codes_by_level
                            .entry(check)
                            .or_insert_with(|| factor.table.iter().enumerate().map(|(c, l)| (l, c as u32)).collect());
                        cells.push((check, factor.codes(), code_of.get(level).copied()));
                    }
                }
            }
            if let Some(v) = column {
                params.push(spec.params[off + j]);
                layout.push(Some(dense.len()));
                dense.push(v);
            }
        }
        let offset: Option<Vec<f64>> = (!by_level.is_empty() || !slopes.is_empty()).then(|| {
            let mut offset = vec![0.0; n];
            let pairs: std::collections::BTreeSet<(usize, usize)> = slopes.keys().map(|k| (k.0, k.1)).collect();
            for (values, check) in pairs {
                let factor = inputs.codes[check].as_ref().expect("a categorical check has codes");
                let slope: Vec<f64> =
                    factor.table.iter().map(|l| slopes.get(&(values, check, l)).copied().unwrap_or(0.0)).collect();
                add_fitted_by_level_slopes(
                    &mut offset,
                    factor.codes(),
                    &slope,
                    inputs.column(values),
                    inputs.mask.as_deref(),
                );
            }
            let checks: std::collections::BTreeSet<usize> = by_level.keys().map(|k| k.0).collect();
            for check in checks {
                let factor = inputs.codes[check].as_ref().expect("a categorical check has codes");
                let fitted: Vec<f64> =
                    factor.table.iter().map(|l| by_level.get(&(check, l)).copied().unwrap_or(0.0)).collect();
                match factor.as_yes_no() {
                    Some(y) => add_fitted_yes_no(&mut offset, y.yes(), [fitted[0], fitted[1]]),
                    None => add_fitted_by_level(&mut offset, factor.codes(), &fitted),
                }
            }
            offset
        });
        let Some(yi) = builder.direct_index(&ColumnKey::Response) else { return Ok(false) };
        sources.push(inputs.column(yi));
        let mask = inputs.mask.as_deref();
        let columns = DirectColumns { sources: &sources, layout: &layout, dense: &dense, params: &params };
        let mut bufs = PASS_BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let offset = offset.as_deref();
        let r = with_scratch(|scratch| {
            #[cfg(gramfit_x86)]
            {
                if let Some(k) = crate::isa::Avx512::get() {
                    return self.direct_pass(k, spec, chunk, &columns, offset, n, mask, scratch, &mut bufs);
                }
                if let Some(k) = crate::isa::Avx2::get() {
                    return self.direct_pass(k, spec, chunk, &columns, offset, n, mask, scratch, &mut bufs);
                }
            }
            self.direct_pass(Portable, spec, chunk, &columns, offset, n, mask, scratch, &mut bufs)
        });
        PASS_BUFFERS.with(|b| *b.borrow_mut() = bufs);
        r
    }

    /// [`add_chunk_direct`](Self::add_chunk_direct) once the columns are
    /// known: lay them out for the kernels, take the residuals and their
    /// moments, then what the covariance asks for.
    #[allow(clippy::too_many_arguments)]
    fn direct_pass<K: RowKernels>(
        &mut self,
        k: K,
        spec: &SecondPassSpec,
        chunk: &RecordBatch,
        columns: &DirectColumns<'_>,
        offset: Option<&[f64]>,
        n: usize,
        mask: Option<&[u8]>,
        scratch: &mut Vec<f64>,
        bufs: &mut [Vec<f64>; 4],
    ) -> Result<bool, DesignError> {
        let [full, kept, w, h] = bufs;
        let nbytes = n.div_ceil(8);
        // 0/1 integer columns (at most a pattern's worth) are read as bits;
        // the response never is.
        let last = columns.sources.len() - 1;
        let may_flag: Vec<bool> = (0..=last).map(|i| i < last).collect();
        let mut owned = Owned { bits: Vec::with_capacity(patterns::MAX_FLAGS * nbytes), ..Owned::default() };
        let read =
            source_columns(k, columns.sources, &may_flag, patterns::MAX_FLAGS, n, mask, scratch, &mut owned.bits);
        let (KernelColumn::F64(y), xread) = read.split_last().expect("the response is last") else {
            unreachable!("the response is never a flag")
        };
        let dense = Dense::build(k, spec.cov, columns.dense, xread, n, mask, &mut owned);
        let Some(layout) = Layout::new(k, spec, columns, xread, &dense, &owned, n, mask) else { return Ok(false) };
        let params = columns.params;
        let (cont, flags) = (&layout.order[..layout.nc], &layout.order[layout.nc..layout.nc + layout.nf]);
        let beta: Vec<f64> = cont.iter().map(|&j| params[j]).collect();
        let gamma: Vec<f64> = flags.iter().map(|&j| params[j]).collect();
        let b0 = layout.order.get(layout.nc + layout.nf).map_or(0.0, |&j| params[j]);
        // The grouped factor's fitted part joins the per-row offset (as the
        // default pass adds every factor's).
        let grouped_offset: Option<Vec<f64>> = (!layout.grouped.columns.is_empty()).then(|| {
            let g = &layout.grouped;
            let fitted: Vec<f64> =
                g.code_column.iter().map(|&l| g.columns.get(l as usize).map_or(0.0, |&j| params[j])).collect();
            let mut o = offset.map_or_else(|| vec![0.0; n], <[f64]>::to_vec);
            add_fitted_by_level(&mut o, g.codes, &fitted);
            o
        });
        let offset = grouped_offset.as_deref().or(offset);
        let (full, kept) = (sized(full, layout.stride), sized(kept, n));
        let terms = FlagTerms::new(&gamma);
        let flag_part = (layout.nf > 0).then_some((&layout.patterns[..], &terms));
        let kept_rows = k.residuals(y, offset, &layout.cont_cols, &beta, flag_part, b0, n, mask, full, kept);
        let kept = &kept[..kept_rows];
        // A NaN or infinite residual makes Σ e or the Durbin–Watson sum
        // NaN or infinite: let the general path sort those rows out.
        let sums = k.residual_sums(kept);
        if !(sums.0[0].is_finite() && sums.1.is_finite()) {
            return Ok(false);
        }
        self.ensure(spec.params.len());
        self.add_residual_sums(kept, sums);
        match spec.cov {
            CovType::Nonrobust => {}
            CovType::Hc0 | CovType::Hc1 => {
                let w = sized(w, layout.stride);
                for (w, e) in w.iter_mut().zip(full.iter()) {
                    *w = e * e;
                }
                self.add_meat(k, spec.cov, &layout, w);
            }
            CovType::Hc2 | CovType::Hc3 => {
                let h = sized(h, layout.stride);
                self.leverages(k, spec, &layout, h);
                let w = sized(w, layout.stride);
                self.add_leverage_weights(k, spec.cov, &layout, full, h, w, kept_rows);
                self.add_meat(k, spec.cov, &layout, w);
            }
            CovType::Cluster => {
                if let Some(column) = &spec.cluster {
                    let w = sized(w, layout.stride);
                    self.add_scores(k, chunk, column, &layout, full, w, kept_rows)?;
                }
            }
        }
        Ok(true)
    }
}

/// Buffers a chunk's bit columns live in while the pass reads them: the
/// source's 0/1 columns, the level indicators made flags, and the columns
/// built from level codes as `f64`.
#[derive(Default)]
struct Owned {
    bits: Vec<u8>,
    dense_bits: Vec<u8>,
    dense_f64: Vec<Vec<f64>>,
}

/// Where a column built from level codes went in the in-place second
/// pass: bits (at a byte offset), an `f64` vector (by index), or a level
/// of the grouped factor (its code in the chunk; none: no row has it).
#[derive(Clone, Copy)]
enum DenseAt {
    Flag(usize),
    F64(usize),
    Level(Option<u32>),
}

/// The columns built from level codes, placed.
struct Dense<'a> {
    at: Vec<DenseAt>,
    /// The grouped factor's codes (empty: none).
    grouped_codes: &'a [u32],
}

impl<'a> Dense<'a> {
    /// Build the columns of categorical terms: a factor's indicator columns
    /// (a column of one cell is its level's indicator, 0/1) are flags while
    /// the pattern has room, so that a factor with a few levels costs the
    /// robust kernels no more than a few 0/1 columns; sums of indicators
    /// are `f64`. A factor with more one-level columns than there is room
    /// for (the one with the most) is not built at all: each row's level
    /// indexes sums per level instead (see `meat::GroupedMeat` and
    /// `scores::PendingScores`).
    #[allow(clippy::too_many_arguments)]
    fn build(
        k: impl RowKernels,
        cov: CovType,
        cells_by_column: &[Vec<LevelCell<'a>>],
        xread: &[KernelColumn<'_>],
        n: usize,
        mask: Option<&[u8]>,
        owned: &mut Owned,
    ) -> Dense<'a> {
        let nbytes = n.div_ceil(8);
        let mut room = patterns::MAX_FLAGS - xread.iter().filter(|c| matches!(c, KernelColumn::Flag(_))).count();
        let grouped = if cov != CovType::Nonrobust { grouped_factor(cells_by_column, room) } else { None };
        let mut grouped_codes: &[u32] = &[];
        let mut at = Vec::with_capacity(cells_by_column.len());
        for cells in cells_by_column {
            if let [(check, codes, code)] = cells.as_slice() {
                if grouped == Some(*check) {
                    grouped_codes = codes;
                    at.push(DenseAt::Level(*code));
                    continue;
                }
                if room > 0 {
                    let start = owned.dense_bits.len();
                    owned.dense_bits.resize(start + nbytes, 0);
                    if let Some(code) = *code {
                        k.equal_bits_u32(codes, code, n, mask, &mut owned.dense_bits[start..]);
                    }
                    at.push(DenseAt::Flag(start));
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
            at.push(DenseAt::F64(owned.dense_f64.len()));
            owned.dense_f64.push(v);
        }
        Dense { at, grouped_codes }
    }
}

/// The factor to keep by level rather than as columns: the one with the
/// most one-level columns, when they are more than the flags' `room` and
/// fewer than [`GROUPED_MAX_LEVELS`].
fn grouped_factor(cells_by_column: &[Vec<LevelCell<'_>>], room: usize) -> Option<usize> {
    let mut counts: Vec<(usize, usize)> = Vec::new();
    for cells in cells_by_column {
        if let [(check, _, _)] = cells.as_slice() {
            match counts.iter_mut().find(|(q, _)| q == check) {
                Some(c) => c.1 += 1,
                None => counts.push((*check, 1)),
            }
        }
    }
    counts.into_iter().max_by_key(|c| c.1).filter(|c| c.1 > room && c.1 < GROUPED_MAX_LEVELS).map(|c| c.0)
}

/// A chunk's design columns laid out for the kernels.
pub(super) struct Layout<'a> {
    pub n: usize,
    pub mask: Option<&'a [u8]>,
    /// Rows rounded up to a whole byte of bits (the kernels' buffers).
    pub stride: usize,
    /// Design columns in design order.
    pub design: Vec<DesignColumn<'a>>,
    /// Kernel order (design indices): `f64` columns, flags, intercept.
    pub order: Vec<usize>,
    pub nc: usize,
    pub nf: usize,
    pub intercept: bool,
    pub cont_cols: Vec<&'a [f64]>,
    /// Each row's pattern of flags (empty when nothing reads them).
    pub patterns: Vec<u8>,
    pub grouped: GroupedFactor<'a>,
}

/// The factor kept by level (none: `columns` empty).
pub(super) struct GroupedFactor<'a> {
    /// Its design columns (design indices).
    pub columns: Vec<usize>,
    /// Its codes in the chunk.
    pub codes: &'a [u32],
    /// Each code's column among `columns` (`columns.len()`: none, the
    /// reference level's rows).
    pub code_column: Vec<u32>,
    /// Flags in its tables' main index (see `patterns::cluster_bits`).
    pub bits: usize,
}

impl<'a> Layout<'a> {
    /// `None` where the pass does not apply: the columns do not match the
    /// coefficients, or a grouped factor's tables would not fit (checked
    /// before anything is added: declining hands the chunk to the general
    /// path, which adds all of it).
    #[allow(clippy::too_many_arguments)]
    fn new(
        k: impl RowKernels,
        spec: &SecondPassSpec,
        columns: &DirectColumns<'a>,
        xread: &[KernelColumn<'a>],
        dense: &Dense<'a>,
        owned: &'a Owned,
        n: usize,
        mask: Option<&'a [u8]>,
    ) -> Option<Layout<'a>> {
        let nbytes = n.div_ceil(8);
        let p = columns.params.len();
        let mut design: Vec<DesignColumn<'a>> = Vec::with_capacity(p);
        if spec.design.intercept {
            design.push(DesignColumn::One);
        }
        let mut numeric = xread.iter();
        for l in columns.layout {
            design.push(match l {
                None => match numeric.next().expect("a source per numeric column") {
                    KernelColumn::F64(v) => DesignColumn::F64(v),
                    KernelColumn::Flag(i) => DesignColumn::Flag(&owned.bits[i * nbytes..(i + 1) * nbytes]),
                },
                Some(d) => match dense.at[*d] {
                    DenseAt::Flag(at) => DesignColumn::Flag(&owned.dense_bits[at..at + nbytes]),
                    DenseAt::F64(i) => DesignColumn::F64(&owned.dense_f64[i]),
                    DenseAt::Level(code) => DesignColumn::Level { codes: dense.grouped_codes, code },
                },
            });
        }
        if design.len() != p {
            return None;
        }
        let pick = |f: fn(&DesignColumn<'_>) -> bool| -> Vec<usize> { (0..p).filter(|&j| f(&design[j])).collect() };
        let cont = pick(|d| matches!(d, DesignColumn::F64(_)));
        let flags = pick(|d| matches!(d, DesignColumn::Flag(_)));
        let one = pick(|d| matches!(d, DesignColumn::One));
        let grouped = pick(|d| matches!(d, DesignColumn::Level { .. }));
        let order: Vec<usize> = cont.iter().chain(&flags).chain(&one).copied().collect();
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
        let cont_cols: Vec<&'a [f64]> = cont
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
        let (nc, nf) = (cont.len(), flags.len());
        // The grouped factor's sums per level: tables split as for a
        // cluster pass (`patterns::cluster_rows`), one level more than it
        // has columns (rows of the reference level, and dropped rows).
        let width = patterns::table_width(nc);
        let bits = patterns::cluster_bits(g + 1, nf, width);
        let fits = (g + 1) << bits <= (1 << 16) / width && (g + 1) << (nf - bits) <= 1 << 16;
        if g > 0 && spec.cov != CovType::Cluster && !fits {
            return None;
        }
        // Rows' patterns of flags: the flags' fitted part is looked up by
        // them, and the robust covariances' sums are kept by them.
        let patterns =
            if nf == 0 && spec.cov == CovType::Nonrobust { Vec::new() } else { k.row_patterns(&flag_cols, n) };
        Some(Layout {
            n,
            mask,
            stride: nbytes * 8,
            design,
            order,
            nc,
            nf,
            intercept: !one.is_empty(),
            cont_cols,
            patterns,
            grouped: GroupedFactor { columns: grouped, codes: dense.grouped_codes, code_column, bits },
        })
    }

    /// Whether chunk row `r` is kept.
    pub fn is_kept(&self, r: usize) -> bool {
        crate::bits::is_kept(self.mask, r)
    }
}

/// `offset[r] += fitted[codes[r]]`: a factor's fitted part by level (a code
/// past `fitted` — a missing level's, or one without a column — adds
/// nothing).
fn add_fitted_by_level(offset: &mut [f64], codes: &[u32], fitted: &[f64]) {
    for (o, &code) in offset.iter_mut().zip(codes) {
        if let Some(f) = fitted.get(code as usize) {
            *o += f;
        }
    }
}

/// Add to each kept row's fitted value its level's slope times its value
/// (`codes[r]`, `x`'s row `r`). Dropped rows are skipped: their value may
/// be a null's NaN, kept out of the offset whatever the kernels do with a
/// dropped row's residual.
fn add_fitted_by_level_slopes(
    offset: &mut [f64],
    codes: &[u32],
    slope: &[f64],
    x: SourceColumn<'_>,
    mask: Option<&[u8]>,
) {
    for (r, (o, &code)) in offset.iter_mut().zip(codes).enumerate() {
        if let (Some(s), true) = (slope.get(code as usize), crate::bits::is_kept(mask, r)) {
            *o += s * x.value(r);
        }
    }
}

/// The bits of the yes rows of a yes/no factor, when `cell` is its yes
/// level's.
fn yes_no_column<'a>(builder: &DesignBuilder, inputs: &'a DirectInputs, cell: &ColumnKey) -> Option<&'a [u8]> {
    let ColumnKey::Cell { term, levels } = cell else { return None };
    let check = builder.direct_factor(*term)?;
    let yes_no = inputs.codes[check].as_ref()?.as_yes_no()?;
    (levels.as_slice() == [Level::Bool(true)]).then(|| yes_no.yes())
}

/// [`add_fitted_by_level`] for a yes/no factor from its bits: `fitted`
/// of no and of yes (a missing row's is either: it is a dropped row, whose
/// residual the kernels set to zero).
fn add_fitted_yes_no(offset: &mut [f64], yes: &[u8], fitted: [f64; 2]) {
    // A select of the two values' bits by a mask of each row's bit (exact,
    // and branch-free: eight rows a byte on vectors).
    let [no, yes_value] = fitted.map(f64::to_bits);
    let pick = |byte: u8, k: usize| {
        let m = 0u64.wrapping_sub(u64::from(byte >> k & 1));
        f64::from_bits(yes_value & m | no & !m)
    };
    let last = offset.len() / 8;
    let mut rows = offset.chunks_exact_mut(8);
    for (out, &byte) in rows.by_ref().zip(yes) {
        for (k, o) in out.iter_mut().enumerate() {
            *o += pick(byte, k);
        }
    }
    let tail = rows.into_remainder();
    if let Some(&byte) = yes.get(last) {
        for (k, o) in tail.iter_mut().enumerate() {
            *o += pick(byte, k);
        }
    }
}

/// A cell of a design column built from level codes: the factor, its codes
/// in the chunk, and the code of the cell's level (none: no row has it).
type LevelCell<'a> = (usize, &'a [u32], Option<u32>);

/// The design columns of a chunk for the in-place second pass: numeric
/// ones read from `sources` (in order; the response last), categorical ones
/// from level codes (`dense`: per column its cells, as the factor, the
/// factor's codes and the level's code in the chunk), interleaved as
/// `layout` says (one entry per design column after the intercept);
/// `params` matches.
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
        static PASS_BUFFERS: std::cell::RefCell<[Vec<f64>; 4]> = const {
        std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new(), Vec::new()])
    };
}

/// The first `len` values of a reused buffer, grown if need be.
fn sized(v: &mut Vec<f64>, len: usize) -> &mut [f64] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Levels the grouped factor may have (table rows are u16 indices).
const GROUPED_MAX_LEVELS: usize = 4096;

/// A design column in the in-place second pass.
pub(super) enum DesignColumn<'a> {
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

impl DesignColumn<'_> {
    /// The value at chunk row `r` (a kept row).
    pub(super) fn value_at(&self, r: usize) -> f64 {
        match self {
            DesignColumn::F64(x) => x[r],
            _ => f64::from(u8::from(self.nonzero_at(r))),
        }
    }

    /// Non-zero at chunk row `r` (the intercept: everywhere; callers ask
    /// only about kept rows).
    pub(super) fn nonzero_at(&self, r: usize) -> bool {
        match self {
            DesignColumn::One => true,
            DesignColumn::F64(x) => x.get(r).is_some_and(|&v| v != 0.0),
            DesignColumn::Flag(b) => r / 8 < b.len() && crate::bits::bit(b, r),
            DesignColumn::Level { codes, code } => code.is_some_and(|c| codes.get(r) == Some(&c)),
        }
    }
}
