//! The AVX-512 kernels of the robust second pass's pattern tables (see
//! [`crate::stats::patterns`] for the algebra): row patterns by a GF(2)
//! transform, sums per pattern, the meat's and the leverages' loops, and
//! the cluster tables' indices. Table rows are 8-lane vectors: rows of 8
//! consecutive design rows are moved between the row-per-lane layout of
//! the columns and the row-per-vector layout of the tables by an 8 × 8
//! transpose in registers.
//!
//! Every function here is `unsafe` only for its target features (AVX-512F):
//! callers hold the token.

use crate::bits::row_mask;
use crate::stats::patterns::{row_patterns_from, table_width, Table, MAX_FLAGS, SPREAD};
use std::arch::x86_64::*;

/// The pattern of each row: bit `a` set when flag `a` is 1 there (`flags`:
/// at most 8 bit columns, a byte per 8 rows, clear on dropped rows), `n`
/// rows rounded up to 8 (rows past `n`: 0).
pub fn row_patterns(flags: &[&[u8]], n: usize) -> Vec<u8> {
    assert!(flags.len() <= MAX_FLAGS);
    let groups = n.div_ceil(8);
    assert!(flags.iter().all(|f| f.len() >= groups));
    let mut out = vec![0u8; groups * 8];
    let mut done = 0;
    if crate::isa::Avx512Vbmi::get().is_some() {
        // SAFETY: the token proves AVX-512 F, BW, VBMI and GFNI; every flag
        // holds `groups` bytes.
        done = unsafe { row_patterns_gfni(flags, groups, &mut out) };
    }
    row_patterns_from(flags, done, &mut out);
    out
}

/// [`row_patterns`] for whole blocks of 64 rows, with a byte permutation
/// (each 8-row group's bytes of the 8 flags into one word, in reverse
/// order) and a GF(2) affine transform per word, which with the unit
/// vectors as input transposes the word's 8 × 8 bit matrix. Returns the
/// 8-row groups done.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,gfni")]
unsafe fn row_patterns_gfni(flags: &[&[u8]], groups: usize, out: &mut [u8]) -> usize {
    // Input word a: flag a over 8 groups (byte q: group q); output word q:
    // byte j = flag 7 − j of group q.
    let idx: [u8; 64] = std::array::from_fn(|i| (8 * (7 - i % 8) + i / 8) as u8);
    // SAFETY: 64 bytes.
    let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
    // Byte j of each word: 1 << j.
    let units = _mm512_set1_epi64(0x8040_2010_0804_0201u64 as i64);
    let blocks = groups / 8;
    for b in 0..blocks {
        let words: [u64; 8] = std::array::from_fn(|a| {
            flags.get(a).map_or(0, |f| u64::from_le_bytes(f[8 * b..8 * b + 8].try_into().expect("8 bytes")))
        });
        // SAFETY: 64 bytes in, 64 bytes out (`out` holds 8 per group).
        unsafe {
            let x = _mm512_loadu_si512(words.as_ptr().cast());
            let t = _mm512_gf2p8affine_epi64_epi8::<0>(units, _mm512_permutexvar_epi8(idx, x));
            _mm512_storeu_si512(out.as_mut_ptr().add(64 * b).cast(), t);
        }
    }
    8 * blocks
}

