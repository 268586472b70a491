//! The second pass's kernels in plain Rust: residuals, their moments,
//! leverages, HC2/HC3 weights, weighted grams, sums per pattern of flags
//! and the cluster tables' indices, over a chunk's source columns read in
//! place (dropped rows masked out, 0/1 columns as bits).
//!
//! They are the reference the AVX-512 kernels (`x86::avx512`) equal bit
//! for bit, and run as they are on every other CPU (compiled again with
//! AVX2 and FMA on x86). The same bits need the same arithmetic: each
//! row's value is the same operations in the same order (a fused
//! multiply-add wherever a vector kernel uses one — `f64::mul_add`), and a
//! sum over rows keeps row `r` in lane `r % 8` of eight accumulators
//! added by [`reduce8`] at the end. A dropped row adds nothing (a vector
//! kernel adds `+0`, which leaves every such sum unchanged: none is ever
//! `−0`). Full groups of eight rows are written as operations on
//! `[f64; 8]`, which the compiler turns into vector instructions.

use super::reduce8;
use crate::bits::{is_kept, row_mask};
use crate::stats::patterns::{row_patterns_from, table_width, MAX_FLAGS};

/// The fitted part `Σ_a γ_a f_a` of up to 8 0/1 columns, by the row's
/// pattern of flags (bit `a`: flag `a`): the sums over the low and the
/// high four flags, each a table of 16 values, so that a row's term is two
/// lookups and an addition.
pub struct FlagTerms {
    pub(crate) lo: [f64; 16],
    pub(crate) hi: [f64; 16],
}

impl FlagTerms {
    /// The tables for coefficients `gamma` (at most 8; flag `a` weighs
    /// `gamma[a]`), each entry's terms added in flag order.
    pub fn new(gamma: &[f64]) -> FlagTerms {
        assert!(gamma.len() <= 8);
        let table = |first: usize| -> [f64; 16] {
            std::array::from_fn(|v| {
                (0..4).filter(|b| v >> b & 1 == 1).filter_map(|b| gamma.get(first + b)).fold(0.0, |t, g| t + g)
            })
        };
        FlagTerms { lo: table(0), hi: table(4) }
    }

    /// The fitted part of a row with pattern `p`.
    #[inline(always)]
    pub fn of(&self, p: u8) -> f64 {
        self.lo[usize::from(p & 15)] + self.hi[usize::from(p >> 4)]
    }
}

/// The pattern of each row: bit `a` set when flag `a` is 1 there (`flags`:
/// at most 8 bit columns, a byte per 8 rows, clear on dropped rows), `n`
/// rows rounded up to 8 (rows past `n`: 0).
pub fn row_patterns(flags: &[&[u8]], n: usize) -> Vec<u8> {
    assert!(flags.len() <= MAX_FLAGS);
    let groups = n.div_ceil(8);
    assert!(flags.iter().all(|f| f.len() >= groups));
    let mut out = vec![0u8; groups * 8];
    row_patterns_from(flags, 0, &mut out);
    out
}

/// Whether every kept value of an `i64` column is 0 or 1; if so `bits`
/// holds them (a byte per 8 rows; dropped rows and rows past `n` clear).
#[inline(always)]
pub fn binary_bits_i64(col: &[i64], mask: Option<&[u8]>, bits: &mut [u8]) -> bool {
    let n = col.len();
    assert!(bits.len() >= n.div_ceil(8));
    let mut other = 0i64;
    for (c, byte) in bits[..n.div_ceil(8)].iter_mut().enumerate() {
        let k = row_mask(mask, c, n);
        let mut b = 0u8;
        for l in 0..(n - 8 * c).min(8) {
            let v = if k >> l & 1 == 1 { col[8 * c + l] } else { 0 };
            other |= v & !1;
            b |= u8::from(v != 0) << l;
        }
        *byte = b;
    }
    other == 0
}

/// An `i64` column converted to `f64` into `out` (`n` values, then zeros
/// to a multiple of 8).
#[inline(always)]
pub fn convert_i64(col: &[i64], out: &mut [f64]) {
    let n = col.len();
    assert!(out.len() >= n.div_ceil(8) * 8);
    for (o, &v) in out.iter_mut().zip(col) {
        *o = v as f64;
    }
    out[n..n.div_ceil(8) * 8].fill(0.0);
}

