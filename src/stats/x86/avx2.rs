//! AVX2 kernels (256-bit vectors): the same algorithms as the portable
//! ones and the AVX-512 ones — the general scan with its lanes summed in
//! the same order, and the in-place first pass's scan and masked sums,
//! whose sums are exact where they are used (any order).

use crate::bits::row_mask;
use crate::stats::columns::{assert_level_sums_args, ColumnStats, LevelColumn};
use crate::stats::dyadic::ColumnScan;
use crate::stats::portable::reduce8;
use std::arch::x86_64::*;

/// # Safety
///
/// The CPU must have AVX2 (a `crate::isa::Avx2` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx2")]
pub unsafe fn scan_avx2(col: &[f64]) -> ColumnScan {
    let zero = _mm256_setzero_pd();
    let one = _mm256_set1_pd(1.0);
    let sign = _mm256_set1_pd(-0.0);
    let mut acc = [zero; 10];
    let mut chunks = col.chunks_exact(8);
    for c in &mut chunks {
        for h in 0..2 {
            // SAFETY: `c` holds 8 values.
            let v = unsafe { _mm256_loadu_pd(c.as_ptr().add(4 * h)) };
            let a = _mm256_andnot_pd(sign, v);
            let a2 = _mm256_add_pd(a, a);
            let t = _mm256_round_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(a);
            let t2 = _mm256_round_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(a2);
            let [e0, e1, mx, sum, nz] = &mut acc[5 * h..5 * h + 5] else { unreachable!() };
            *e0 = _mm256_add_pd(*e0, _mm256_sub_pd(a, t));
            *e1 = _mm256_add_pd(*e1, _mm256_sub_pd(a2, t2));
            *mx = _mm256_max_pd(*mx, a);
            *sum = _mm256_add_pd(*sum, v);
            *nz = _mm256_add_pd(*nz, _mm256_and_pd(_mm256_cmp_pd::<_CMP_NEQ_UQ>(v, zero), one));
        }
    }
    // SAFETY: two vectors of four f64 are eight f64.
    let join = |lo: __m256d, hi: __m256d| -> [f64; 8] { unsafe { std::mem::transmute([lo, hi]) } };
    let (e0, e1, mx) = (join(acc[0], acc[5]), join(acc[1], acc[6]), join(acc[2], acc[7]));
    let (sum, nz) = (join(acc[3], acc[8]), join(acc[4], acc[9]));
    ColumnScan::from_lanes(col, chunks.remainder(), [e0, e1, mx, sum, nz], false)
}

/// The bit of each of the four lanes of a half group (rows `4h .. 4h + 4`
/// of eight) in a row-mask byte.
#[inline]
#[target_feature(enable = "avx2")]
fn lane_bits(h: usize) -> __m256i {
    let s = 4 * h as i64;
    _mm256_setr_epi64x(1 << s, 2 << s, 4 << s, 8 << s)
}

/// All-ones lanes where the lane's bit of the byte broadcast in `k` is set.
#[inline]
#[target_feature(enable = "avx2")]
fn lane_mask(k: __m256i, bits: __m256i) -> __m256d {
    _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(k, bits), bits))
}

/// What [`scan_masked_avx2`] accumulates, four lanes each.
struct MaskedScan {
    fraction: __m256d,
    max: __m256d,
    min: __m256d,
    sum: __m256d,
    nonzero: __m256i,
}

impl MaskedScan {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn add(&mut self, v: __m256d) {
        let t = _mm256_round_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
        // v − trunc(v) has bits set for a fraction, and for NaN or ±∞.
        self.fraction = _mm256_or_pd(self.fraction, _mm256_sub_pd(v, t));
        self.max = _mm256_max_pd(self.max, v);
        self.min = _mm256_min_pd(self.min, v);
        self.sum = _mm256_add_pd(self.sum, v);
        let nz = _mm256_cmp_pd::<_CMP_NEQ_UQ>(v, _mm256_setzero_pd());
        // A true lane is −1 as an integer.
        self.nonzero = _mm256_sub_epi64(self.nonzero, _mm256_castpd_si256(nz));
    }
}