/// Lanes `q` of 8 vectors (lane = row) to 8 vectors (one per row, lane = q).
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose_8x8(v: [__m512d; 8]) -> [__m512d; 8] {
    let a: [__m512d; 8] = std::array::from_fn(|i| {
        let (x, y) = (v[i & 6], v[(i & 6) | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_pd(x, y)
        } else {
            _mm512_unpackhi_pd(x, y)
        }
    });
    // a[0] = (v0,v1) even lanes, a[1] = odd lanes; likewise a[2..4] from
    // (v2,v3), a[4..6] from (v4,v5), a[6..8] from (v6,v7).
    let b = [
        _mm512_shuffle_f64x2::<0x88>(a[0], a[2]),
        _mm512_shuffle_f64x2::<0xDD>(a[0], a[2]),
        _mm512_shuffle_f64x2::<0x88>(a[1], a[3]),
        _mm512_shuffle_f64x2::<0xDD>(a[1], a[3]),
        _mm512_shuffle_f64x2::<0x88>(a[4], a[6]),
        _mm512_shuffle_f64x2::<0xDD>(a[4], a[6]),
        _mm512_shuffle_f64x2::<0x88>(a[5], a[7]),
        _mm512_shuffle_f64x2::<0xDD>(a[5], a[7]),
    ];
    [
        _mm512_shuffle_f64x2::<0x88>(b[0], b[4]),
        _mm512_shuffle_f64x2::<0x88>(b[2], b[6]),
        _mm512_shuffle_f64x2::<0x88>(b[1], b[5]),
        _mm512_shuffle_f64x2::<0x88>(b[3], b[7]),
        _mm512_shuffle_f64x2::<0xDD>(b[0], b[4]),
        _mm512_shuffle_f64x2::<0xDD>(b[2], b[6]),
        _mm512_shuffle_f64x2::<0xDD>(b[1], b[5]),
        _mm512_shuffle_f64x2::<0xDD>(b[3], b[7]),
    ]
}

/// Per pattern: `Σ w_r` (lane 0) and `Σ w_r x_rc` (lane 1 + c) over the
/// kept rows, added to `table` (`rows` rows of [`table_width`] vectors;
/// a pattern is the row's index, below `rows`). Dropped rows weigh 0;
/// without weights every kept row weighs 1 (row counts and plain sums,
/// no multiplication: exact where the sums are).
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn pattern_sums<P: Copy + Into<usize>>(
    cols: &[&[f64]],
    patterns: &[P],
    rows: usize,
    n: usize,
    mask: Option<&[u8]>,
    w: Option<&[f64]>,
    table: &mut [f64],
) {
    // SAFETY: as the caller's.
    unsafe { pattern_sums_copies::<P, 1>(cols, patterns, rows, n, mask, w, table) }
}

/// [`pattern_sums`] into `COPIES` copies of each table row (see
/// [`spread_pattern_sums`]).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn pattern_sums_copies<P: Copy + Into<usize>, const COPIES: usize>(
    cols: &[&[f64]],
    patterns: &[P],
    rows: usize,
    n: usize,
    mask: Option<&[u8]>,
    w: Option<&[f64]>,
    table: &mut [f64],
) {
    assert!(cols.iter().all(|c| c.len() >= n) && w.is_none_or(|w| w.len() >= n));
    assert!(patterns.len() >= n.div_ceil(8) * 8);
    assert!(table.len() >= COPIES * rows * table_width(cols.len()) * 8);
    // Up to 7 columns (one vector per table row): the column count fixed at
    // compile time, so that the lanes are known without a branch per lane.
    macro_rules! with_count {
        ($($k:literal),*) => {
            // SAFETY (each call): as the caller's; the asserts above hold.
            match cols.len() {
                $($k => unsafe { pattern_sums_with::<P, $k, COPIES>(cols, patterns, rows, n, mask, w, table) },)*
                _ => unsafe { pattern_sums_with::<P, ANY_COUNT, COPIES>(cols, patterns, rows, n, mask, w, table) },
            }
        };
    }
    with_count!(1, 2, 3, 4, 5, 6, 7);
}

/// [`pattern_sums`] into a table of [`SPREAD`] copies of each of the 256
/// pattern rows (pattern `p`, copy `q`: row `SPREAD·p + q`), row `r` of the
/// chunk adding to copy `r mod SPREAD`: rows of the same pattern close
/// together (a design whose flags take few patterns, such as one factor's
/// indicators) then add to different copies instead of each waiting for
/// the previous one's store. [`fold_spread`](crate::stats::patterns::fold_spread) sums the copies.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn spread_pattern_sums(
    cols: &[&[f64]],
    patterns: &[u8],
    n: usize,
    mask: Option<&[u8]>,
    w: Option<&[f64]>,
    table: &mut [f64],
) {
    // SAFETY: as the caller's.
    unsafe { pattern_sums_copies::<u8, SPREAD>(cols, patterns, 256, n, mask, w, table) }
}