/// The bits of the kept rows whose code is `code` (a byte per 8 rows;
/// clear on dropped rows and past `n`): a level's indicator column.
#[inline(always)]
pub fn equal_bits_u32(codes: &[u32], code: u32, n: usize, mask: Option<&[u8]>, bits: &mut [u8]) {
    assert!(codes.len() >= n && bits.len() >= n.div_ceil(8));
    for (c, byte) in bits[..n.div_ceil(8)].iter_mut().enumerate() {
        let k = row_mask(mask, c, n);
        let mut b = 0u8;
        for l in 0..(n - 8 * c).min(8) {
            b |= u8::from(codes[8 * c + l] == code) << l;
        }
        *byte = b & k;
    }
}

/// Residuals `e = y − β₀ − offset − Σ_j β_j x_j − Σ_a γ_a f_a` of the kept
/// rows, each term subtracted in that order (the columns' by fused
/// multiply-adds): into `full` at their row positions (zero on dropped
/// rows; `n` rounded up to 8 values) and, in row order without gaps, into
/// `kept`. Returns the number of kept rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn residuals(
    y: &[f64],
    offset: Option<&[f64]>,
    xs: &[&[f64]],
    beta: &[f64],
    flags: Option<(&[u8], &FlagTerms)>,
    intercept: f64,
    n: usize,
    mask: Option<&[u8]>,
    full: &mut [f64],
    kept: &mut [f64],
) -> usize {
    assert!(xs.len() == beta.len() && y.len() >= n && xs.iter().all(|x| x.len() >= n));
    assert!(flags.is_none_or(|(p, _)| p.len() >= n.div_ceil(8) * 8));
    assert!(full.len() >= n.div_ceil(8) * 8 && kept.len() >= n && offset.is_none_or(|o| o.len() >= n));
    let mut written = 0;
    for c in 0..n.div_ceil(8) {
        let (base, k) = (8 * c, row_mask(mask, c, n));
        let e: [f64; 8] = if base + 8 <= n {
            // A whole group: every lane computed (a dropped row's value is
            // not kept), so that the loops vectorise.
            let at = |v: &[f64]| -> [f64; 8] { v[base..base + 8].try_into().expect("8 rows") };
            let mut e = at(y).map(|v| v - intercept);
            if let Some(o) = offset {
                let o = at(o);
                for l in 0..8 {
                    e[l] -= o[l];
                }
            }
            for (x, &b) in xs.iter().zip(beta) {
                let x = at(x);
                for l in 0..8 {
                    e[l] = (-b).mul_add(x[l], e[l]);
                }
            }
            if let Some((patterns, terms)) = flags {
                for l in 0..8 {
                    e[l] -= terms.of(patterns[base + l]);
                }
            }
            e
        } else {
            std::array::from_fn(|l| {
                let r = base + l;
                if r >= n {
                    return 0.0;
                }
                let mut e = y[r] - intercept;
                if let Some(o) = offset {
                    e -= o[r];
                }
                for (x, &b) in xs.iter().zip(beta) {
                    e = (-b).mul_add(x[r], e);
                }
                if let Some((patterns, terms)) = flags {
                    e -= terms.of(patterns[r]);
                }
                e
            })
        };
        for l in 0..8 {
            let on = k >> l & 1 == 1;
            full[base + l] = if on { e[l] } else { 0.0 };
            if on {
                kept[written] = e[l];
                written += 1;
            }
        }
    }
    written
}

