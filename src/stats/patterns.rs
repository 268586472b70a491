//! Row patterns of 0/1 columns for the robust second pass.
//!
//! A design with k 0/1 columns (amenity flags, dummies) has at most 2ᵏ
//! distinct rows of them. Grouping rows by their pattern of flags turns
//! every product that involves a flag into a sum over patterns, so the
//! per-row work no longer grows with the number of flags:
//!
//! * the meat `Σ_r w_r x_r x_rᵀ`: per pattern, `Σ w` and `Σ w·x_c` for
//!   each other column `c` (one vector addition per row into a table of
//!   2ᵏ rows); flag × flag and flag × column entries are then sums of
//!   table rows whose pattern has those flags. Only column × column
//!   products remain per row.
//! * the leverage `h_r = x_rᵀ B x_r` with `x = (c, b, 1)`: columns `c`,
//!   flags `b`, intercept. `h = cᵀB_cc c + 2cᵀ(B_cb b + B_c1) + T(b)` with
//!   `T(b) = bᵀB_bb b + 2B_1b b + B_11`; the vector `B_cb b + B_c1` and
//!   `T(b)` depend on the pattern only, so they are looked up (one table
//!   row per row), leaving `cᵀB_cc c`.
//!
//! Patterns cover up to 8 flags (a byte per row, 256 table rows); further
//! flags go with the columns. Table rows are 8-lane vectors: rows of 8
//! consecutive design rows are moved between the row-per-lane layout of
//! the columns and the row-per-vector layout of the tables by an 8 × 8
//! transpose in registers.
//!
//! This module holds the tables and their algebra (portable); the kernels
//! that fill them are `x86::avx512::patterns`.

/// Flags a pattern holds at most.
pub const MAX_FLAGS: usize = 8;

/// Transpose of an 8 × 8 bit matrix held in a `u64` (byte `i` = row `i`,
/// bit `j` = column `j`): Hacker's Delight, `transpose8` (three rounds of
/// delta swaps).
pub fn transpose_bits(mut x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^ t ^ (t << 28)
}

/// The pattern of each row, by bit transposes of 8 × 8 blocks from row
/// 8·`from_group` on (see `x86::avx512::patterns::row_patterns`, which
/// does whole 64-row blocks by a GF(2) transform first).
pub fn row_patterns_from(flags: &[&[u8]], from_group: usize, out: &mut [u8]) {
    for (c, o) in out.chunks_exact_mut(8).enumerate().skip(from_group) {
        // Byte a: flag a over the 8 rows; transposed, byte r: row r's flags.
        let x = flags.iter().enumerate().fold(0u64, |x, (a, f)| x | u64::from(f[c]) << (8 * a));
        o.copy_from_slice(&transpose_bits(x).to_le_bytes());
    }
}

/// A zeroed table of `rows × width` vectors of 8 lanes, aligned to 64
/// bytes: a table row read right after it was written (the next row of
/// the same pattern) is forwarded from the store only when the vector
/// does not straddle two cache lines.
#[derive(Clone, Debug)]
pub struct Table {
    vectors: Vec<Lanes>,
}

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Lanes([f64; 8]);

impl Table {
    pub fn zeroed(rows: usize, width: usize) -> Table {
        Table { vectors: vec![Lanes([0.0; 8]); rows * width] }
    }

    /// Append zeroed rows (of `width` vectors).
    pub fn grow(&mut self, rows: usize, width: usize) {
        self.vectors.resize(self.vectors.len() + rows * width, Lanes([0.0; 8]));
    }