/// The chunk's part of a robust meat for `nc ≤ 7` columns: the weighted
/// pattern sums of [`spread_pattern_sums`] added to `table`, and the
/// weighted gram `Σ w_r x_ri x_rj` of the columns (lower triangle, `out[j
/// · nc + i]` for `i ≥ j`, as [`gram_lower_cols_avx512`] lays it out)
/// written to `out`, in one loop: the sums' transposes, loads and stores
/// and the gram's multiply-adds use different units, so together they cost
/// about what the sums cost alone (15 against 11 + 15 µs for an 8192-row
/// chunk of 6 columns, Zen 4; `benches/kernels.rs`). `false` (nothing
/// done) for more than 7 columns.
///
/// [`gram_lower_cols_avx512`]: super::gram_lower_cols_avx512
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn meat_sums(
    cols: &[&[f64]],
    patterns: &[u8],
    n: usize,
    mask: Option<&[u8]>,
    w: &[f64],
    table: &mut [f64],
    out: &mut [f64],
) -> bool {
    let nc = cols.len();
    assert!(cols.iter().all(|c| c.len() >= n) && w.len() >= n && out.len() >= nc * nc);
    assert!(patterns.len() >= n.div_ceil(8) * 8 && table.len() >= SPREAD * 256 * 8);
    macro_rules! fixed {
        ($($k:literal),*) => {
            match nc {
                // SAFETY: as the caller's; the asserts above hold.
                $($k => unsafe { meat_sums_fixed::<$k>(cols, patterns, n, mask, w, table, out) },)*
                _ => return false,
            }
        };
    }
    fixed!(0, 1, 2, 3, 4, 5, 6, 7);
    true
}

/// [`meat_sums`] for `NC` columns.
#[target_feature(enable = "avx512f")]
unsafe fn meat_sums_fixed<const NC: usize>(
    cols: &[&[f64]],
    patterns: &[u8],
    n: usize,
    mask: Option<&[u8]>,
    w: &[f64],
    table: &mut [f64],
    out: &mut [f64],
) {
    let ptr: [*const f64; NC] = std::array::from_fn(|j| cols[j].as_ptr());
    let t = table.as_mut_ptr();
    let mut acc = [[_mm512_setzero_pd(); NC]; NC];
    for c in 0..n.div_ceil(8) {
        let k = row_mask(mask, c, n);
        // SAFETY: the mask limits the loads to rows below n.
        let wv = unsafe { _mm512_maskz_loadu_pd(k, w.as_ptr().add(8 * c)) };
        let x: [__m512d; NC] = std::array::from_fn(|j| unsafe { _mm512_maskz_loadu_pd(k, ptr[j].add(8 * c)) });
        let wx: [__m512d; NC] = std::array::from_fn(|j| _mm512_mul_pd(wv, x[j]));
        for i in 0..NC {
            for j in 0..=i {
                acc[i][j] = _mm512_fmadd_pd(wx[i], x[j], acc[i][j]);
            }
        }
        let lanes: [__m512d; 8] = std::array::from_fn(|q| match q {
            0 => wv,
            q if q <= NC => wx[q - 1],
            _ => _mm512_setzero_pd(),
        });
        for (r, row) in transpose_8x8(lanes).iter().enumerate() {
            // SAFETY: a pattern is a byte, below the table's 256 rows of
            // SPREAD copies; `patterns` holds 8 bytes per group.
            unsafe {
                let at = t.add((usize::from(*patterns.get_unchecked(8 * c + r)) * SPREAD + r % SPREAD) * 8);
                _mm512_storeu_pd(at, _mm512_add_pd(_mm512_loadu_pd(at), *row));
            }
        }
    }
    for i in 0..NC {
        for j in 0..=i {
            out[j * NC + i] = _mm512_reduce_add_pd(acc[i][j]);
        }
    }
}

/// `NC` for a column count known only at run time.
const ANY_COUNT: usize = usize::MAX;