/// `Σ e, Σ e², Σ e³, Σ e⁴` and `Σ (e_t − e_{t−1})²` of consecutive values,
/// row `r` in lane `r % 8`, `e³`, `e⁴` and the squared differences by fused
/// multiply-adds.
#[inline(always)]
pub fn residual_sums(e: &[f64]) -> ([f64; 4], f64) {
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

/// Kept rows on which a column is non-zero (NaN counts as non-zero).
#[inline(always)]
pub fn count_nonzero_masked(col: &[f64], n: usize, mask: Option<&[u8]>) -> u64 {
    assert!(col.len() >= n);
    (0..n).filter(|&r| is_kept(mask, r) && col[r] != 0.0).count() as u64
}

/// HC2/HC3 row weights `w = e²/(1 − h)` (`squared`: `e²/(1 − h)²`), 0
/// where `1 − h ≤ 1e-10` (leverage 1 within rounding: 0/0); returns
/// whether any row has leverage 1. `e`, `h` and `w` hold the same number
/// of values.
#[inline(always)]
pub fn robust_weights(e: &[f64], h: &[f64], squared: bool, w: &mut [f64]) -> bool {
    assert!(h.len() == e.len() && w.len() == e.len());
    let mut any = false;
    for ((w, &e), &h) in w.iter_mut().zip(e).zip(h) {
        let d = 1.0 - h;
        let one = d <= 1e-10;
        any |= one;
        let d = if squared { d * d } else { d };
        *w = if one { 0.0 } else { (e * e) / d };
    }
    any
}

/// The columns of a group of 8 rows (`x[j]`; zero on dropped rows and past
/// `n`), and their products with the weights (`wx[j]`, or the columns
/// again without weights) and the weights (1 on kept rows without).
#[inline(always)]
fn load_group(
    cols: &[&[f64]],
    w: Option<&[f64]>,
    n: usize,
    c: usize,
    k: u8,
    x: &mut [[f64; 8]],
    wx: &mut [[f64; 8]],
) -> [f64; 8] {
    let base = 8 * c;
    let lane = |v: &[f64], l: usize| if k >> l & 1 == 1 { v[base + l] } else { 0.0 };
    let whole = base + 8 <= n && k == 0xff;
    let wv: [f64; 8] = match w {
        Some(w) if whole => w[base..base + 8].try_into().expect("8 rows"),
        Some(w) => std::array::from_fn(|l| lane(w, l)),
        None => std::array::from_fn(|l| f64::from(k >> l & 1)),
    };
    for (j, col) in cols.iter().enumerate() {
        x[j] =
            if whole { col[base..base + 8].try_into().expect("8 rows") } else { std::array::from_fn(|l| lane(col, l)) };
        wx[j] = match w {
            Some(_) => std::array::from_fn(|l| wv[l] * x[j][l]),
            None => x[j],
        };
    }
    wv
}

/// `Σ_r w_r x_ri x_rj` over the kept rows (`w`: 1 without weights) of the
/// columns, lower triangle, `out[j·m + i]` for `i ≥ j` (`m` columns).
#[inline(always)]
pub fn gram_lower_cols(cols: &[&[f64]], n: usize, mask: Option<&[u8]>, weights: Option<&[f64]>, out: &mut [f64]) {
    let m = cols.len();
    assert!(weights.is_none_or(|w| w.len() >= n));
    assert!(cols.iter().all(|c| c.len() >= n) && out.len() >= m * m);
    let (mut x, mut wx) = (vec![[0.0; 8]; m], vec![[0.0; 8]; m]);
    let mut acc = vec![[0.0f64; 8]; m * m];
    for c in 0..n.div_ceil(8) {
        let k = row_mask(mask, c, n);
        load_group(cols, weights, n, c, k, &mut x, &mut wx);
        add_gram(&x, &wx, &mut acc);
    }
    for i in 0..m {
        for j in 0..=i {
            out[j * m + i] = reduce8(acc[i * m + j]);
        }
    }
}

/// `acc[i·m + j] += wx_i · x_j` lane by lane (`i ≥ j`).
#[inline(always)]
fn add_gram(x: &[[f64; 8]], wx: &[[f64; 8]], acc: &mut [[f64; 8]]) {
    let m = x.len();
    for i in 0..m {
        for j in 0..=i {
            let a = &mut acc[i * m + j];
            for l in 0..8 {
                a[l] = wx[i][l].mul_add(x[j][l], a[l]);
            }
        }
    }
}

/// Per pattern, `Σ w_r` (lane 0) and `Σ w_r x_rc` (lane 1 + c) over the kept
/// rows, added to `table` (`rows` rows of [`table_width`] vectors of 8, in
/// `copies` copies: row `r` adds to copy `r % copies` of its pattern's
/// row); without weights every kept row weighs 1 and the columns are added
/// as they are.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn pattern_sums<P: Copy + Into<usize>>(
    cols: &[&[f64]],
    patterns: &[P],
    rows: usize,
    copies: usize,
    n: usize,
    mask: Option<&[u8]>,
    w: Option<&[f64]>,
    table: &mut [f64],
) {
    let nc = cols.len();
    let stride = table_width(nc) * 8;
    assert!(cols.iter().all(|c| c.len() >= n) && w.is_none_or(|w| w.len() >= n));
    assert!(patterns.len() >= n && table.len() >= copies * rows * stride);
    for r in (0..n).filter(|&r| is_kept(mask, r)) {
        let p: usize = patterns[r].into();
        assert!(p < rows, "a pattern past the table");
        let at = (p * copies + r % copies) * stride;
        let row = &mut table[at..at + 1 + nc];
        match w {
            Some(w) => {
                let wr = w[r];
                row[0] += wr;
                for (t, col) in row[1..].iter_mut().zip(cols) {
                    *t += wr * col[r];
                }
            }
            None => {
                row[0] += 1.0;
                for (t, col) in row[1..].iter_mut().zip(cols) {
                    *t += col[r];
                }
            }
        }
    }
}