/// `stats::portable::scans::scan_masked` on 256-bit vectors: whether some
/// kept value is not a whole number (or is NaN or ±∞), and the kept
/// values' magnitude, sum and non-zero count (dropped rows read as
/// zeros). The sum's order differs from the portable kernel's; the first
/// pass uses it only where it is exact.
///
/// # Safety
///
/// The CPU must have AVX2 (a `crate::isa::Avx2` token proves it).
#[target_feature(enable = "avx2")]
pub unsafe fn scan_masked_avx2(col: &[f64], mask: Option<&[u8]>) -> (bool, ColumnStats) {
    let n = col.len();
    let full = n / 8;
    let zero = _mm256_setzero_pd();
    let mut s = MaskedScan { fraction: zero, max: zero, min: zero, sum: zero, nonzero: _mm256_setzero_si256() };
    let p = col.as_ptr();
    match mask {
        None => {
            for c in 0..full {
                // SAFETY: rows 8c .. 8c + 8 lie below n.
                unsafe {
                    s.add(_mm256_loadu_pd(p.add(8 * c)));
                    s.add(_mm256_loadu_pd(p.add(8 * c + 4)));
                }
            }
        }
        Some(m) => {
            let bits = [lane_bits(0), lane_bits(1)];
            for c in 0..full {
                let k = _mm256_set1_epi64x(i64::from(m[c]));
                for (h, &bits) in bits.iter().enumerate() {
                    // SAFETY: as above.
                    let v = unsafe { _mm256_loadu_pd(p.add(8 * c + 4 * h)) };
                    s.add(_mm256_and_pd(v, lane_mask(k, bits)));
                }
            }
        }
    }
    if full * 8 < n {
        let k = row_mask(mask, full, n);
        let tail: [f64; 8] = std::array::from_fn(|l| if k >> l & 1 == 1 { col[8 * full + l] } else { 0.0 });
        // SAFETY: `tail` holds 8 values.
        unsafe {
            s.add(_mm256_loadu_pd(tail.as_ptr()));
            s.add(_mm256_loadu_pd(tail.as_ptr().add(4)));
        }
    }
    // SAFETY: four f64 or i64 lanes are 32 bytes.
    let lanes = |v: __m256d| -> [f64; 4] { unsafe { std::mem::transmute(v) } };
    let fraction: [u64; 4] = unsafe { std::mem::transmute(s.fraction) };
    let nonzero: [u64; 4] = unsafe { std::mem::transmute(s.nonzero) };
    let max = lanes(s.max).into_iter().fold(0.0, f64::max);
    let min = lanes(s.min).into_iter().fold(0.0, f64::min);
    (
        fraction.iter().any(|&f| f != 0),
        ColumnStats {
            max_abs: max.max(-min).abs(),
            sum: lanes(s.sum).iter().sum(),
            nonzero: nonzero.iter().sum::<u64>() as f64,
            binary: max <= 1.0 && min >= 0.0,
        },
    )
}