/// [`pattern_sums`] for `NC` columns (`ANY_COUNT`: `cols.len()`), into
/// `COPIES` copies of each table row (see [`spread_pattern_sums`]).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn pattern_sums_with<P: Copy + Into<usize>, const NC: usize, const COPIES: usize>(
    cols: &[&[f64]],
    patterns: &[P],
    rows: usize,
    n: usize,
    mask: Option<&[u8]>,
    w: Option<&[f64]>,
    table: &mut [f64],
) {
    let nc = if NC == ANY_COUNT { cols.len() } else { NC };
    assert_eq!(nc, cols.len());
    let width = table_width(nc);
    let one = _mm512_set1_pd(1.0);
    let t = table.as_mut_ptr();
    for c in 0..n.div_ceil(8) {
        let k = row_mask(mask, c, n);
        let wv = match w {
            // SAFETY: the mask limits the loads to rows below n.
            Some(w) => unsafe { _mm512_maskz_loadu_pd(k, w.as_ptr().add(8 * c)) },
            None => _mm512_maskz_mov_pd(k, one),
        };
        let pat: [usize; 8] = std::array::from_fn(|r| patterns[8 * c + r].into());
        assert!(pat.iter().all(|&p| p < rows), "a pattern past the table");
        for g in 0..width {
            let lanes: [__m512d; 8] = std::array::from_fn(|i| match 8 * g + i {
                0 => wv,
                q if q <= nc => {
                    // SAFETY: as above; q − 1 < nc = cols.len().
                    let x = unsafe { _mm512_maskz_loadu_pd(k, cols.get_unchecked(q - 1).as_ptr().add(8 * c)) };
                    if w.is_some() {
                        _mm512_mul_pd(wv, x)
                    } else {
                        x
                    }
                }
                _ => _mm512_setzero_pd(),
            });
            for (r, row) in transpose_8x8(lanes).iter().enumerate() {
                // SAFETY: every pattern is below `rows` (checked above).
                unsafe {
                    let at = t.add(((pat[r] * COPIES + r % COPIES) * width + g) * 8);
                    _mm512_storeu_pd(at, _mm512_add_pd(_mm512_loadu_pd(at), *row));
                }
            }
        }
    }
}

/// Per row, its 0/1 flags (`patterns`: a byte per row, bit `a` = flag
/// `a`, clear on dropped rows) as 8 lanes of 0 or 1 added to table row
/// `index[r]` (`rows` rows of one vector): per row of the table, the count
/// of its rows with each flag (exact). The pattern byte is the lane mask
/// of the ones added, so a row costs one addition whatever its flags.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn flag_counts(index: &[u16], patterns: &[u8], rows: usize, n: usize, table: &mut [f64]) {
    assert!(index.len() >= n && patterns.len() >= n && table.len() >= rows * 8);
    assert!(index[..n].iter().all(|&i| usize::from(i) < rows), "an index past the table");
    let one = _mm512_set1_pd(1.0);
    let t = table.as_mut_ptr();
    for r in 0..n {
        // SAFETY: every index is below `rows` (checked above); 8 lanes per row.
        unsafe {
            let at = t.add(usize::from(*index.get_unchecked(r)) * 8);
            let row = _mm512_loadu_pd(at);
            _mm512_storeu_pd(at, _mm512_mask_add_pd(row, *patterns.get_unchecked(r), row, one));
        }
    }
}