/// A robust meat's part of a chunk: the weighted pattern sums (`copies`
/// copies of 256 pattern rows, as [`pattern_sums`]) added to `table`, and
/// the weighted gram of the columns written to `out` (as
/// [`gram_lower_cols`]), in one pass over the rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn meat_sums(
    cols: &[&[f64]],
    patterns: &[u8],
    copies: usize,
    n: usize,
    mask: Option<&[u8]>,
    w: &[f64],
    table: &mut [f64],
    out: &mut [f64],
) {
    let nc = cols.len();
    let stride = table_width(nc) * 8;
    assert!(cols.iter().all(|c| c.len() >= n) && w.len() >= n && out.len() >= nc * nc);
    assert!(patterns.len() >= n && table.len() >= copies * 256 * stride);
    let (mut x, mut wx) = (vec![[0.0; 8]; nc], vec![[0.0; 8]; nc]);
    let mut acc = vec![[0.0f64; 8]; nc * nc];
    for c in 0..n.div_ceil(8) {
        let k = row_mask(mask, c, n);
        let wv = load_group(cols, Some(w), n, c, k, &mut x, &mut wx);
        add_gram(&x, &wx, &mut acc);
        for l in (0..8).filter(|l| k >> l & 1 == 1) {
            let r = 8 * c + l;
            let at = (usize::from(patterns[r]) * copies + r % copies) * stride;
            let row = &mut table[at..at + 1 + nc];
            row[0] += wv[l];
            for (t, v) in row[1..].iter_mut().zip(&wx) {
                *t += v[l];
            }
        }
    }
    for i in 0..nc {
        for j in 0..=i {
            out[j * nc + i] = reduce8(acc[i * nc + j]);
        }
    }
}

/// Leverages `h_r` of the kept rows into `h` (`n` rounded up to 8 values;
/// dropped rows 0): `h = T + 2 Σ_j c_j (t_j + V_j)` with
/// `t_j = B_jj/2 · c_j + Σ_{l>j} B_jl c_l` over the columns (`bk`: `B` in
/// kernel order, `m × m`) and `(T, V)` the table row of the row's pattern
/// (see [`crate::stats::patterns::leverage_table`]); every step a fused
/// multiply-add.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn leverages(
    cols: &[&[f64]],
    bk: &[f64],
    m: usize,
    patterns: &[u8],
    table: &[f64],
    n: usize,
    mask: Option<&[u8]>,
    h: &mut [f64],
) {
    let nc = cols.len();
    let stride = table_width(nc) * 8;
    assert!(cols.iter().all(|c| c.len() >= n) && bk.len() >= m * m && nc <= m);
    assert!(table.len() >= 256 * stride && patterns.len() >= n.div_ceil(8) * 8 && h.len() >= n.div_ceil(8) * 8);
    let coef = |j: usize, l: usize| if l == j { 0.5 * bk[j * m + j] } else { bk[j * m + l] };
    let (mut x, mut scratch) = (vec![[0.0; 8]; nc], vec![[0.0; 8]; nc]);
    for c in 0..n.div_ceil(8) {
        let (base, k) = (8 * c, row_mask(mask, c, n));
        if k == 0 {
            h[base..base + 8].fill(0.0);
            continue;
        }
        load_group(cols, None, n, c, k, &mut x, &mut scratch);
        let row = |l: usize| usize::from(patterns[base + l]) * stride;
        let mut acc = [0.0f64; 8];
        for j in 0..nc {
            let mut t: [f64; 8] = std::array::from_fn(|l| coef(j, j).mul_add(x[j][l], table[row(l) + 1 + j]));
            for (i, xi) in x.iter().enumerate().skip(j + 1) {
                let b = coef(j, i);
                for l in 0..8 {
                    t[l] = b.mul_add(xi[l], t[l]);
                }
            }
            for l in 0..8 {
                acc[l] = x[j][l].mul_add(t[l], acc[l]);
            }
        }
        for l in 0..8 {
            h[base + l] = if k >> l & 1 == 1 { 2.0f64.mul_add(acc[l], table[row(l)]) } else { 0.0 };
        }
    }
}

