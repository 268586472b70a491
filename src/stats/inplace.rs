//! The in-place first pass: raw moments of source columns read where
//! Arrow decoded them — dropped rows masked out as they are loaded, 0/1
//! integer columns as bits, a categorical factor's cells from its level
//! codes — with no design matrix built. Every sum it forms is exact (it is
//! taken only for chunks whose values make plain arithmetic exact, a column
//! of real values split into slices that do: `stats::slices`), so it
//! returns the bits the general path (`kernel::raw_moments`) returns, on
//! every instruction set: the kernels come from a [`ScanKernels`]
//! (portable, AVX2 or AVX-512).

use crate::bits::{kept_bits, kept_rows};
use crate::dd::Dd;
use crate::stats::columns::{ColumnStats, LevelColumn};
use crate::stats::columns::{DirectColumn, MaskedMoments, RawMoments, SourceColumn};
use crate::stats::dyadic::{finer_q_masked, DyadicProfile};
use crate::stats::patterns;
use crate::stats::portable::scans::ScanKernels;
use crate::stats::reals::{self, Decimal, Reading};
use crate::stats::slices::{self, MAX_SLICES};
use std::collections::HashMap;

/// A factor's cells in one chunk: the cell of each kept row, the levels of
/// the cells (first appearance) and their row counts.
struct FactorCells {
    row_cell: Vec<u32>,
    levels: Vec<u32>,
    counts: Vec<u64>,
}

fn factor_cells(codes: &[u32], levels: usize, n: usize, mask: Option<&[u8]>) -> FactorCells {
    let mut cell_of_level = vec![u32::MAX; levels];
    let mut row_cell = vec![u32::MAX; n];
    let mut cells = Vec::new();
    let mut counts = Vec::new();
    for r in 0..n {
        if !crate::bits::is_kept(mask, r) {
            continue;
        }
        let code = codes[r] as usize;
        let mut c = cell_of_level[code];
        if c == u32::MAX {
            c = cells.len() as u32;
            cell_of_level[code] = c;
            cells.push(code as u32);
            counts.push(0);
        }
        row_cell[r] = c;
        counts[c as usize] += 1;
    }
    FactorCells { row_cell, levels: cells, counts }
}

/// Factors of at most this many levels are read as indicator bits when a
/// model has several factors.
const INDICATOR_LEVELS: usize = 16;

/// [`crate::stats::kernel::raw_moments_masked_columns`] with the kernels
/// of `k`.
pub fn masked_moments<K: ScanKernels>(
    k: K,
    all: &[DirectColumn<'_>],
    n: usize,
    mask: Option<&[u8]>,
    converted: &mut Vec<f64>,
) -> Option<MaskedMoments> {
    let factors = all.iter().filter(|c| !matches!(c, DirectColumn::Source(_))).count();
    let yes_no = all.iter().any(|c| matches!(c, DirectColumn::YesNo(_)));
    let small = |c: &DirectColumn<'_>| match c {
        DirectColumn::Factor { levels, .. } => *levels <= INDICATOR_LEVELS,
        DirectColumn::Source(_) | DirectColumn::YesNo(_) => true,
    };
    if (factors >= 2 || yes_no) && all.iter().all(small) {
        return indicator_moments(k, all, n, mask, converted);
    }
    if yes_no {
        // Beside a factor of many levels, a yes/no factor is coded.
        let codes: Vec<Vec<u32>> = all
            .iter()
            .filter_map(|c| match c {
                DirectColumn::YesNo(yes) => Some(crate::bits::yes_no_codes(yes, None, n)),
                _ => None,
            })
            .collect();
        let mut coded = codes.iter();
        let all: Vec<DirectColumn<'_>> = all
            .iter()
            .map(|c| match c {
                DirectColumn::YesNo(_) => {
                    DirectColumn::Factor { codes: coded.next().expect("codes per yes/no factor"), levels: 2 }
                }
                other => *other,
            })
            .collect();
        return masked_moments(k, &all, n, mask, converted);
    }
    let cols: Vec<SourceColumn<'_>> = all
        .iter()
        .filter_map(|c| match c {
            DirectColumn::Source(s) => Some(*s),
            DirectColumn::Factor { .. } | DirectColumn::YesNo(_) => None,
        })
        .collect();
    let mut numeric = numeric_moments(k, &cols, n, mask, converted)?;
    let decimals = std::mem::take(&mut numeric.decimals);
    let Some((groups, nonzero)) = numeric.groups.take() else {
        return with_factors(k, all, numeric, n, mask);
    };
    // Sliced columns: the kernels see each slice as a column of its own;
    // the moments are folded back to one column each.
    let mut source_groups = groups.iter();
    let wide: Vec<DirectColumn<'_>> = all
        .iter()
        .flat_map(|c| {
            let copies = match c {
                DirectColumn::Source(_) => source_groups.next().expect("a group per source column").len(),
                DirectColumn::Factor { .. } | DirectColumn::YesNo(_) => 1,
            };
            std::iter::repeat_n(*c, copies)
        })
        .collect();
    let mm = with_factors(k, &wide, numeric, n, mask)?;
    // The output's groups: a source column's kernel columns, or one cell.
    let (mut out_groups, mut out_nonzero, mut out_decimals) = (Vec::new(), Vec::new(), Vec::new());
    let mut sources = groups.iter().zip(&nonzero).zip(&decimals);
    let mut factors = mm.cells.iter();
    let mut at = 0;
    for c in all {
        match c {
            DirectColumn::Source(_) => {
                let ((g, &nz), &decimal) = sources.next().expect("a group per source column");
                out_groups.push(at..at + g.len());
                out_nonzero.push(nz);
                out_decimals.push(decimal);
                at += g.len();
            }
            DirectColumn::Factor { .. } | DirectColumn::YesNo(_) => {
                for _ in factors.next().expect("cells per factor") {
                    out_groups.push(at..at + 1);
                    out_nonzero.push(mm.raw.nonzero[at]);
                    out_decimals.push(None);
                    at += 1;
                }
            }
        }
    }
    let raw = reals::unshift(slices::fold(&mm.raw, &out_groups, &out_nonzero), &out_decimals);
    Some(MaskedMoments { raw, cells: mm.cells })
}