/// `stats::portable::scans::bits_by_cols` on 256-bit vectors, in tiles of
/// 2 bit columns × 4 float columns (eight sums, four values and two lane
/// masks: 14 of the 16 registers). A dropped row's bit is clear, so its
/// value is never added.
///
/// # Safety
///
/// The CPU must have AVX2 (a `crate::isa::Avx2` token proves it); the
/// slice lengths are checked (`assert!`).
#[target_feature(enable = "avx2")]
pub unsafe fn bits_by_cols_avx2(bins: &[&[u8]], cont: &[&[f64]], n: usize, out: &mut [f64]) {
    let (nb, nc) = (bins.len(), cont.len());
    assert!(bins.iter().all(|b| b.len() >= n.div_ceil(8)) && cont.iter().all(|c| c.len() >= n));
    assert!(out.len() >= nb * nc);
    for i0 in (0..nb).step_by(2) {
        for j0 in (0..nc).step_by(4) {
            macro_rules! tile {
                // SAFETY: the lengths are checked above.
                ($a:literal, $b:literal) => {
                    unsafe { tile_bits::<$a, $b>(bins, cont, n, i0, j0, out) }
                };
            }
            match ((nb - i0).min(2), (nc - j0).min(4)) {
                (1, 1) => tile!(1, 1),
                (1, 2) => tile!(1, 2),
                (1, 3) => tile!(1, 3),
                (1, 4) => tile!(1, 4),
                (2, 1) => tile!(2, 1),
                (2, 2) => tile!(2, 2),
                (2, 3) => tile!(2, 3),
                (2, 4) => tile!(2, 4),
                _ => unreachable!("tiles are at most 2 × 4"),
            }
        }
    }
}

/// One tile of [`bits_by_cols_avx2`].
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tile_bits<const A: usize, const B: usize>(
    bins: &[&[u8]],
    cont: &[&[f64]],
    n: usize,
    i0: usize,
    j0: usize,
    out: &mut [f64],
) {
    let nc = cont.len();
    let full = n / 8;
    let mut acc = [[_mm256_setzero_pd(); B]; A];
    let pc: [*const f64; B] = std::array::from_fn(|b| cont[j0 + b].as_ptr());
    for c in 0..full {
        let k: [u8; A] = std::array::from_fn(|a| bins[i0 + a][c]);
        // SAFETY: rows 8c .. 8c + 8 lie below n.
        unsafe { bits_group(pc, 8 * c, k, &mut acc) };
    }
    if full * 8 < n {
        // The last partial group, zero-padded, so that every load reads 8
        // values.
        let tail: [[f64; 8]; B] =
            std::array::from_fn(|b| std::array::from_fn(|l| cont[j0 + b].get(8 * full + l).copied().unwrap_or(0.0)));
        let k: [u8; A] = std::array::from_fn(|a| bins[i0 + a][full]);
        // SAFETY: the padded copies hold 8 values each.
        unsafe { bits_group(tail.each_ref().map(|t| t.as_ptr()), 0, k, &mut acc) };
    }
    for a in 0..A {
        for b in 0..B {
            // SAFETY: four f64 lanes are 32 bytes.
            let v: [f64; 4] = unsafe { std::mem::transmute(acc[a][b]) };
            out[(i0 + a) * nc + j0 + b] = v.iter().sum();
        }
    }
}

/// Adds the 8 rows at offset `at` of a tile's float columns to its sums
/// where the bit columns' bytes `k` have the row's bit set.
///
/// # Safety
///
/// Every pointer reads 8 values from `at`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn bits_group<const A: usize, const B: usize>(
    pc: [*const f64; B],
    at: usize,
    k: [u8; A],
    acc: &mut [[__m256d; B]; A],
) {
    let kb: [__m256i; A] = std::array::from_fn(|a| _mm256_set1_epi64x(i64::from(k[a])));
    for h in 0..2 {
        let bits = lane_bits(h);
        // SAFETY: the caller's: 8 values from `at`.
        let x: [__m256d; B] = std::array::from_fn(|b| unsafe { _mm256_loadu_pd(pc[b].add(at + 4 * h)) });
        for a in 0..A {
            let m = lane_mask(kb[a], bits);
            for b in 0..B {
                acc[a][b] = _mm256_add_pd(acc[a][b], _mm256_and_pd(x[b], m));
            }
        }
    }
}