/// A grouped factor's part of the leverages added to `h`: for a kept row
/// whose code is a level column `l = code_column[code]` (`l < g`; other
/// codes, and codes past `code_column`, add nothing), `fixed[l·2^nf +
/// pattern] + Σ_j c_j · by_column[l·nc + j]`, the columns' terms by fused
/// multiply-adds onto the table's value, then added to `h`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn add_level_leverage(
    codes: &[u32],
    (code_column, g): (&[u32], usize),
    (patterns, nf): (&[u8], usize),
    cols: &[&[f64]],
    fixed: &[f64],
    by_column: &[f64],
    n: usize,
    mask: Option<&[u8]>,
    h: &mut [f64],
) {
    let nc = cols.len();
    assert!(codes.len() >= n && patterns.len() >= n && h.len() >= n && cols.iter().all(|c| c.len() >= n));
    assert!(nf <= MAX_FLAGS && code_column.iter().all(|&l| l as usize <= g));
    assert!(fixed.len() >= g << nf && by_column.len() >= g * nc);
    let low = (1usize << nf) - 1;
    for r in (0..n).filter(|&r| is_kept(mask, r)) {
        let l = code_column.get(codes[r] as usize).map_or(g, |&l| l as usize);
        if l < g {
            let mut sum = fixed[(l << nf) | (usize::from(patterns[r]) & low)];
            for (j, col) in cols.iter().enumerate() {
                sum = col[r].mul_add(by_column[l * nc + j], sum);
            }
            h[r] += sum;
        }
    }
}

/// The table rows of each row of a cluster-robust pass, and its weight
/// (see `x86::avx512::patterns::cluster_rows`): `index[r] = level ·
/// 2^bits + (pattern & (2^bits − 1))`, `side[r] = level · 2^(nf − bits) +
/// (pattern >> bits)` (written only when `bits < nf`), `w[r] = e[r]`, for a
/// row whose code is below `levels.len()` (`level = levels[code]`); 0, 0
/// and 0 for the others. Returns the kept rows with a cluster.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn cluster_rows(
    codes: &[u32],
    levels: &[u32],
    patterns: &[u8],
    e: &[f64],
    (nf, bits): (usize, usize),
    n: usize,
    mask: Option<&[u8]>,
    index: &mut [u16],
    side: &mut [u16],
    w: &mut [f64],
) -> u64 {
    assert!(codes.len() >= n && patterns.len() >= n && e.len() >= n && index.len() >= n && w.len() >= n);
    assert!(bits <= nf && nf <= MAX_FLAGS && (bits == nf || side.len() >= n));
    assert!(levels
        .iter()
        .all(|&l| ((l as usize + 1) << bits) <= 1 << 16 && ((l as usize + 1) << (nf - bits)) <= 1 << 16));
    let g = levels.len();
    let low = (1usize << bits) - 1;
    let mut with_cluster = 0u64;
    for r in 0..n {
        let code = codes[r] as usize;
        let valid = code < g;
        let (level, pat) = (if valid { levels[code] as usize } else { 0 }, usize::from(patterns[r]));
        index[r] = if valid { (level << bits | pat & low) as u16 } else { 0 };
        if bits < nf {
            side[r] = if valid { (level << (nf - bits) | pat >> bits) as u16 } else { 0 };
        }
        w[r] = if valid { e[r] } else { 0.0 };
        with_cluster += u64::from(valid && is_kept(mask, r));
    }
    with_cluster
}

/// [`pattern_sums`] with one copy of each table row, on a `u16` index.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn pattern_sums_once(
    cols: &[&[f64]],
    index: &[u16],
    rows: usize,
    n: usize,
    mask: Option<&[u8]>,
    w: Option<&[f64]>,
    table: &mut [f64],
) {
    pattern_sums(cols, index, rows, 1, n, mask, w, table)
}

/// [`meat_sums`] into [`SPREAD`](crate::stats::patterns::SPREAD) copies.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn meat_sums_spread(
    cols: &[&[f64]],
    patterns: &[u8],
    n: usize,
    mask: Option<&[u8]>,
    w: &[f64],
    table: &mut [f64],
    out: &mut [f64],
) {
    meat_sums(cols, patterns, crate::stats::patterns::SPREAD, n, mask, w, table, out)
}