/// The table rows of each row of a cluster-robust pass, and its weight.
///
/// A cluster's scores need, per level, `Σ e`, `Σ e·c` for each column
/// and `Σ e` over the rows with each flag. One table keyed by (level, all
/// `nf` flags) holds all of them, but with many levels it outgrows the
/// caches (105 levels × 256 patterns × 64 bytes = 1.7 MB), and its rows
/// are hit at random. So the pattern is split: the main table is keyed by
/// the level and the low `bits` flags (`level · 2^bits + low`, vector rows
/// as for [`pattern_sums`]), a side table of scalars `Σ e` by the level
/// and the other flags (`level · 2^(nf − bits) + high`). With `bits = nf`
/// the side table is not needed and `side` is not written.
///
/// `level = levels[code]`: `levels` maps a chunk's level codes to the rows
/// of tables that span chunks. A row without a cluster (code past
/// `levels`: none, or a dropped row's) goes to row 0 with weight 0 (its
/// residual otherwise; residuals are 0 on dropped rows already). 16 rows
/// at a time. Returns the kept rows with a cluster (`mask`: kept rows).
///
/// # Safety
///
/// The CPU must have AVX-512F, POPCNT (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f,popcnt")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn cluster_rows(
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
    let g = levels.len();
    assert!(levels
        .iter()
        .all(|&l| ((l as usize + 1) << bits) <= 1 << 16 && ((l as usize + 1) << (nf - bits)) <= 1 << 16));
    let kept = |r: usize| crate::bits::is_kept(mask, r);
    let low = (1u32 << bits) - 1;
    let gv = _mm512_set1_epi32(g as i32);
    let (shift, side_shift) = (_mm512_set1_epi32(bits as i32), _mm512_set1_epi32((nf - bits) as i32));
    let (lowv, high_shift) = (_mm512_set1_epi32(low as i32), _mm512_set1_epi32(bits as i32));
    // Up to 16 levels: looked up by a permutation of one register.
    let mut lanes = [0u32; 16];
    lanes[..g.min(16)].copy_from_slice(&levels[..g.min(16)]);
    // SAFETY: 16 u32.
    let table = unsafe { _mm512_loadu_si512(lanes.as_ptr().cast()) };
    let mut with_cluster = 0u64;
    let blocks = n / 16;
    for b in 0..blocks {
        let r = 16 * b;
        // SAFETY: the block's 16 rows lie below n in every slice (`side`
        // too when it is written); the gather reads `levels` only where
        // the code is below its length.
        unsafe {
            let code = _mm512_loadu_si512(codes.as_ptr().add(r).cast());
            let valid = _mm512_cmplt_epu32_mask(code, gv);
            let level = if g <= 16 {
                _mm512_permutexvar_epi32(code, table)
            } else {
                _mm512_mask_i32gather_epi32::<4>(_mm512_setzero_si512(), valid, code, levels.as_ptr().cast())
            };
            let pat = _mm512_cvtepu8_epi32(_mm_loadu_si128(patterns.as_ptr().add(r).cast()));
            let at = _mm512_maskz_or_epi32(valid, _mm512_sllv_epi32(level, shift), _mm512_and_si512(pat, lowv));
            _mm256_storeu_si256(index.as_mut_ptr().add(r).cast(), _mm512_cvtepi32_epi16(at));
            if bits < nf {
                let high = _mm512_srlv_epi32(pat, high_shift);
                let at = _mm512_maskz_or_epi32(valid, _mm512_sllv_epi32(level, side_shift), high);
                _mm256_storeu_si256(side.as_mut_ptr().add(r).cast(), _mm512_cvtepi32_epi16(at));
            }
            let (lo, hi) = (valid as u8, (valid >> 8) as u8);
            _mm512_storeu_pd(w.as_mut_ptr().add(r), _mm512_maskz_loadu_pd(lo, e.as_ptr().add(r)));
            _mm512_storeu_pd(w.as_mut_ptr().add(r + 8), _mm512_maskz_loadu_pd(hi, e.as_ptr().add(r + 8)));
            let k = mask.map_or(0xffff, |m| u16::from_le_bytes([m[2 * b], m[2 * b + 1]]));
            with_cluster += u64::from((valid & k).count_ones());
        }
    }
    for r in 16 * blocks..n {
        let code = codes[r] as usize;
        let valid = code < g;
        let (level, pat) = (if valid { levels[code] as usize } else { 0 }, usize::from(patterns[r]));
        index[r] = if valid { (level << bits | pat & low as usize) as u16 } else { 0 };
        if bits < nf {
            side[r] = if valid { (level << (nf - bits) | pat >> bits) as u16 } else { 0 };
        }
        w[r] = if valid { e[r] } else { 0.0 };
        with_cluster += u64::from(valid && kept(r));
    }
    with_cluster
}