/// `stats::portable::rows::gram_lower_cols` on 256-bit vectors, the same
/// bits: row `r` stays in lane `r % 8` (the low four lanes in one
/// register, the high four in another), each product is the same
/// multiply-add (`(w·x_i)·x_j + acc`), and the lanes are added by
/// [`reduce8`]. Tiles of 2 × 2 columns: eight sums and four values fill
/// twelve of the sixteen registers.
///
/// # Safety
///
/// The CPU must have AVX2 and FMA (a `crate::isa::Avx2` token proves it);
/// the slice lengths are checked (`assert!`).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gram_lower_cols_avx2(
    cols: &[&[f64]],
    n: usize,
    mask: Option<&[u8]>,
    weights: Option<&[f64]>,
    out: &mut [f64],
) {
    assert!(weights.is_none_or(|w| w.len() >= n));
    let m = cols.len();
    assert!(cols.iter().all(|c| c.len() >= n) && out.len() >= m * m);
    for i0 in (0..m).step_by(2) {
        for j0 in (0..=i0).step_by(2) {
            let (a, b) = ((m - i0).min(2), (m - j0).min(2));
            macro_rules! tile {
                // SAFETY: the lengths are checked above.
                ($x:literal, $y:literal) => {
                    unsafe {
                        if i0 == j0 {
                            tile_gram::<$x, $y, true>(cols, n, mask, weights, i0, j0, out)
                        } else {
                            tile_gram::<$x, $y, false>(cols, n, mask, weights, i0, j0, out)
                        }
                    }
                };
            }
            match (a, b) {
                (1, 1) => tile!(1, 1),
                (1, 2) => tile!(1, 2),
                (2, 1) => tile!(2, 1),
                (2, 2) => tile!(2, 2),
                _ => unreachable!("tiles are at most 2 × 2"),
            }
        }
    }
}

/// The sums of a tile of [`gram_lower_cols_avx2`]: per pair of columns,
/// lanes 0–3 and 4–7.
type GramTile<const A: usize, const B: usize> = [[[__m256d; 2]; B]; A];

/// One tile of [`gram_lower_cols_avx2`] (`DIAG`: a tile on the diagonal,
/// whose products above it are not needed).
#[inline]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_gram<const A: usize, const B: usize, const DIAG: bool>(
    cols: &[&[f64]],
    n: usize,
    mask: Option<&[u8]>,
    weights: Option<&[f64]>,
    i0: usize,
    j0: usize,
    out: &mut [f64],
) {
    let m = cols.len();
    let full = n / 8;
    let mut acc: GramTile<A, B> = [[[_mm256_setzero_pd(); 2]; B]; A];
    let pi: [*const f64; A] = std::array::from_fn(|a| cols[i0 + a].as_ptr());
    let pj: [*const f64; B] = std::array::from_fn(|b| cols[j0 + b].as_ptr());
    let pw = weights.map(|w| w.as_ptr());
    // SAFETY (the loops): rows 8c .. 8c + 8 lie below n for c < full.
    match mask {
        None => {
            for c in 0..full {
                unsafe { gram_group::<A, B, DIAG, false>(pi, pj, pw, 8 * c, 0xff, i0, j0, &mut acc) };
            }
        }
        Some(mask) => {
            for c in 0..full {
                unsafe { gram_group::<A, B, DIAG, true>(pi, pj, pw, 8 * c, mask[c], i0, j0, &mut acc) };
            }
        }
    }
    if full * 8 < n {
        // The last partial group, zero-padded, so that every load reads 8
        // values.
        let pad = |col: &[f64]| -> [f64; 8] { std::array::from_fn(|l| col.get(8 * full + l).copied().unwrap_or(0.0)) };
        let ti: [[f64; 8]; A] = std::array::from_fn(|a| pad(cols[i0 + a]));
        let tj: [[f64; 8]; B] = std::array::from_fn(|b| pad(cols[j0 + b]));
        let tw = weights.map(pad);
        let (pi, pj) = (ti.each_ref().map(|t| t.as_ptr()), tj.each_ref().map(|t| t.as_ptr()));
        let k = row_mask(mask, full, n);
        // SAFETY: the padded copies hold 8 values each.
        unsafe { gram_group::<A, B, DIAG, true>(pi, pj, tw.as_ref().map(|t| t.as_ptr()), 0, k, i0, j0, &mut acc) };
    }
    for a in 0..A {
        for b in 0..B {
            let (i, j) = (i0 + a, j0 + b);
            if i >= j {
                // SAFETY: two vectors of four f64 are eight f64.
                let lanes: [f64; 8] = unsafe { std::mem::transmute(acc[a][b]) };
                out[j * m + i] = reduce8(lanes);
            }
        }
    }
}