    pub fn as_slice(&self) -> &[f64] {
        // SAFETY: `Lanes` is 8 f64 with no padding (64 bytes, aligned to 64).
        unsafe { std::slice::from_raw_parts(self.vectors.as_ptr().cast(), self.vectors.len() * 8) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [f64] {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts_mut(self.vectors.as_mut_ptr().cast(), self.vectors.len() * 8) }
    }
}

/// Vectors (8 lanes) per table row for `cols` columns besides the leading
/// lane (`Σ w`, or `T`).
pub const fn table_width(cols: usize) -> usize {
    (1 + cols).div_ceil(8)
}

/// Copies of each table row that `x86::avx512::patterns::spread_pattern_sums` adds to in turn.
pub const SPREAD: usize = 4;

/// The 256-row table of a `x86::avx512::patterns::spread_pattern_sums` table (`width` vectors
/// per row): each pattern's copies summed.
pub fn fold_spread(table: &[f64], width: usize) -> Vec<f64> {
    let stride = width * 8;
    (0..256 * stride)
        .map(|i| (0..SPREAD).map(|q| table[(i / stride * SPREAD + q) * stride + i % stride]).sum())
        .collect()
}

/// `side[index[r]] += w[r]` for the first `n` rows: the side table of
/// `x86::avx512::patterns::cluster_rows`.
pub fn side_sums(index: &[u16], w: &[f64], n: usize, side: &mut [f64]) {
    for (&i, &w) in index[..n].iter().zip(&w[..n]) {
        side[usize::from(i)] += w;
    }
}

/// The main pattern bits for a cluster table over `levels` levels, `nf`
/// flags and table rows of `width` vectors: all flags while the whole
/// table stays within 128 KiB (a few levels); else about half of what
/// remains once a main row's size is counted against a side entry's (8
/// bytes), so that the two tables are of like size and both small.
pub fn cluster_bits(levels: usize, nf: usize, width: usize) -> usize {
    if (levels << nf) * width * 64 <= 128 << 10 {
        return nf;
    }
    // 64·width bytes per main row = 2^(3 + log2(8·width)) … in units of a side entry.
    let row_units = (8 * width).ilog2() as usize;
    nf.saturating_sub(row_units).div_ceil(2).min(nf)
}

/// Per-cluster score sums from the tables of `x86::avx512::patterns::cluster_rows` (main
/// table rows `level · 2^bits + low`, summed by `x86::avx512::patterns::pattern_sums`; side
/// entries `level · 2^(nf − bits) + high`, by [`side_sums`]; weights:
/// the residuals): `g × m` in kernel order (columns, flags, intercept).
pub fn scores_from_patterns(
    table: &[f64],
    side: &[f64],
    g: usize,
    nc: usize,
    (nf, bits): (usize, usize),
    intercept: bool,
) -> Vec<f64> {
    let m = nc + nf + usize::from(intercept);
    let stride = table_width(nc) * 8;
    let mut out = vec![0.0; g * m];
    let mut lanes = vec![0.0; stride];
    for l in 0..g {
        // Whole table rows summed (lane 0: Σ e, the intercept's score);
        // a flag's score is Σ e over the patterns with it.
        lanes.fill(0.0);
        let s = &mut out[l * m..(l + 1) * m];
        for p in 0..1usize << bits {
            let row = &table[((l << bits) + p) * stride..((l << bits) + p + 1) * stride];
            for (a, v) in lanes.iter_mut().zip(row) {
                *a += v;
            }
            let mut rest = p;
            while rest != 0 {
                s[nc + rest.trailing_zeros() as usize] += row[0];
                rest &= rest - 1;
            }
        }
        if bits < nf {
            let high = nf - bits;
            for q in 0..1usize << high {
                let v = side[(l << high) + q];
                let mut rest = q;
                while rest != 0 {
                    s[nc + bits + rest.trailing_zeros() as usize] += v;
                    rest &= rest - 1;
                }
            }
        }
        s[..nc].copy_from_slice(&lanes[1..=nc]);
        if intercept {
            s[nc + nf] = lanes[0];
        }
    }
    out
}

/// The leverage table: per pattern, lane 0 `T(b)` and lane `1 + j` the
/// `j`-th entry of `B_cb b + B_c1` (see the module documentation), for
/// `b` in kernel order: `bk` is `B` (`m × m`, row-major) with its rows
/// and columns ordered as columns (`nc`), flags (`nf`), intercept (if any).
pub fn leverage_table(bk: &[f64], nc: usize, nf: usize, intercept: bool) -> Table {
    let m = nc + nf + usize::from(intercept);
    assert!(bk.len() >= m * m && nf <= MAX_FLAGS);
    let width = table_width(nc);
    let stride = width * 8;
    let mut lanes = Table::zeroed(256, width);
    let table = lanes.as_mut_slice();
    let one = nc + nf;
    // The empty pattern: the intercept's part alone.
    if intercept {
        table[0] = bk[one * m + one];
        for j in 0..nc {
            table[1 + j] = bk[j * m + one];
        }
    }
    // Each other pattern from the one without its lowest flag `a`:
    // T gains B_aa + 2 Σ_{b in rest} B_ab (+ 2 B_1a), V_j gains B_ja.
    for p in 1..1usize << nf {
        let a = p.trailing_zeros() as usize;
        let rest = p & (p - 1);
        let (fa, base) = (nc + a, rest * stride);
        let mut dt = bk[fa * m + fa];
        for b in (a + 1..nf).filter(|b| rest >> b & 1 == 1) {
            dt += 2.0 * bk[fa * m + nc + b];
        }
        if intercept {
            dt += 2.0 * bk[one * m + fa];
        }
        table[p * stride] = table[base] + dt;
        for j in 0..nc {
            table[p * stride + 1 + j] = table[base + 1 + j] + bk[j * m + fa];
        }
    }
    lanes
}

/// The meat from the pattern table (`Σ w`, `Σ w x_c` per pattern) and the
/// column × column products `cc` (lower triangle, `cc[j·nc + i]`, `i ≥ j`),
/// as a full `m × m` matrix in kernel order (columns, flags, intercept).
pub fn meat_from_patterns(table: &[f64], cc: &[f64], nc: usize, nf: usize, intercept: bool) -> Vec<f64> {
    let m = nc + nf + usize::from(intercept);
    let stride = table_width(nc) * 8;
    // Per flag (and last, all rows): Σ of the table rows of the patterns
    // with the flag; per pair of flags, Σ w over the patterns with both.
    let mut by_flag = vec![0.0; (nf + 1) * stride];
    let mut pairs = vec![0.0; nf * nf];
    let add = |dst: &mut [f64], row: &[f64]| {
        for (s, v) in dst.iter_mut().zip(row) {
            *s += v;
        }
    };
    for p in 0..1usize << nf {
        let row = &table[p * stride..(p + 1) * stride];
        // Weights are never negative: Σ w = 0 leaves the whole row 0.
        if row[0] == 0.0 {
            continue;
        }
        add(&mut by_flag[nf * stride..], row);
        let mut rest = p;
        while rest != 0 {
            let a = rest.trailing_zeros() as usize;
            add(&mut by_flag[a * stride..(a + 1) * stride], row);
            let mut lower = p & ((1 << a) - 1);
            while lower != 0 {
                pairs[a * nf + lower.trailing_zeros() as usize] += row[0];
                lower &= lower - 1;
            }
            rest &= rest - 1;
        }
    }
    let lanes = stride;
    let mut out = vec![0.0; m * m];
    let mut set = |i: usize, j: usize, v: f64| {
        out[i * m + j] = v;
        out[j * m + i] = v;
    };
    for j in 0..nc {
        for i in j..nc {
            set(i, j, cc[j * nc + i]);
        }
    }
    let flag_rows = (0..nf).map(|a| (nc + a, a));
    for (i, a) in flag_rows.chain(intercept.then_some((nc + nf, nf))) {
        let s = &by_flag[a * lanes..(a + 1) * lanes];
        for j in 0..nc {
            set(i, j, s[1 + j]);
        }
        if a == nf {
            // Intercept × flag b: Σ w over the patterns with b.
            for b in 0..nf {
                set(i, nc + b, by_flag[b * lanes]);
            }
        }
        set(i, i, s[0]);
    }
    for a in 0..nf {
        for b in 0..a {
            set(nc + a, nc + b, pairs[a * nf + b]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_transpose_moves_bit_j_of_byte_i_to_bit_i_of_byte_j() {
        let mut x = 0x0123_4567_89ab_cdefu64;
        for _ in 0..64 {
            let t = transpose_bits(x);
            for i in 0..8 {
                for j in 0..8 {
                    assert_eq!(x >> (8 * i + j) & 1, t >> (8 * j + i) & 1);
                }
            }
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        }
    }
}