/// Leverages `h_r` of the kept rows into `h` (`n` rounded up to 8 values;
/// dropped rows 0): `h = T + 2 Σ_j c_j (t_j + V_j)` with
/// `t_j = B_jj/2 · c_j + Σ_{l>j} B_jl c_l` over the columns (`bk` as for
/// [`leverage_table`](crate::stats::patterns::leverage_table)) and `(T, V)` the table row of the row's pattern.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn leverage_by_patterns(
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
    let width = table_width(nc);
    assert!(cols.iter().all(|c| c.len() >= n) && bk.len() >= m * m && nc <= m);
    assert!(table.len() >= 256 * width * 8 && patterns.len() >= n.div_ceil(8) * 8 && h.len() >= n.div_ceil(8) * 8);
    // Up to 7 columns (a table row of one vector): the column count fixed
    // at compile time, so that the loops unroll and the columns stay in
    // registers.
    macro_rules! fixed {
        ($($k:literal),*) => {
            match nc {
                // SAFETY: as the caller's; the asserts above hold.
                $($k => return unsafe { leverage_fixed::<$k>(cols, bk, m, patterns, table, n, mask, h) },)*
                _ => {}
            }
        };
    }
    fixed!(1, 2, 3, 4, 5, 6, 7);
    let two = _mm512_set1_pd(2.0);
    // Two groups of 8 rows at a time: each broadcast coefficient feeds two
    // multiply-adds, and the two groups' chains overlap.
    let mut x = vec![[_mm512_setzero_pd(); 2]; nc];
    let mut lanes = vec![[_mm512_setzero_pd(); 2]; width * 8];
    let groups = n.div_ceil(8);
    for c in (0..groups).step_by(2) {
        let k = [row_mask(mask, c, n), if c + 1 < groups { row_mask(mask, c + 1, n) } else { 0 }];
        for (v, col) in x.iter_mut().zip(cols) {
            for s in 0..2 {
                // SAFETY: the mask limits the load to rows below n (past
                // the last group: empty, at the last group's address).
                v[s] = unsafe { _mm512_maskz_loadu_pd(k[s], col.as_ptr().add(8 * (c + s).min(groups - 1))) };
            }
        }
        for s in 0..2 {
            // Past the last group: pattern rows of group c (any will do,
            // the result is not stored).
            let at = 8 * (c + s).min(groups - 1);
            let pat = &patterns[at..at + 8];
            for g in 0..width {
                // SAFETY: the table has 256 rows of `width` vectors.
                let rows: [__m512d; 8] = std::array::from_fn(|r| unsafe {
                    _mm512_loadu_pd(table.as_ptr().add((usize::from(pat[r]) * width + g) * 8))
                });
                for (l, v) in transpose_8x8(rows).into_iter().enumerate() {
                    lanes[8 * g + l][s] = v;
                }
            }
        }
        // Plain locals (not arrays), so that they stay in registers.
        let (mut acc_a, mut acc_b) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        for j in 0..nc {
            let half = _mm512_set1_pd(0.5 * bk[j * m + j]);
            let (xa, xb) = (x[j][0], x[j][1]);
            let mut ta = _mm512_fmadd_pd(half, xa, lanes[1 + j][0]);
            let mut tb = _mm512_fmadd_pd(half, xb, lanes[1 + j][1]);
            for (l, xl) in x.iter().enumerate().skip(j + 1) {
                let b = _mm512_set1_pd(bk[j * m + l]);
                ta = _mm512_fmadd_pd(b, xl[0], ta);
                tb = _mm512_fmadd_pd(b, xl[1], tb);
            }
            acc_a = _mm512_fmadd_pd(xa, ta, acc_a);
            acc_b = _mm512_fmadd_pd(xb, tb, acc_b);
        }
        let acc = [acc_a, acc_b];
        for s in 0..2 {
            if c + s < groups {
                let hv = _mm512_maskz_mov_pd(k[s], _mm512_fmadd_pd(two, acc[s], lanes[0][s]));
                // SAFETY: `h` holds n rounded up to 8 values.
                unsafe { _mm512_storeu_pd(h.as_mut_ptr().add(8 * (c + s)), hv) };
            }
        }
    }
}