/// Adds the 8 rows at offset `at` of a tile's columns (`MASKED`: zero
/// where the row-mask byte `k` has the row's bit clear) to its sums.
///
/// # Safety
///
/// Every pointer reads 8 values from `at`.
#[inline]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn gram_group<const A: usize, const B: usize, const DIAG: bool, const MASKED: bool>(
    pi: [*const f64; A],
    pj: [*const f64; B],
    pw: Option<*const f64>,
    at: usize,
    k: u8,
    i0: usize,
    j0: usize,
    acc: &mut GramTile<A, B>,
) {
    let kb = _mm256_set1_epi64x(i64::from(k));
    for h in 0..2 {
        let bits = lane_bits(h);
        let load = |p: *const f64| -> __m256d {
            // SAFETY: the caller's: 8 values from `at`.
            let v = unsafe { _mm256_loadu_pd(p.add(at + 4 * h)) };
            if MASKED {
                _mm256_and_pd(v, lane_mask(kb, bits))
            } else {
                v
            }
        };
        let mut xi: [__m256d; A] = std::array::from_fn(|a| load(pi[a]));
        if let Some(pw) = pw {
            let wv = load(pw);
            for x in &mut xi {
                *x = _mm256_mul_pd(*x, wv);
            }
        }
        for b in 0..B {
            let xj = load(pj[b]);
            for a in 0..A {
                if !DIAG || i0 + a >= j0 + b {
                    acc[a][b][h] = _mm256_fmadd_pd(xi[a], xj, acc[a][b][h]);
                }
            }
        }
    }
}

/// Columns [`leverages_avx2`] handles (more: the portable kernel).
pub const LEVERAGE_COLS: usize = 15;