/// [`masked_moments`] for several factors of few levels (yes/no columns,
/// which patsy codes as categories; `C(borough) + C(bedrooms)`): each
/// level's indicator as a column of bits, so that the cells' sums of the
/// numeric columns are the kernels' masked sums and their cross
/// tabulations popcounts, where the per-cell sums add row by row. The same
/// exact sums, so the same bits; the cells are the levels with kept rows,
/// in order of first appearance, as [`factor_cells`] numbers them.
fn indicator_moments<K: ScanKernels>(
    k: K,
    all: &[DirectColumn<'_>],
    n: usize,
    mask: Option<&[u8]>,
    converted: &mut Vec<f64>,
) -> Option<MaskedMoments> {
    // A level's bits, whole 8-byte words (the kernels may read words).
    let nbytes = n.div_ceil(64) * 8;
    let mut indicators: Vec<Vec<u8>> = Vec::new();
    for c in all {
        match *c {
            DirectColumn::Factor { codes, levels } => {
                // Level by level, eight rows a byte (missing rows, u32::MAX,
                // are dropped ones: no level's).
                let mut bits = vec![0u8; levels * nbytes];
                for (l, out) in bits.chunks_exact_mut(nbytes).enumerate() {
                    let byte = |group: &[u32]| crate::bits::equal_byte(group, l as u32);
                    let groups = codes[..n].chunks_exact(8);
                    if !groups.remainder().is_empty() {
                        out[n / 8] = byte(groups.remainder());
                    }
                    for (o, group) in out.iter_mut().zip(groups) {
                        *o = byte(group);
                    }
                }
                indicators.push(bits);
            }
            // The yes rows are the column's own bits; the no rows their
            // complement.
            DirectColumn::YesNo(yes) => {
                let mut no = vec![0u8; nbytes];
                for (o, &y) in no.iter_mut().zip(&yes[..n.div_ceil(8)]) {
                    *o = !y;
                }
                indicators.push(no);
            }
            DirectColumn::Source(_) => {}
        }
    }
    let mut wide = Vec::new();
    // Per input column: where its first wide column is.
    let mut starts = Vec::with_capacity(all.len());
    let mut next = indicators.iter();
    for c in all {
        starts.push(wide.len());
        match *c {
            DirectColumn::Source(s) => wide.push(DirectColumn::Source(s)),
            DirectColumn::Factor { levels, .. } => {
                let bits = next.next().expect("indicators per factor");
                wide.extend(
                    bits.chunks_exact(nbytes).take(levels).map(|b| DirectColumn::Source(SourceColumn::Bits(b))),
                );
            }
            DirectColumn::YesNo(yes) => {
                let no = next.next().expect("indicators per factor");
                wide.extend([no.as_slice(), yes].map(|b| DirectColumn::Source(SourceColumn::Bits(b))));
            }
        }
    }
    let mm = masked_moments(k, &wide, n, mask, converted)?;
    // The output columns (as indices into the wide ones) and cells.
    let mut pick = Vec::new();
    let mut cells = Vec::new();
    for (c, &at) in all.iter().zip(&starts) {
        match *c {
            DirectColumn::Source(_) => pick.push(at),
            DirectColumn::Factor { codes, levels } => {
                let counts: Vec<u64> = (0..levels).map(|l| mm.raw.nonzero[at + l]).collect();
                let order = first_appearance(codes, &counts, n, mask);
                pick.extend(order.iter().map(|&l| at + l as usize));
                cells.push(order);
            }
            DirectColumn::YesNo(yes) => {
                // The levels with kept rows, the first kept row's first.
                let mut order: Vec<(usize, u32)> = [false, true]
                    .iter()
                    .filter_map(|&v| crate::bits::first_kept(yes, v, n, mask).map(|r| (r, u32::from(v))))
                    .collect();
                order.sort_unstable();
                pick.extend(order.iter().map(|&(_, l)| at + l as usize));
                cells.push(order.into_iter().map(|(_, l)| l).collect());
            }
        }
    }
    let w = mm.raw.s1.len();
    let raw = RawMoments {
        sum_w: mm.raw.sum_w,
        s1: pick.iter().map(|&i| mm.raw.s1[i]).collect(),
        s2: pick.iter().flat_map(|&i| pick.iter().map(move |&j| (i, j))).map(|(i, j)| mm.raw.s2[i * w + j]).collect(),
        nonzero: pick.iter().map(|&i| mm.raw.nonzero[i]).collect(),
        exact: mm.raw.exact,
    };
    Some(MaskedMoments { raw, cells })
}

/// [`masked_moments`] from the numeric columns' moments: the factors'
/// cells and their sums of the numeric columns (`all`: one source column
/// per kernel column).
fn with_factors<K: ScanKernels>(
    k: K,
    all: &[DirectColumn<'_>],
    numeric: NumericMoments<'_>,
    n: usize,
    mask: Option<&[u8]>,
) -> Option<MaskedMoments> {
    let NumericMoments { raw: num, slices, bits, nbytes, kept, .. } = numeric;
    if slices.len() == all.len() {
        return Some(MaskedMoments { raw: num, cells: Vec::new() });
    }
    let p = slices.len();
    let coded: Vec<(&[u32], usize)> = all
        .iter()
        .filter_map(|c| match c {
            DirectColumn::Factor { codes, levels } => Some((*codes, *levels)),
            DirectColumn::Source(_) => None,
            DirectColumn::YesNo(_) => unreachable!("yes/no factors are coded before"),
        })
        .collect();
    // One factor of at most 16 levels (the mission's `C(borough)`): sums per
    // level by masked vector additions, and the cells (levels present, in
    // order of first appearance) found afterwards; rows' cells are not
    // needed (no cross tabulation).
    if let [(codes, levels)] = coded[..] {
        if levels <= 16 {
            let level_cols: Vec<LevelColumn<'_>> = slices
                .iter()
                .map(|s| match *s {
                    NumericColumn::F64(v) => LevelColumn::F64(v),
                    NumericColumn::Bits(i) => LevelColumn::Bits(&bits[i * nbytes..(i + 1) * nbytes]),
                })
                .collect();
            let (mut sums, mut counts) = (vec![0.0; levels * p], vec![0u64; levels]);
            k.level_sums(codes, levels, &level_cols, n, mask, &mut sums, &mut counts);
            let order = first_appearance(codes, &counts, n, mask);
            let f = FactorCells {
                row_cell: Vec::new(),
                counts: order.iter().map(|&l| counts[l as usize]).collect(),
                levels: order,
            };
            let cell_sums =
                f.levels.iter().flat_map(|&l| sums[l as usize * p..(l as usize + 1) * p].to_vec()).collect();
            return Some(assemble_moments(all, num, kept, vec![f], vec![cell_sums]));
        }
    }
    // One factor of more levels (`C(neighborhood)`): sums per level from
    // table rows keyed by the level code, one vector addition per row for
    // the float columns (after a transpose of 8 rows) and one per row for
    // up to 8 flags (a lookup of the flags' byte), instead of a scattered
    // addition per row and column.
    if let [(codes, levels)] = coded[..] {
        if levels < usize::from(u16::MAX) {
            let m = single_factor_table_sums(k, all, &num, &slices, &bits, nbytes, kept, codes, levels, n, mask);
            if m.is_some() {
                return m;
            }
        }
    }
    let factors: Vec<FactorCells> = coded.iter().map(|&(codes, levels)| factor_cells(codes, levels, n, mask)).collect();
    // Per factor: Σ over each cell's rows of each numeric column (exact:
    // every numeric column passed the exactness bound of its whole sum).
    // Branch-free: a dropped row adds to an extra cell, and rows go to four
    // copies of the sums in turn, so that rows of one cell in a row (a
    // factor of few levels) do not wait on each other's additions. Exact
    // sums do not depend on the order of the additions.
    let cell_sums: Vec<Vec<f64>> = factors
        .iter()
        .map(|f| {
            let cells = f.levels.len() + 1;
            let cell = |c: u32| (c as usize).min(cells - 1);
            let mut parts = vec![0.0; 4 * cells];
            let mut sums = vec![0.0; (cells - 1) * p];
            for (j, x) in slices.iter().enumerate() {
                parts.fill(0.0);
                match *x {
                    NumericColumn::F64(x) => {
                        for (r, (&c, &v)) in f.row_cell.iter().zip(x).enumerate() {
                            parts[(r % 4) * cells + cell(c)] += v;
                        }
                    }
                    NumericColumn::Bits(i) => {
                        let bits = &bits[i * nbytes..(i + 1) * nbytes];
                        for (r, &c) in f.row_cell.iter().enumerate() {
                            parts[(r % 4) * cells + cell(c)] += f64::from(u8::from(crate::bits::bit(bits, r)));
                        }
                    }
                }
                for k in 0..cells - 1 {
                    sums[k * p + j] = (0..4).map(|q| parts[q * cells + k]).sum();
                }
            }
            sums
        })
        .collect();
    Some(assemble_moments(all, num, kept, factors, cell_sums))
}

/// A factor's cells: the levels with kept rows (`counts[l] > 0`), in order
/// of their first kept row (as [`factor_cells`] numbers them), found by a
/// scan that stops once all are met.
fn first_appearance(codes: &[u32], counts: &[u64], n: usize, mask: Option<&[u8]>) -> Vec<u32> {
    let present = counts.iter().filter(|&&k| k > 0).count();
    let mut order: Vec<u32> = Vec::with_capacity(present);
    let mut placed = vec![false; counts.len()];
    for (r, &code) in codes[..n].iter().enumerate() {
        if order.len() == present {
            break;
        }
        let kept = crate::bits::is_kept(mask, r);
        if kept && placed.get(code as usize) == Some(&false) {
            placed[code as usize] = true;
            order.push(code);
        }
    }
    order
}

/// [`masked_moments_with`] for one factor of `levels` (< 2¹⁶) levels, by
/// table sums (see there); `None` beyond 8 flags (then the per-cell sums).
#[allow(clippy::too_many_arguments)]
fn single_factor_table_sums<K: ScanKernels>(
    k: K,
    all: &[DirectColumn<'_>],
    num: &RawMoments,
    slices: &[NumericColumn<'_>],
    bits: &[u8],
    nbytes: usize,
    kept: usize,
    codes: &[u32],
    levels: usize,
    n: usize,
    mask: Option<&[u8]>,
) -> Option<MaskedMoments> {
    let p = slices.len();
    let floats: Vec<(usize, &[f64])> = slices
        .iter()
        .enumerate()
        .filter_map(|(j, s)| match *s {
            NumericColumn::F64(v) => Some((j, v)),
            NumericColumn::Bits(_) => None,
        })
        .collect();
    let flags: Vec<(usize, &[u8])> = slices
        .iter()
        .enumerate()
        .filter_map(|(j, s)| match *s {
            NumericColumn::Bits(i) => Some((j, &bits[i * nbytes..(i + 1) * nbytes])),
            NumericColumn::F64(_) => None,
        })
        .collect();
    if flags.len() > patterns::MAX_FLAGS {
        return None;
    }
    // A row's table row: its level (a missing value's code, past the
    // levels, goes to the extra last row; dropped rows add zeros anyway).
    let stride = n.div_ceil(8) * 8;
    let top = levels as u32;
    let mut index: Vec<u16> = codes[..n].iter().map(|&c| c.min(top) as u16).collect();
    index.resize(stride, top as u16);
    let rows = levels + 1;
    let float_cols: Vec<&[f64]> = floats.iter().map(|f| f.1).collect();
    let width = patterns::table_width(float_cols.len());
    let mut by_level = patterns::Table::zeroed(rows, width);
    // Every index is below `rows`.
    k.pattern_sums(&float_cols, &index, rows, n, mask, None, by_level.as_mut_slice());
    let by_level = by_level.as_slice();
    let mut flag_table = vec![0.0; if flags.is_empty() { 0 } else { rows * 8 }];
    if !flags.is_empty() {
        let flag_bits: Vec<&[u8]> = flags.iter().map(|f| f.1).collect();
        let pats = k.row_patterns(&flag_bits, n);
        k.flag_counts(&index, &pats, rows, n, &mut flag_table);
    }
    let at = |l: usize, lane: usize| by_level[l * width * 8 + lane];
    let counts: Vec<u64> = (0..levels).map(|l| at(l, 0) as u64).collect();
    let order = first_appearance(codes, &counts, n, mask);
    let mut sums = vec![0.0; order.len() * p];
    for (k, &l) in order.iter().enumerate() {
        let l = l as usize;
        for (q, &(j, _)) in floats.iter().enumerate() {
            sums[k * p + j] = at(l, 1 + q);
        }
        for (a, &(j, _)) in flags.iter().enumerate() {
            sums[k * p + j] = flag_table[l * 8 + a];
        }
    }
    let f = FactorCells {
        row_cell: Vec::new(),
        counts: order.iter().map(|&l| counts[l as usize]).collect(),
        levels: order,
    };
    Some(assemble_moments(all, num.clone(), kept, vec![f], vec![sums]))
}

/// The raw moments of [`masked_moments_with`] from those of the numeric
/// columns (`num`, over `kept` rows), each factor's cells and the sums of
/// the numeric columns over each cell (`cell_sums[f][k · p + j]`).
fn assemble_moments(
    all: &[DirectColumn<'_>],
    num: RawMoments,
    kept: usize,
    factors: Vec<FactorCells>,
    cell_sums: Vec<Vec<f64>>,
) -> MaskedMoments {
    let p = num.s1.len();
    // Output layout: each column in order, a factor as its cells.
    enum Out {
        Num(usize),
        Cell(usize, usize),
    }
    let mut out = Vec::new();
    let (mut j, mut f) = (0, 0);
    for c in all {
        match c {
            DirectColumn::Source(_) => {
                out.push(Out::Num(j));
                j += 1;
            }
            DirectColumn::Factor { .. } | DirectColumn::YesNo(_) => {
                out.extend((0..factors[f].levels.len()).map(|k| Out::Cell(f, k)));
                f += 1;
            }
        }
    }
    let m = out.len();
    // Cross tabulations of two different factors.
    let cross = |a: usize, b: usize| -> Vec<u64> {
        let (fa, fb) = (&factors[a], &factors[b]);
        let mut t = vec![0u64; fa.levels.len() * fb.levels.len()];
        for (&ca, &cb) in fa.row_cell.iter().zip(&fb.row_cell) {
            if ca != u32::MAX {
                t[ca as usize * fb.levels.len() + cb as usize] += 1;
            }
        }
        t
    };
    let mut crosses: HashMap<(usize, usize), Vec<u64>> = HashMap::new();
    let mut s1 = Vec::with_capacity(m);
    let mut nonzero = Vec::with_capacity(m);
    for o in &out {
        match *o {
            Out::Num(j) => {
                s1.push(num.s1[j]);
                nonzero.push(num.nonzero[j]);
            }
            Out::Cell(f, k) => {
                s1.push(Dd::from(factors[f].counts[k] as f64));
                nonzero.push(factors[f].counts[k]);
            }
        }
    }
    let mut s2 = vec![Dd::ZERO; m * m];
    for a in 0..m {
        for b in 0..=a {
            // Two cells of one factor: orthogonal (zero, as `s2` holds).
            if let (Out::Cell(f, k), Out::Cell(g, l)) = (&out[a], &out[b]) {
                if f == g && k != l {
                    continue;
                }
            }
            let v = match (&out[a], &out[b]) {
                (Out::Num(i), Out::Num(j)) => num.s2[i * p + j],
                (Out::Num(i), Out::Cell(f, k)) | (Out::Cell(f, k), Out::Num(i)) => Dd::from(cell_sums[*f][k * p + i]),
                (Out::Cell(f, k), Out::Cell(g, l)) if f == g => {
                    if k == l {
                        Dd::from(factors[*f].counts[*k] as f64)
                    } else {
                        Dd::ZERO
                    }
                }
                (Out::Cell(f, k), Out::Cell(g, l)) => {
                    let (f, k, g, l) = if f < g { (*f, *k, *g, *l) } else { (*g, *l, *f, *k) };
                    let t = crosses.entry((f, g)).or_insert_with(|| cross(f, g));
                    Dd::from(t[k * factors[g].levels.len() + l] as f64)
                }
            };
            s2[a * m + b] = v;
            s2[b * m + a] = v;
        }
    }
    MaskedMoments {
        raw: RawMoments { sum_w: Dd::from(kept as f64), s1, s2, nonzero, exact: true },
        cells: factors.into_iter().map(|f| f.levels).collect(),
    }
}

/// A numeric column as the in-place kernels read it.
#[derive(Clone, Copy)]
enum NumericColumn<'a> {
    F64(&'a [f64]),
    /// A 0/1 column: its bits, the `i`-th column of [`NumericMoments::bits`].
    Bits(usize),
}

/// What [`numeric_moments`] returns.
struct NumericMoments<'a> {
    /// The moments of the kernels' columns: each source column, or its
    /// slices (`stats::slices`) where `groups` says so.
    raw: RawMoments,
    slices: Vec<NumericColumn<'a>>,
    /// The bits of the 0/1 columns, `nbytes` bytes per column (the other
    /// columns' bytes unused).
    bits: Vec<u8>,
    nbytes: usize,
    kept: usize,
    /// Each source column's kernel columns (consecutive), when some
    /// column was sliced or read as decimals; its non-zero count beside.
    groups: Option<(Vec<std::ops::Range<usize>>, Vec<u64>)>,
    /// Per source column: how it was read as decimals, if it was.
    decimals: Vec<Option<Decimal>>,
}

/// A source column's first look: its profile and statistics, or a column
/// read by [`reals::kernel_columns`] (its statistics): of real values, or
/// `binary` — whole numbers or halves too long for the exact kernels as
/// they are ([`reals::too_long`]).
enum Scanned {
    Dyadic(DyadicProfile, ColumnStats),
    Real { st: ColumnStats, binary: bool },
}

/// The numeric part of [`masked_moments_with`]: raw moments of the source
/// columns, the columns as the kernels read them and the kept row count.
/// An integer 0/1 column is never converted (an integer column is 0/1
/// exactly when its bits test passes, so conversions and integer
/// non-0/1 columns stay in step). A float column of real values (not a
/// multiple of `2^-16`) is read as decimals or split into slices
/// (`stats::reals`), each a column of the exact kernels; a column of finer
/// binary fractions (quarters, …, multiples of `2^-16`) is an exact column
/// of the profile the general path gives it ([`finer_q_masked`]).
fn numeric_moments<'a, K: ScanKernels>(
    k: K,
    cols: &[SourceColumn<'a>],
    n: usize,
    mask: Option<&[u8]>,
    converted: &'a mut Vec<f64>,
) -> Option<NumericMoments<'a>> {
    let m = cols.len();
    let kept = kept_rows(mask, n);
    if kept == 0 {
        return None;
    }
    // Integer 0/1 columns stay bits; other integer columns are converted
    // once (masked), into one buffer; float columns are read in place, and
    // a 0/1 float column also leaves its bits.
    let ints = cols.iter().filter(|c| matches!(c, SourceColumn::I64(_))).count();
    let stride = n.div_ceil(8) * 8;
    if converted.len() < ints * stride {
        converted.resize(ints * stride, 0.0);
    }
    let nbytes = n.div_ceil(8);
    let mut bits = vec![0u8; m * nbytes];
    let mut next_int = 0;
    // Per column: where its converted integers are in `converted`.
    let mut int_slot = vec![None; m];
    let mut scanned = Vec::with_capacity(m);
    for (i, c) in cols.iter().enumerate() {
        let bits = &mut bits[i * nbytes..(i + 1) * nbytes];
        scanned.push(match *c {
            SourceColumn::F64(v) => {
                let (fraction, st) = k.scan_masked(&v[..n], mask);
                if !fraction {
                    if st.binary {
                        k.nonzero_bits_masked(&v[..n], mask, bits);
                    }
                    Scanned::Dyadic(DyadicProfile { q: 0, max_abs: st.max_abs }, st)
                } else if !k.halves_masked(&v[..n], mask) {
                    Scanned::Dyadic(DyadicProfile { q: 1, max_abs: st.max_abs }, st)
                } else {
                    // Finer binary fractions are profiled as the general
                    // path profiles them; the rest is read as decimals or
                    // sliced.
                    match finer_q_masked(&v[..n], mask) {
                        Some(q) => Scanned::Dyadic(DyadicProfile { q, max_abs: st.max_abs }, st),
                        None => Scanned::Real { st, binary: false },
                    }
                }
            }
            SourceColumn::Bits(b) => {
                kept_bits(b, mask, n, bits);
                let ones = crate::bits::ones_in(bits) as f64;
                let max_abs = if ones > 0.0 { 1.0 } else { 0.0 };
                Scanned::Dyadic(
                    DyadicProfile { q: 0, max_abs },
                    ColumnStats { max_abs, sum: ones, nonzero: ones, binary: true },
                )
            }
            SourceColumn::I64(v) => {
                // A 0/1 column stays bits; others are converted.
                if k.binary_bits_i64(&v[..n], mask, bits) {
                    let ones = crate::bits::ones_in(bits) as f64;
                    let max_abs = if ones > 0.0 { 1.0 } else { 0.0 };
                    Scanned::Dyadic(
                        DyadicProfile { q: 0, max_abs },
                        ColumnStats { max_abs, sum: ones, nonzero: ones, binary: true },
                    )
                } else {
                    let out = &mut converted[next_int * stride..(next_int + 1) * stride];
                    int_slot[i] = Some(next_int);
                    next_int += 1;
                    let st = k.convert_i64_masked(&v[..n], mask, out);
                    Scanned::Dyadic(DyadicProfile { q: 0, max_abs: st.max_abs }, st)
                }
            }
        });
    }
    for sc in scanned.iter_mut() {
        if let Scanned::Dyadic(profile, st) = *sc {
            if reals::too_long(&profile, kept) {
                *sc = Scanned::Real { st, binary: true };
            }
        }
    }
    // Real columns are split into slices after the converted integers.
    let reals = scanned.iter().filter(|s| matches!(s, Scanned::Real { .. })).count();
    if converted.len() < (ints + reals * MAX_SLICES) * stride {
        converted.resize((ints + reals * MAX_SLICES) * stride, 0.0);
    }
    let mut next_real = 0;
    // Per kernel column: profile, sum, non-zero count, 0/1; per source
    // column: its kernel columns and non-zero count.
    let mut profiles = Vec::with_capacity(m);
    let mut s1 = Vec::with_capacity(m);
    let mut nonzero = Vec::with_capacity(m);
    let mut binary = Vec::with_capacity(m);
    let mut groups = Vec::with_capacity(m);
    // Where each real column's slices start in `converted`.
    let mut regions = Vec::with_capacity(reals);
    let mut decimals = vec![None; m];
    for (i, sc) in scanned.iter().enumerate() {
        let at = profiles.len();
        match sc {
            Scanned::Dyadic(profile, st) => {
                profiles.push(*profile);
                s1.push(Dd::from(st.sum));
                nonzero.push(st.nonzero as u64);
                binary.push(st.binary && profile.q == 0);
            }
            Scanned::Real { st, binary: whole } => {
                let region = (ints + next_real * MAX_SLICES) * stride;
                next_real += 1;
                let (integers, rest) = converted.split_at_mut(ints * stride);
                let col = match (cols[i], int_slot[i]) {
                    (SourceColumn::F64(v), _) => &v[..n],
                    (SourceColumn::I64(_), Some(slot)) => &integers[slot * stride..][..n],
                    _ => unreachable!("bits are never real"),
                };
                let out = &mut rest[region - ints * stride..][..MAX_SLICES * stride];
                let real = reals::kernel_columns(
                    k,
                    col,
                    mask,
                    kept,
                    st.max_abs,
                    Reading { decimals: true, binary: *whole },
                    out,
                )?;
                regions.push(region);
                decimals[i] = real.decimal;
                for (profile, &sum) in real.profiles.into_iter().zip(&real.sums) {
                    profiles.push(profile);
                    s1.push(Dd::from(sum));
                    nonzero.push(0);
                    binary.push(false);
                }
            }
        }
        groups.push((
            at..profiles.len(),
            match sc {
                Scanned::Dyadic(_, st) | Scanned::Real { st, .. } => st.nonzero as u64,
            },
        ));
    }
    if !DyadicProfile::all_exact(&profiles, kept) {
        return None;
    }
    // Columns as the kernels read them: 0/1 columns as their bits (an
    // integer one was never converted), slices and converted integers from
    // their buffer, the other columns as `f64` in place.
    let wide = profiles.len();
    let converted: &'a [f64] = converted;
    let mut slices: Vec<NumericColumn<'a>> = Vec::with_capacity(wide);
    let mut next_region = regions.iter();
    for (i, c) in cols.iter().enumerate() {
        let g = groups[i].0.clone();
        match *c {
            _ if matches!(scanned[i], Scanned::Real { .. }) => {
                let region = *next_region.next().expect("a region per real column");
                for s in 0..g.len() {
                    slices.push(NumericColumn::F64(&converted[region + s * stride..][..n]));
                }
            }
            _ if binary[g.start] => slices.push(NumericColumn::Bits(i)),
            SourceColumn::F64(v) => slices.push(NumericColumn::F64(&v[..n])),
            SourceColumn::Bits(_) => unreachable!("bits are 0/1"),
            SourceColumn::I64(_) => {
                let slot = int_slot[i].expect("one conversion per integer column");
                slices.push(NumericColumn::F64(&converted[slot * stride..][..n]))
            }
        }
    }
    let m = wide;
    // Products of two columns that are not 0/1: a multiply-add gram.
    let cont: Vec<usize> = (0..m).filter(|&i| !binary[i]).collect();
    let bins: Vec<usize> = (0..m).filter(|&i| binary[i]).collect();
    let cont_cols: Vec<&[f64]> = cont
        .iter()
        .map(|&i| match slices[i] {
            NumericColumn::F64(v) => v,
            NumericColumn::Bits(_) => unreachable!("not a 0/1 column"),
        })
        .collect();
    let bits_of = |i: usize| match slices[i] {
        NumericColumn::Bits(src) => &bits[src * nbytes..(src + 1) * nbytes],
        NumericColumn::F64(_) => unreachable!("a 0/1 column"),
    };
    let bin_cols: Vec<&[u8]> = bins.iter().map(|&i| bits_of(i)).collect();
    let (nc, nb) = (cont.len(), bins.len());
    let mut g = vec![0.0; nc * nc];
    k.gram_exact(&cont_cols, n, mask, &mut g);
    let mut s2 = vec![Dd::ZERO; m * m];
    let mut set = |i: usize, j: usize, v: f64| {
        s2[i * m + j] = Dd::from(v);
        s2[j * m + i] = Dd::from(v);
    };
    for (b, &j) in cont.iter().enumerate() {
        for (a, &i) in cont.iter().enumerate().skip(b) {
            set(i, j, g[b * nc + a]);
        }
    }
    {
        // Products of a 0/1 column with another are masked sums of the
        // other; of two 0/1 columns, popcounts of their bits. (Grouping
        // rows by their pattern of flags, as the robust second pass does,
        // measured 2-4% slower here: without weights the masked sums are
        // as cheap as the transposes the grouping needs.)
        let mut cross = vec![0.0; nb * nc];
        k.bits_by_cols(&bin_cols, &cont_cols, n, mask, &mut cross);
        for (b, &j) in cont.iter().enumerate() {
            for (a, &i) in bins.iter().enumerate() {
                set(i, j, cross[a * nc + b]);
            }
        }
        for (b, &j) in bins.iter().enumerate() {
            for &i in &bins[b..] {
                let dot = k.and_ones(bits_of(i), bits_of(j));
                set(i, j, dot as f64);
            }
        }
    }
    let groups = (reals > 0).then(|| groups.into_iter().unzip());
    Some(NumericMoments {
        raw: RawMoments { sum_w: Dd::from(kept as f64), s1, s2, nonzero, exact: true },
        slices,
        bits,
        nbytes,
        kept,
        groups,
        decimals,
    })
}