/// [`leverage_by_patterns`] for `NC ≤ 7` columns (one vector per table row).
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn leverage_fixed<const NC: usize>(
    cols: &[&[f64]],
    bk: &[f64],
    m: usize,
    patterns: &[u8],
    table: &[f64],
    n: usize,
    mask: Option<&[u8]>,
    h: &mut [f64],
) {
    let two = _mm512_set1_pd(2.0);
    let ptr: [*const f64; NC] = std::array::from_fn(|j| cols[j].as_ptr());
    // Row j: B_jj/2, then B_jl for l > j (the upper triangle, halved
    // diagonal).
    let coef: [[f64; NC]; NC] =
        std::array::from_fn(|j| std::array::from_fn(|l| if l == j { 0.5 * bk[j * m + j] } else { bk[j * m + l] }));
    let groups = n.div_ceil(8);
    for c in (0..groups).step_by(2) {
        let k = [row_mask(mask, c, n), if c + 1 < groups { row_mask(mask, c + 1, n) } else { 0 }];
        // SAFETY: the masks limit the loads to rows below n (past the last
        // group: empty, at the last group's address).
        let x: [[__m512d; 2]; NC] = std::array::from_fn(|j| {
            [0, 1].map(|s| unsafe { _mm512_maskz_loadu_pd(k[s], ptr[j].add(8 * (c + s).min(groups - 1))) })
        });
        let lanes: [[__m512d; 8]; 2] = [0, 1].map(|s| {
            // Past the last group: pattern rows of group c (any will do,
            // the result is not stored).
            let at = 8 * (c + s).min(groups - 1);
            let pat = &patterns[at..at + 8];
            // SAFETY: the table has 256 rows of one vector.
            transpose_8x8(std::array::from_fn(|r| unsafe {
                _mm512_loadu_pd(table.as_ptr().add(usize::from(pat[r]) * 8))
            }))
        });
        let mut acc = [_mm512_setzero_pd(); 2];
        for j in 0..NC {
            for s in 0..2 {
                let mut t = _mm512_fmadd_pd(_mm512_set1_pd(coef[j][j]), x[j][s], lanes[s][1 + j]);
                for l in j + 1..NC {
                    t = _mm512_fmadd_pd(_mm512_set1_pd(coef[j][l]), x[l][s], t);
                }
                acc[s] = _mm512_fmadd_pd(x[j][s], t, acc[s]);
            }
        }
        for s in 0..2 {
            if c + s < groups {
                let hv = _mm512_maskz_mov_pd(k[s], _mm512_fmadd_pd(two, acc[s], lanes[s][0]));
                // SAFETY: `h` holds n rounded up to 8 values.
                unsafe { _mm512_storeu_pd(h.as_mut_ptr().add(8 * (c + s)), hv) };
            }
        }
    }
}