/// `stats::portable::rows::leverages` on 256-bit vectors, the same bits:
/// per row `h = 2·Σ_j x_j (½B_jj x_j + T_j + Σ_{i>j} B_ji x_i) + T₀`
/// with the same multiply-adds in the same order, four rows at a time. The
/// rows' pattern-table entries (`T`) are loaded as rows and transposed
/// (4 × 4 blocks) instead of gathered lane by lane.
///
/// # Safety
///
/// The CPU must have AVX2 and FMA (a `crate::isa::Avx2` token proves it);
/// the slice lengths are checked (`assert!`), and every pattern indexes a
/// row of `table` (`u8` patterns, 256 rows).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn leverages_avx2(
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
    let stride = crate::stats::patterns::table_width(nc) * 8;
    assert!(nc <= LEVERAGE_COLS && cols.iter().all(|c| c.len() >= n) && bk.len() >= m * m && nc <= m);
    assert!(table.len() >= 256 * stride && patterns.len() >= n.div_ceil(8) * 8 && h.len() >= n.div_ceil(8) * 8);
    let coef = |j: usize, l: usize| if l == j { 0.5 * bk[j * m + j] } else { bk[j * m + l] };
    let blocks = (nc + 1).div_ceil(4);
    let full = n / 8;
    let zero = _mm256_setzero_pd();
    // The last partial group, zero-padded, so that every load reads 8
    // values.
    let tail: [[f64; 8]; LEVERAGE_COLS] = std::array::from_fn(|j| {
        std::array::from_fn(|l| cols.get(j).and_then(|c| c.get(8 * full + l)).copied().unwrap_or(0.0))
    });
    for c in 0..n.div_ceil(8) {
        let (base, k) = (8 * c, row_mask(mask, c, n));
        if k == 0 {
            h[base..base + 8].fill(0.0);
            continue;
        }
        let kb = _mm256_set1_epi64x(i64::from(k));
        for half in 0..2 {
            let keep = lane_mask(kb, lane_bits(half));
            let mut x = [zero; LEVERAGE_COLS];
            for j in 0..nc {
                // SAFETY: 8 values from `base` lie below n (c < full), or
                // the padded copy holds them.
                let p = if c < full { unsafe { cols[j].as_ptr().add(base) } } else { tail[j].as_ptr() };
                x[j] = _mm256_and_pd(unsafe { _mm256_loadu_pd(p.add(4 * half)) }, keep);
            }
            // The four rows' table entries, transposed: t[q][l] = T_q of
            // row l.
            let rows: [usize; 4] = std::array::from_fn(|l| usize::from(patterns[base + 4 * half + l]) * stride);
            let mut t = [zero; 4 * LEVERAGE_COLS.div_ceil(4) + 4];
            for q in 0..blocks {
                // SAFETY: each row holds `stride ≥ 4 · blocks` values.
                let r: [__m256d; 4] =
                    std::array::from_fn(|l| unsafe { _mm256_loadu_pd(table.as_ptr().add(rows[l] + 4 * q)) });
                let (a, b) = (_mm256_unpacklo_pd(r[0], r[1]), _mm256_unpackhi_pd(r[0], r[1]));
                let (c2, d) = (_mm256_unpacklo_pd(r[2], r[3]), _mm256_unpackhi_pd(r[2], r[3]));
                t[4 * q] = _mm256_permute2f128_pd::<0x20>(a, c2);
                t[4 * q + 1] = _mm256_permute2f128_pd::<0x20>(b, d);
                t[4 * q + 2] = _mm256_permute2f128_pd::<0x31>(a, c2);
                t[4 * q + 3] = _mm256_permute2f128_pd::<0x31>(b, d);
            }
            let mut acc = zero;
            for j in 0..nc {
                let mut s = _mm256_fmadd_pd(_mm256_set1_pd(coef(j, j)), x[j], t[1 + j]);
                #[allow(clippy::needless_range_loop)] // (iterator adapters were not inlined)
                for i in j + 1..nc {
                    s = _mm256_fmadd_pd(_mm256_set1_pd(coef(j, i)), x[i], s);
                }
                acc = _mm256_fmadd_pd(x[j], s, acc);
            }
            let hv = _mm256_and_pd(_mm256_fmadd_pd(_mm256_set1_pd(2.0), acc, t[0]), keep);
            // SAFETY: `h` holds n rounded up to 8 values.
            unsafe { _mm256_storeu_pd(h.as_mut_ptr().add(base + 4 * half), hv) };
        }
    }
}

/// `stats::portable::scans::level_sums` on 256-bit vectors: per level, a
/// lane mask from one comparison of the (widened) codes, and masked
/// additions of each float column; a 0/1 column's sums are popcounts.
/// Exact where the first pass uses them (any order).
///
/// # Safety
///
/// The CPU must have AVX2 and POPCNT (a `crate::isa::Avx2` token proves
/// it); the slice lengths are checked (`assert!`).
#[target_feature(enable = "avx2,popcnt")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn level_sums_avx2(
    codes: &[u32],
    levels: usize,
    cols: &[LevelColumn<'_>],
    n: usize,
    mask: Option<&[u8]>,
    sums: &mut [f64],
    counts: &mut [u64],
) {
    let m = cols.len();
    assert_level_sums_args(codes, levels, cols, n, sums, counts);
    let zero = _mm256_setzero_pd();
    let mut acc = vec![zero; levels * m];
    let mut count = [_mm256_setzero_si256(); 16];
    let mut ones = vec![0u64; levels * m];
    let any_bits = cols.iter().any(|c| matches!(c, LevelColumn::Bits(_)));
    let full = n / 8;
    let mut x = vec![[zero; 2]; m];
    let level: [__m256i; 16] = std::array::from_fn(|l| _mm256_set1_epi64x(l as i64));
    let level32: [__m256i; 16] = std::array::from_fn(|l| _mm256_set1_epi32(l as i32));
    for c in 0..n.div_ceil(8) {
        let base = 8 * c;
        let k = row_mask(mask, c, n);
        if k == 0 {
            continue;
        }
        // The group's codes and values (the last group zero-padded; its
        // rows past n are dropped by `k`).
        let code: [u32; 8] = if c < full {
            codes[base..base + 8].try_into().expect("8 rows")
        } else {
            std::array::from_fn(|l| codes.get(base + l).copied().unwrap_or(u32::MAX))
        };
        // SAFETY: 8 values.
        let code8 = unsafe { _mm256_loadu_si256(code.as_ptr().cast()) };
        let halves = [
            _mm256_cvtepu32_epi64(_mm256_castsi256_si128(code8)),
            _mm256_cvtepu32_epi64(_mm256_extracti128_si256::<1>(code8)),
        ];
        let kb = _mm256_set1_epi64x(i64::from(k));
        let keep = [lane_mask(kb, lane_bits(0)), lane_mask(kb, lane_bits(1))];
        for (v, col) in x.iter_mut().zip(cols) {
            if let LevelColumn::F64(col) = col {
                let vals: [f64; 8] = if c < full {
                    col[base..base + 8].try_into().expect("8 rows")
                } else {
                    std::array::from_fn(|l| col.get(base + l).copied().unwrap_or(0.0))
                };
                // SAFETY: 8 values.
                unsafe {
                    v[0] = _mm256_and_pd(_mm256_loadu_pd(vals.as_ptr()), keep[0]);
                    v[1] = _mm256_and_pd(_mm256_loadu_pd(vals.as_ptr().add(4)), keep[1]);
                }
            }
        }
        for l in 0..levels {
            let on = [
                _mm256_castsi256_pd(_mm256_cmpeq_epi64(halves[0], level[l])),
                _mm256_castsi256_pd(_mm256_cmpeq_epi64(halves[1], level[l])),
            ];
            let on = [_mm256_and_pd(on[0], keep[0]), _mm256_and_pd(on[1], keep[1])];
            // A true lane is −1 as an integer.
            count[l] = _mm256_sub_epi64(count[l], _mm256_castpd_si256(on[0]));
            count[l] = _mm256_sub_epi64(count[l], _mm256_castpd_si256(on[1]));
            let on_bits = if any_bits {
                (_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(code8, level32[l]))) as u8) & k
            } else {
                0
            };
            for (j, col) in cols.iter().enumerate() {
                match col {
                    LevelColumn::F64(_) => {
                        let a = &mut acc[l * m + j];
                        *a = _mm256_add_pd(*a, _mm256_and_pd(x[j][0], on[0]));
                        *a = _mm256_add_pd(*a, _mm256_and_pd(x[j][1], on[1]));
                    }
                    LevelColumn::Bits(b) => ones[l * m + j] += u64::from((on_bits & b[c]).count_ones()),
                }
            }
        }
    }
    for l in 0..levels {
        // SAFETY: four i64 lanes are 32 bytes.
        let cl: [u64; 4] = unsafe { std::mem::transmute(count[l]) };
        counts[l] = cl.iter().sum();
        for (j, col) in cols.iter().enumerate() {
            sums[l * m + j] = match col {
                LevelColumn::F64(_) => {
                    // SAFETY: as above.
                    let v: [f64; 4] = unsafe { std::mem::transmute(acc[l * m + j]) };
                    v.iter().sum()
                }
                LevelColumn::Bits(_) => ones[l * m + j] as f64,
            };
        }
    }
}