/// A grouped factor's part of the leverages (see the second pass's
/// `GroupedMeat`), added to `h`: for a kept row whose code is a level
/// column `l = code_column[code]` (`l < g`; other codes, and codes past
/// `code_column`, add nothing), `fixed[l·2^nf + pattern] + Σ_j c_j ·
/// by_column[l·nc + j]`. Eight rows at a time: the level by a gather, the
/// columns' factors by a transpose of the levels' rows (up to 7 columns;
/// gathers beyond).
///
/// # Safety
///
/// The CPU must have AVX-512F, AVX-512DQ (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f,avx512dq")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn add_level_leverage(
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
    let kept = |r: usize| crate::bits::is_kept(mask, r);
    let (len, gv) = (_mm512_set1_epi64(code_column.len() as i64), _mm512_set1_epi64(g as i64));
    let ncv = _mm512_set1_epi64(nc as i64);
    let pat_mask = _mm512_set1_epi64(((1u64 << nf) - 1) as i64);
    // Per level a row of 8 lanes (lane 1 + j: the j-th column's factor),
    // and a zero row g for rows of no level column.
    let rows = (nc < 8).then(|| {
        let mut t = Table::zeroed(g + 1, 1);
        let v = t.as_mut_slice();
        for l in 0..g {
            v[8 * l + 1..8 * l + 1 + nc].copy_from_slice(&by_column[l * nc..(l + 1) * nc]);
        }
        t
    });
    let full = n / 8;
    for c in 0..full {
        let r = 8 * c;
        // SAFETY: rows r..r+8 lie below n in every slice; the gathers read
        // `code_column` where the code is below its length, `fixed` at
        // `l·2^nf + pattern` with `l < g` and the pattern masked to `nf`
        // bits (below `g << nf`, asserted), and `by_column` at `l·nc + j`
        // with `l < g`, `j < nc`.
        unsafe {
            let code = _mm512_cvtepu32_epi64(_mm256_loadu_si256(codes.as_ptr().add(r).cast()));
            let k = _mm512_cmplt_epu64_mask(code, len) & mask.map_or(0xff, |m| m[c]);
            let l = _mm512_cvtepu32_epi64(_mm512_mask_i64gather_epi32::<4>(
                _mm256_setzero_si256(),
                k,
                code,
                code_column.as_ptr().cast(),
            ));
            let k = k & _mm512_cmplt_epu64_mask(l, gv);
            if k == 0 {
                continue;
            }
            // The pattern limited to its `nf` flags: `row_patterns` leaves
            // the bits past them clear, and this keeps the gather within
            // `fixed` (`g << nf` values) whatever a caller passes.
            let pat =
                _mm512_and_si512(_mm512_cvtepu8_epi64(_mm_loadl_epi64(patterns.as_ptr().add(r).cast())), pat_mask);
            let at = _mm512_or_si512(_mm512_sllv_epi64(l, _mm512_set1_epi64(nf as i64)), pat);
            let mut sum = _mm512_mask_i64gather_pd::<8>(_mm512_setzero_pd(), k, at, fixed.as_ptr());
            match &rows {
                Some(t) => {
                    let mut at = [0u64; 8];
                    _mm512_storeu_si512(at.as_mut_ptr().cast(), _mm512_mask_blend_epi64(k, gv, l));
                    let lanes = transpose_8x8(std::array::from_fn(|i| {
                        _mm512_loadu_pd(t.as_slice().as_ptr().add(8 * at[i] as usize))
                    }));
                    for (j, col) in cols.iter().enumerate() {
                        sum = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(k, col.as_ptr().add(r)), lanes[1 + j], sum);
                    }
                }
                None => {
                    let base = _mm512_mullo_epi64(l, ncv);
                    for (j, col) in cols.iter().enumerate() {
                        let e = _mm512_mask_i64gather_pd::<8>(
                            _mm512_setzero_pd(),
                            k,
                            _mm512_add_epi64(base, _mm512_set1_epi64(j as i64)),
                            by_column.as_ptr(),
                        );
                        sum = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(k, col.as_ptr().add(r)), e, sum);
                    }
                }
            }
            let hv = _mm512_loadu_pd(h.as_ptr().add(r));
            _mm512_storeu_pd(h.as_mut_ptr().add(r), _mm512_mask_add_pd(hv, k, hv, sum));
        }
    }
    // The rows past the last group: the same arithmetic, one row at a time.
    let low = (1usize << nf) - 1;
    for r in 8 * full..n {
        let l = code_column.get(codes[r] as usize).map_or(g, |&l| l as usize);
        if l < g && kept(r) {
            let mut sum = fixed[(l << nf) | (usize::from(patterns[r]) & low)];
            for (j, col) in cols.iter().enumerate() {
                sum = col[r].mul_add(by_column[l * nc + j], sum);
            }
            h[r] += sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row patterns (64-row blocks by GF(2) transform where the CPU has
    /// it, the rest by bit transposes) hold bit `a` of row `r` exactly
    /// when flag `a` is set on row `r`.
    #[test]
    fn row_patterns_hold_each_rows_flags() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in [1usize, 7, 8, 63, 64, 65, 200, 8192] {
            for nf in 0..=MAX_FLAGS {
                let flags: Vec<Vec<u8>> = (0..nf).map(|_| (0..n.div_ceil(8)).map(|_| next() as u8).collect()).collect();
                let refs: Vec<&[u8]> = flags.iter().map(|f| f.as_slice()).collect();
                let p = row_patterns(&refs, n);
                for r in 0..n {
                    for (a, f) in flags.iter().enumerate() {
                        assert_eq!(p[r] >> a & 1, f[r / 8] >> (r % 8) & 1, "n {n}, row {r}, flag {a}");
                    }
                    assert_eq!(u32::from(p[r]) >> nf, 0, "n {n}, row {r}: no bits past the flags");
                }
            }
        }
    }
}
