//! Explicit-SIMD kernels for the hot loops: column scans and 0/1 tests, the
//! exact gram product read in place from Arrow buffers with dropped rows
//! masked out (0/1 columns as bits: masked sums and popcounts), and the
//! second pass's residuals, their moments, HC2/HC3 weights and weighted
//! grams. The robust second pass's row patterns are in [`patterns`]; the
//! in-place first pass that calls these is [`crate::stats::inplace`].
//!
//! The compilers' auto-vectoriser split the five independent lane
//! reductions of the portable scan into 128-bit pieces, which made the scan
//! cost as much as the gram product; a general gemm (faer) packs its
//! operands first, which for a 4096 × 15 block cost twice the tiles here.
//!
//! Every function here is `unsafe` only for its target features: callers
//! check the CPU first. Loads past a column's end are masked off.

pub mod patterns;

use crate::bits::row_mask;
use crate::stats::columns::{assert_level_sums_args, ColumnStats, LevelColumn};
use crate::stats::dyadic::ColumnScan;
use crate::stats::portable::reduce8;
use crate::stats::portable::rows::FlagTerms;
use crate::stats::portable::scans::HALVES_STEP;
use std::arch::x86_64::*;

/// `$tile!(A, B)` for the tile shape `($a, $b)`, each 1 to 4: const
/// generics need literals.
macro_rules! tile_shape {
    ($a:expr, $b:expr, $tile:ident) => {
        match ($a, $b) {
            (1, 1) => $tile!(1, 1),
            (1, 2) => $tile!(1, 2),
            (1, 3) => $tile!(1, 3),
            (1, 4) => $tile!(1, 4),
            (2, 1) => $tile!(2, 1),
            (2, 2) => $tile!(2, 2),
            (2, 3) => $tile!(2, 3),
            (2, 4) => $tile!(2, 4),
            (3, 1) => $tile!(3, 1),
            (3, 2) => $tile!(3, 2),
            (3, 3) => $tile!(3, 3),
            (3, 4) => $tile!(3, 4),
            (4, 1) => $tile!(4, 1),
            (4, 2) => $tile!(4, 2),
            (4, 3) => $tile!(4, 3),
            (4, 4) => $tile!(4, 4),
            _ => unreachable!("tiles are 1..=4 columns wide"),
        }
    };
}

/// Values past 2⁵² are whole numbers; `roundscale` handles them, and
/// the exactness bound refuses them anyway.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn scan_avx512(col: &[f64]) -> ColumnScan {
    let zero = _mm512_setzero_pd();
    let one = _mm512_set1_pd(1.0);
    let (mut e0, mut e1, mut mx, mut sum, mut nz) = (zero, zero, zero, zero, zero);
    let mut chunks = col.chunks_exact(8);
    for c in &mut chunks {
        // SAFETY: `c` holds 8 values.
        let v = unsafe { _mm512_loadu_pd(c.as_ptr()) };
        let a = _mm512_abs_pd(v);
        let a2 = _mm512_add_pd(a, a);
        let t = _mm512_roundscale_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(a);
        let t2 = _mm512_roundscale_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(a2);
        e0 = _mm512_add_pd(e0, _mm512_sub_pd(a, t));
        e1 = _mm512_add_pd(e1, _mm512_sub_pd(a2, t2));
        mx = _mm512_max_pd(mx, a);
        sum = _mm512_add_pd(sum, v);
        let k = _mm512_cmp_pd_mask::<_CMP_NEQ_UQ>(v, zero);
        nz = _mm512_mask_add_pd(nz, k, nz, one);
    }
    // SAFETY: a vector of eight f64 is eight f64.
    let lanes = |x: __m512d| -> [f64; 8] { unsafe { std::mem::transmute(x) } };
    let (e0, e1, mx, sum, nz) = (lanes(e0), lanes(e1), lanes(mx), lanes(sum), lanes(nz));
    ColumnScan::from_lanes(col, chunks.remainder(), [e0, e1, mx, sum, nz], false)
}

/// [`scan_avx512`] of a column known to hold whole numbers.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn scan_integral_avx512(col: &[f64]) -> ColumnScan {
    let zero = _mm512_setzero_pd();
    let one = _mm512_set1_pd(1.0);
    let (mut mx, mut sum, mut nz) = (zero, zero, zero);
    let mut chunks = col.chunks_exact(8);
    for c in &mut chunks {
        // SAFETY: `c` holds 8 values.
        let v = unsafe { _mm512_loadu_pd(c.as_ptr()) };
        mx = _mm512_max_pd(mx, _mm512_abs_pd(v));
        sum = _mm512_add_pd(sum, v);
        let k = _mm512_cmp_pd_mask::<_CMP_NEQ_UQ>(v, zero);
        nz = _mm512_mask_add_pd(nz, k, nz, one);
    }
    // SAFETY: a vector of eight f64 is eight f64.
    let lanes = |x: __m512d| -> [f64; 8] { unsafe { std::mem::transmute(x) } };
    ColumnScan::from_lanes(col, chunks.remainder(), [[0.0; 8], [0.0; 8], lanes(mx), lanes(sum), lanes(nz)], true)
}

/// Lower triangle of `ZᵀZ` (`out[j·m + i]`, `i ≥ j`) of a column-major
/// `n × m` matrix, for the exact path only: every partial sum is exact
/// there, so any order of summation gives the same bits as faer's.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn gram_lower_avx512(z: &[f64], n: usize, m: usize, out: &mut [f64]) {
    let cols: Vec<&[f64]> = (0..m).map(|j| &z[j * n..(j + 1) * n]).collect();
    // SAFETY: the caller checked the CPU; every column holds n rows.
    unsafe { gram_lower_cols_avx512(&cols, n, None, None, out) }
}

/// [`scan_avx512`] of the kept rows of an `f64` column (dropped rows
/// read as zeros), testing whole numbers only: returns whether some kept
/// value is not a whole number (or is NaN), and the magnitude, sum and
/// non-zero count. (Moving a mask to an integer register each 8 rows was
/// slower on Zen 4 than counting in a vector.)
///
/// # Safety
///
/// The CPU must have AVX-512F, AVX-512DQ (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f,avx512dq")]
pub unsafe fn scan_masked_avx512(col: &[f64], mask: Option<&[u8]>) -> (bool, ColumnStats) {
    let n = col.len();
    let zero = _mm512_setzero_pd();
    let one = _mm512_set1_pd(1.0);
    let (mut fraction, mut mx, mut mn, mut sum, mut nz) = (zero, zero, zero, zero, zero);
    for c in 0..n.div_ceil(8) {
        let k = row_mask(mask, c, n);
        // SAFETY: the mask limits the load to rows below n.
        let v = unsafe { _mm512_maskz_loadu_pd(k, col.as_ptr().add(8 * c)) };
        let t = _mm512_roundscale_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
        // v − trunc(v) has bits set for a fraction, and for NaN or ±∞.
        fraction = _mm512_or_pd(fraction, _mm512_sub_pd(v, t));
        mx = _mm512_max_pd(mx, v);
        mn = _mm512_min_pd(mn, v);
        sum = _mm512_add_pd(sum, v);
        let nzk = _mm512_cmp_pd_mask::<_CMP_NEQ_UQ>(v, zero);
        nz = _mm512_mask_add_pd(nz, nzk, nz, one);
    }
    // `binary` also needs whole numbers, which the caller checks.
    let (max, min) = (_mm512_reduce_max_pd(mx), _mm512_reduce_min_pd(mn));
    (
        _mm512_test_epi64_mask(_mm512_castpd_si512(fraction), _mm512_castpd_si512(fraction)) != 0,
        ColumnStats {
            max_abs: max.max(-min).abs(),
            sum: _mm512_reduce_add_pd(sum),
            nonzero: _mm512_reduce_add_pd(nz),
            binary: max <= 1.0 && min >= 0.0,
        },
    )
}

/// Whether some kept value is not a multiple of ½ (or is NaN or ±∞).
/// Fractions are OR-ed together (a one-cycle chain, where a sum would
/// wait on the adder's latency every 8 rows).
///
/// # Safety
///
/// The CPU must have AVX-512F, AVX-512DQ (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f,avx512dq")]
pub unsafe fn halves_masked_avx512(col: &[f64], mask: Option<&[u8]>) -> bool {
    let n = col.len();
    let mut f = _mm512_setzero_pd();
    for c in 0..n.div_ceil(8) {
        let k = row_mask(mask, c, n);
        // SAFETY: the mask limits the load to rows below n.
        let v = unsafe { _mm512_maskz_loadu_pd(k, col.as_ptr().add(8 * c)) };
        let v2 = _mm512_add_pd(v, v);
        let t2 = _mm512_roundscale_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v2);
        f = _mm512_or_pd(f, _mm512_sub_pd(v2, t2));
        if c % HALVES_STEP == HALVES_STEP - 1 {
            let f = _mm512_castpd_si512(f);
            if _mm512_test_epi64_mask(f, f) != 0 {
                return true;
            }
        }
    }
    let f = _mm512_castpd_si512(f);
    _mm512_test_epi64_mask(f, f) != 0
}

/// The kept rows of an `i64` column converted to `f64` into `out`
/// (`n` rounded up to 8 values; dropped rows as zeros), with their
/// magnitude, sum and non-zero count. Integers past 2⁵³ round, as any
/// conversion does. (0/1 columns never come here: they stay bits, see
/// [`binary_bits_i64_avx512`].)
///
/// # Safety
///
/// The CPU must have AVX-512F, AVX-512DQ (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f,avx512dq")]
pub unsafe fn convert_i64_masked_avx512(col: &[i64], mask: Option<&[u8]>, out: &mut [f64]) -> ColumnStats {
    let n = col.len();
    assert!(out.len() >= n.div_ceil(8) * 8);
    let zero = _mm512_setzero_pd();
    let one = _mm512_set1_pd(1.0);
    let (mut mx, mut mn, mut sum, mut nz) = (zero, zero, zero, zero);
    let dst = out.as_mut_ptr();
    for c in 0..n.div_ceil(8) {
        let k = row_mask(mask, c, n);
        // SAFETY: the mask limits the load to rows below n.
        let v = _mm512_cvtepi64_pd(unsafe { _mm512_maskz_loadu_epi64(k, col.as_ptr().add(8 * c)) });
        // SAFETY: `out` has room for n rounded up to 8.
        unsafe { _mm512_storeu_pd(dst.add(8 * c), v) };
        mx = _mm512_max_pd(mx, _mm512_abs_pd(v));
        mn = _mm512_min_pd(mn, v);
        sum = _mm512_add_pd(sum, v);
        let nzk = _mm512_cmp_pd_mask::<_CMP_NEQ_UQ>(v, zero);
        nz = _mm512_mask_add_pd(nz, nzk, nz, one);
    }
    let max_abs = _mm512_reduce_max_pd(mx);
    ColumnStats {
        max_abs,
        sum: _mm512_reduce_add_pd(sum),
        nonzero: _mm512_reduce_add_pd(nz),
        // Whole numbers in [0, 1].
        binary: max_abs <= 1.0 && _mm512_reduce_min_pd(mn) >= 0.0,
    }
}

/// An `i64` column converted to `f64` into `out` (`n` rounded up to 8
/// values), nothing else.
///
/// # Safety
///
/// The CPU must have AVX-512F, AVX-512DQ (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f,avx512dq")]
pub unsafe fn convert_i64_avx512(col: &[i64], out: &mut [f64]) {
    let n = col.len();
    assert!(out.len() >= n.div_ceil(8) * 8);
    for c in 0..n.div_ceil(8) {
        let k = row_mask(None, c, n);
        // SAFETY: the mask limits the load to rows below n; `out` has room
        // for n rounded up to 8.
        unsafe {
            let v = _mm512_cvtepi64_pd(_mm512_maskz_loadu_epi64(k, col.as_ptr().add(8 * c)));
            _mm512_storeu_pd(out.as_mut_ptr().add(8 * c), v);
        }
    }
}

/// The non-zero bits of the kept rows of a column, a byte per 8 rows
/// (for a 0/1 column: the column).
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn nonzero_bits_masked_avx512(col: &[f64], mask: Option<&[u8]>, bits: &mut [u8]) {
    let n = col.len();
    assert!(bits.len() >= n.div_ceil(8));
    let zero = _mm512_setzero_pd();
    for (c, b) in bits.iter_mut().enumerate().take(n.div_ceil(8)) {
        let k = row_mask(mask, c, n);
        // SAFETY: the mask limits the load to rows below n.
        let v = unsafe { _mm512_maskz_loadu_pd(k, col.as_ptr().add(8 * c)) };
        *b = _mm512_cmp_pd_mask::<_CMP_NEQ_UQ>(v, zero);
    }
}

/// Whether every kept value of an `i64` column is 0 or 1; if so its bits
/// (a byte per 8 rows, dropped rows and rows past `n` clear) are in
/// `bits`, and the column needs no conversion: the kernels below read a
/// 0/1 column as a mask. Values other than 0 and 1 are found by OR-ing
/// every value but its lowest bit, tested every 64 rows.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn binary_bits_i64_avx512(col: &[i64], mask: Option<&[u8]>, bits: &mut [u8]) -> bool {
    let n = col.len();
    let groups = n.div_ceil(8);
    assert!(bits.len() >= groups);
    let high = _mm512_set1_epi64(!1);
    let mut other = _mm512_setzero_si512();
    let ptr = col.as_ptr();
    let full = n / 8;
    for c in 0..groups {
        let k = if c < full { mask.map_or(0xff, |m| m[c]) } else { row_mask(mask, c, n) };
        // SAFETY: the mask limits the load to rows below n.
        let v = unsafe { _mm512_maskz_loadu_epi64(k, ptr.add(8 * c)) };
        other = _mm512_ternarylogic_epi64::<0xF8>(other, v, high);
        // SAFETY: `bits` holds a byte per 8 rows.
        unsafe { *bits.get_unchecked_mut(c) = _mm512_test_epi64_mask(v, v) };
        if c % 8 == 7 && _mm512_test_epi64_mask(other, other) != 0 {
            return false;
        }
    }
    _mm512_test_epi64_mask(other, other) == 0
}

/// The bits of the kept rows whose code is `code` (a byte per 8 rows;
/// clear on dropped rows and past `n`): a level's indicator column.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn equal_bits_u32_avx512(codes: &[u32], code: u32, n: usize, mask: Option<&[u8]>, bits: &mut [u8]) {
    assert!(codes.len() >= n && bits.len() >= n.div_ceil(8));
    let want = _mm512_set1_epi32(code as i32);
    let pairs = n / 16;
    for b in 0..pairs {
        // SAFETY: rows 16b..16b+16 lie below n.
        let v = unsafe { _mm512_loadu_si512(codes.as_ptr().add(16 * b).cast()) };
        let k = mask.map_or(0xffff, |m| u16::from_le_bytes([m[2 * b], m[2 * b + 1]]));
        let eq = _mm512_mask_cmpeq_epi32_mask(k, v, want).to_le_bytes();
        bits[2 * b..2 * b + 2].copy_from_slice(&eq);
    }
    for r in 16 * pairs..n {
        let kept = crate::bits::is_kept(mask, r);
        if r % 8 == 0 {
            bits[r / 8] = 0;
        }
        bits[r / 8] |= u8::from(kept && codes[r] == code) << (r % 8);
    }
}

/// The products of 0/1 columns given as bits (`bins`) with `f64` columns
/// (`cont`, each of `n` rows read where the row mask keeps them):
/// `out[a·nc + b] = Σ_r bin_ar cont_br`.
///
/// A product with a 0/1 column is a masked sum, so it needs no multiply
/// (the same bits as multiplying by the 0/1 value). Bits are clear on
/// dropped rows.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn bits_by_cols_avx512(bins: &[&[u8]], cont: &[&[f64]], n: usize, mask: Option<&[u8]>, out: &mut [f64]) {
    let (nb, nc) = (bins.len(), cont.len());
    assert!(bins.iter().all(|b| b.len() >= n.div_ceil(8)) && cont.iter().all(|c| c.len() >= n));
    assert!(out.len() >= nb * nc);
    for i0 in (0..nb).step_by(4) {
        for j0 in (0..nc).step_by(4) {
            let (a, b) = ((nb - i0).min(4), (nc - j0).min(4));
            macro_rules! tile {
                // SAFETY: the tile's columns hold n rows.
                ($x:literal, $y:literal) => {
                    unsafe { tile_bits::<$x, $y>(bins, cont, n, mask, i0, j0, out) }
                };
            }
            tile_shape!(a, b, tile);
        }
    }
}

/// Bit columns of a tile whose masked sums go to the multiply-add units
/// (x·1 + acc, the same bits as x + acc) rather than the adders: 2 of 4
/// measured 4% faster than none on the benchmark chunk (Zen 4).
const FMA_ROWS: usize = 2;

/// One tile of [`bits_by_cols_avx512`]: `A` bit columns by `B` `f64` ones.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_bits<const A: usize, const B: usize>(
    bins: &[&[u8]],
    cont: &[&[f64]],
    n: usize,
    mask: Option<&[u8]>,
    i0: usize,
    j0: usize,
    out: &mut [f64],
) {
    let nc = cont.len();
    let pi: [*const u8; A] = std::array::from_fn(|a| bins[i0 + a].as_ptr());
    let pj: [*const f64; B] = std::array::from_fn(|b| cont[j0 + b].as_ptr());
    // Opaque, or the compiler folds x·1 + acc back into an addition.
    let one = std::hint::black_box(_mm512_set1_pd(1.0));
    let mut acc = [[_mm512_setzero_pd(); B]; A];
    for c in 0..n.div_ceil(8) {
        let k = row_mask(mask, c, n);
        // SAFETY: the mask limits the loads to rows below n; each bit
        // column holds a byte per 8 rows.
        let xj: [__m512d; B] = std::array::from_fn(|b| unsafe { _mm512_maskz_loadu_pd(k, pj[b].add(8 * c)) });
        let ki: [__mmask8; A] = std::array::from_fn(|a| unsafe { *pi[a].add(c) });
        for a in 0..A.min(FMA_ROWS) {
            for b in 0..B {
                acc[a][b] = _mm512_mask3_fmadd_pd(xj[b], one, acc[a][b], ki[a]);
            }
        }
        for a in A.min(FMA_ROWS)..A {
            for b in 0..B {
                acc[a][b] = _mm512_mask_add_pd(acc[a][b], ki[a], acc[a][b], xj[b]);
            }
        }
    }
    for a in 0..A {
        for b in 0..B {
            out[(i0 + a) * nc + j0 + b] = _mm512_reduce_add_pd(acc[a][b]);
        }
    }
}

/// [`gram_lower_avx512`] of columns given one by one (each of `n`
/// rows), reading only the kept rows (`mask`; the others as zeros), in
/// tiles of up to 4 × 4 columns.
///
/// With `weights`, the rows are weighted: `Σ w_r x_ri x_rj` (the meats of
/// the robust covariances).
///
/// Wide blocks (many columns, as a model of many real columns cut into
/// slices makes) are swept in row blocks of 256 rows, every
/// tile's accumulators kept between blocks: a block of every column stays
/// in the L2 cache, where one sweep over all rows streamed each tile's
/// columns from L3. Each lane still adds its rows in order, so the sums
/// are the same bits either way.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn gram_lower_cols_avx512(
    cols: &[&[f64]],
    n: usize,
    mask: Option<&[u8]>,
    weights: Option<&[f64]>,
    out: &mut [f64],
) {
    assert!(weights.is_none_or(|w| w.len() >= n));
    let m = cols.len();
    assert!(cols.iter().all(|c| c.len() >= n) && out.len() >= m * m);
    let blocks: Vec<(usize, usize)> = (0..m).step_by(4).map(|s| (s, (m - s).min(4))).collect();
    let tiles: Vec<(usize, usize)> = (0..blocks.len()).flat_map(|bi| (0..=bi).map(move |bj| (bi, bj))).collect();
    let chunks = n.div_ceil(8);
    let step = if m >= WIDE { ROW_BLOCK / 8 } else { chunks.max(1) };
    let mut acc = vec![_mm512_setzero_pd(); 16 * tiles.len()];
    for c0 in (0..chunks).step_by(step) {
        let rows = c0..(c0 + step).min(chunks);
        for (t, &(bi, bj)) in tiles.iter().enumerate() {
            let ((i0, a), (j0, b)) = (blocks[bi], blocks[bj]);
            let acc: &mut [__m512d; 16] = (&mut acc[16 * t..16 * t + 16]).try_into().expect("16 accumulators");
            macro_rules! tile {
                // SAFETY: the tile's columns hold n rows.
                ($x:literal, $y:literal) => {
                    unsafe {
                        if bi == bj {
                            tile_cols::<$x, $y, true>(cols, n, mask, weights, i0, j0, rows.clone(), acc)
                        } else {
                            tile_cols::<$x, $y, false>(cols, n, mask, weights, i0, j0, rows.clone(), acc)
                        }
                    }
                };
            }
            tile_shape!(a, b, tile);
        }
    }
    for (t, &(bi, bj)) in tiles.iter().enumerate() {
        let ((i0, a), (j0, b)) = (blocks[bi], blocks[bj]);
        for x in 0..a {
            for y in 0..b {
                let (i, j) = (i0 + x, j0 + y);
                if i >= j {
                    out[j * m + i] = _mm512_reduce_add_pd(acc[16 * t + 4 * x + y]);
                }
            }
        }
    }
}

/// Blocks of at least this many columns are swept in row blocks.
const WIDE: usize = 24;

/// Rows per block of a wide sweep: 256 rows of 300 columns are 600 KiB,
/// within a core's L2 cache.
const ROW_BLOCK: usize = 256;

#[inline]
#[target_feature(enable = "avx512f")]
/// Chunks of 8 rows `rows` of the tile at columns `i0..i0 + A` × `j0..j0 +
/// B` added to its accumulators (`acc[4a + b]`). `DIAG`: the tile
/// straddles the diagonal (`i0 == j0`); only its lower triangle is
/// computed.
#[allow(clippy::too_many_arguments)]
unsafe fn tile_cols<const A: usize, const B: usize, const DIAG: bool>(
    cols: &[&[f64]],
    n: usize,
    mask: Option<&[u8]>,
    weights: Option<&[f64]>,
    i0: usize,
    j0: usize,
    rows: std::ops::Range<usize>,
    acc_out: &mut [__m512d; 16],
) {
    let pi: [*const f64; A] = std::array::from_fn(|a| cols[i0 + a].as_ptr());
    let pj: [*const f64; B] = std::array::from_fn(|b| cols[j0 + b].as_ptr());
    let mut acc: [[__m512d; B]; A] = std::array::from_fn(|a| std::array::from_fn(|b| acc_out[4 * a + b]));
    for c in rows {
        let k = row_mask(mask, c, n);
        // SAFETY: the mask limits the loads to rows below n.
        let mut xi: [__m512d; A] = std::array::from_fn(|a| unsafe { _mm512_maskz_loadu_pd(k, pi[a].add(8 * c)) });
        if let Some(w) = weights {
            // SAFETY: as above.
            let wv = unsafe { _mm512_maskz_loadu_pd(k, w.as_ptr().add(8 * c)) };
            for x in &mut xi {
                *x = _mm512_mul_pd(*x, wv);
            }
        }
        for b in 0..B {
            // SAFETY: as above.
            let xj = unsafe { _mm512_maskz_loadu_pd(k, pj[b].add(8 * c)) };
            for a in 0..A {
                if !DIAG || a >= b {
                    acc[a][b] = _mm512_fmadd_pd(xi[a], xj, acc[a][b]);
                }
            }
        }
    }
    for a in 0..A {
        for b in 0..B {
            acc_out[4 * a + b] = acc[a][b];
        }
    }
}

/// Residuals `e = y − offset − β₀ − Σ_j β_j x_j − Σ_a γ_a f_a` of the
/// kept rows (the offset: the fitted part of categorical terms; `β₀` the
/// intercept, zero without; the flags' part `Σ_a γ_a f_a` looked up by
/// each row's pattern, see [`FlagTerms`]): into `full` at their row
/// positions (zero on dropped rows; `n` rounded up to 8 values) and, in
/// row order without gaps, into `kept` (as many values as kept rows).
///
/// # Safety
///
/// The CPU must have AVX-512F, POPCNT (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f,popcnt")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn residuals_masked_avx512(
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
    let groups = n.div_ceil(8);
    let b0 = _mm512_set1_pd(intercept);
    let mut written = 0;
    // Four groups of 8 rows at a time: four independent chains of
    // multiply-adds instead of one (each residual's terms are still added
    // in the same order). Past the last group the masks are empty and the
    // addresses those of the last group, so no pointer leaves the slices.
    for c in (0..groups).step_by(4) {
        let g = (groups - c).min(4);
        let k: [__mmask8; 4] = std::array::from_fn(|i| if i < g { row_mask(mask, c + i, n) } else { 0 });
        let at: [usize; 4] = std::array::from_fn(|i| 8 * (c + i).min(groups - 1));
        // SAFETY (loads): the masks limit them to rows below n.
        let mut acc: [__m512d; 4] =
            std::array::from_fn(|i| _mm512_sub_pd(unsafe { _mm512_maskz_loadu_pd(k[i], y.as_ptr().add(at[i])) }, b0));
        if let Some(o) = offset {
            for i in 0..4 {
                acc[i] = _mm512_sub_pd(acc[i], unsafe { _mm512_maskz_loadu_pd(k[i], o.as_ptr().add(at[i])) });
            }
        }
        for (x, &b) in xs.iter().zip(beta) {
            let bv = _mm512_set1_pd(b);
            for i in 0..4 {
                let xv = unsafe { _mm512_maskz_loadu_pd(k[i], x.as_ptr().add(at[i])) };
                acc[i] = _mm512_fnmadd_pd(bv, xv, acc[i]);
            }
        }
        if let Some((patterns, terms)) = flags {
            // SAFETY: each table is 16 values; `patterns` holds 8 bytes per
            // group.
            let (lo, hi) = unsafe {
                (
                    [_mm512_loadu_pd(terms.lo.as_ptr()), _mm512_loadu_pd(terms.lo.as_ptr().add(8))],
                    [_mm512_loadu_pd(terms.hi.as_ptr()), _mm512_loadu_pd(terms.hi.as_ptr().add(8))],
                )
            };
            for i in 0..4 {
                let bytes = unsafe { _mm_loadl_epi64(patterns.as_ptr().add(at[i]).cast()) };
                let idx = _mm512_cvtepu8_epi64(bytes);
                let low = _mm512_permutex2var_pd(lo[0], idx, lo[1]);
                let high = _mm512_permutex2var_pd(hi[0], _mm512_srli_epi64::<4>(idx), hi[1]);
                acc[i] = _mm512_sub_pd(acc[i], _mm512_add_pd(low, high));
            }
        }
        for i in 0..g {
            let e = _mm512_maskz_mov_pd(k[i], acc[i]);
            let count = k[i].count_ones();
            // Compressed in a register, then stored: a compressing store to
            // memory is microcoded on Zen 4 (it was most of this kernel).
            let packed = _mm512_maskz_compress_pd(k[i], e);
            let first = ((1u16 << count) - 1) as __mmask8;
            // SAFETY: `full` holds n rounded up to 8 values; `kept` has room
            // for the popcount of this mask after the values before it.
            unsafe {
                _mm512_storeu_pd(full.as_mut_ptr().add(at[i]), e);
                _mm512_mask_storeu_pd(kept.as_mut_ptr().add(written), first, packed);
            }
            written += count as usize;
        }
    }
    written
}

/// Residual moments `Σ e, Σ e², Σ e³, Σ e⁴` and `Σ (e_t − e_{t−1})²` over
/// consecutive values of `e`, in eight lanes each (a fixed order: the same
/// bits for the same values).
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn residual_sums_avx512(e: &[f64]) -> ([f64; 4], f64) {
    let n = e.len();
    let zero = _mm512_setzero_pd();
    let (mut s1, mut s2, mut s3, mut s4, mut dw) = (zero, zero, zero, zero, zero);
    let p = e.as_ptr();
    for c in 0..n.div_ceil(8) {
        let left = n - 8 * c;
        let k: __mmask8 = if left >= 8 { 0xff } else { (1u8 << left) - 1 };
        // Differences with the next value: rows 8c..8c+7 against 8c+1..8c+8,
        // the last row of all having none.
        let kd: __mmask8 = if left > 8 { 0xff } else { k >> 1 };
        // SAFETY: the masks limit the loads to values below n.
        let (v, next) =
            unsafe { (_mm512_maskz_loadu_pd(k, p.add(8 * c)), _mm512_maskz_loadu_pd(kd, p.add(8 * c + 1))) };
        let v2 = _mm512_mul_pd(v, v);
        s1 = _mm512_add_pd(s1, v);
        s2 = _mm512_add_pd(s2, v2);
        s3 = _mm512_fmadd_pd(v2, v, s3);
        s4 = _mm512_fmadd_pd(v2, v2, s4);
        let d = _mm512_maskz_sub_pd(kd, next, v);
        dw = _mm512_fmadd_pd(d, d, dw);
    }
    let lanes = |v: __m512d| {
        let mut a = [0.0f64; 8];
        // SAFETY: `a` holds eight f64.
        unsafe { _mm512_storeu_pd(a.as_mut_ptr(), v) };
        reduce8(a)
    };
    ([lanes(s1), lanes(s2), lanes(s3), lanes(s4)], lanes(dw))
}

/// Kept rows on which a column is non-zero.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn count_nonzero_masked_avx512(col: &[f64], n: usize, mask: Option<&[u8]>) -> u64 {
    assert!(col.len() >= n);
    let zero = _mm512_setzero_pd();
    let one = _mm512_set1_pd(1.0);
    let mut count = zero;
    for c in 0..n.div_ceil(8) {
        let k = row_mask(mask, c, n);
        // SAFETY: the mask limits the load to rows below n.
        let v = unsafe { _mm512_maskz_loadu_pd(k, col.as_ptr().add(8 * c)) };
        let nz = _mm512_mask_cmp_pd_mask::<_CMP_NEQ_UQ>(k, v, zero);
        count = _mm512_mask_add_pd(count, nz, count, one);
    }
    _mm512_reduce_add_pd(count) as u64
}

/// HC2/HC3 row weights `w = e²/(1 − h)` (`squared`: `e²/(1 − h)²`), 0
/// where `1 − h ≤ 1e-10` (leverage 1 within rounding: 0/0); returns
/// whether any row has leverage 1. `e`, `h` and `w` hold the same number
/// of values, a multiple of 8.
///
/// # Safety
///
/// The CPU must have AVX-512F (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f")]
pub unsafe fn robust_weights_avx512(e: &[f64], h: &[f64], squared: bool, w: &mut [f64]) -> bool {
    assert!(e.len().is_multiple_of(8) && h.len() == e.len() && w.len() == e.len());
    let one = _mm512_set1_pd(1.0);
    let tiny = _mm512_set1_pd(1e-10);
    let mut lev: __mmask8 = 0;
    for c in 0..e.len() / 8 {
        // SAFETY: every slice holds 8 values past 8c.
        let (ev, hv) = unsafe { (_mm512_loadu_pd(e.as_ptr().add(8 * c)), _mm512_loadu_pd(h.as_ptr().add(8 * c))) };
        let d = _mm512_sub_pd(one, hv);
        let l = _mm512_cmp_pd_mask::<_CMP_LE_OQ>(d, tiny);
        lev |= l;
        let d = if squared { _mm512_mul_pd(d, d) } else { d };
        let wv = _mm512_maskz_div_pd(!l, _mm512_mul_pd(ev, ev), d);
        // SAFETY: as above.
        unsafe { _mm512_storeu_pd(w.as_mut_ptr().add(8 * c), wv) };
    }
    lev != 0
}

/// Per level `k < levels` of a factor's `codes` (at most 16 levels): the
/// kept rows' count (`counts[k]`) and, per column `j`, their sum
/// (`sums[k · cols + j]`). Sixteen rows at a time: each level's rows are a
/// mask from one comparison of the codes, and its sums masked additions,
/// so the work per row is a few vector operations per level instead of a
/// scattered addition per column. The sums are taken in lanes and added
/// up at the end: exact when the caller's exactness bound holds (as the
/// in-place kernels' sums are), in any order.
///
/// # Safety
///
/// The CPU must have AVX-512F, POPCNT (a `crate::isa::Avx512` token proves it); the
/// slice lengths are checked (`assert!`) where the caller passes them.
#[target_feature(enable = "avx512f,popcnt")]
pub unsafe fn level_sums_avx512(
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
    let mut acc = vec![_mm512_setzero_pd(); 2 * levels * m];
    let mut ones = vec![0u64; levels * m];
    let mut count = [0u64; 16];
    let mut x = vec![[_mm512_setzero_pd(); 2]; m];
    let groups = n.div_ceil(8);
    for c in (0..groups).step_by(2) {
        let k0 = row_mask(mask, c, n);
        let k1 = if c + 1 < groups { row_mask(mask, c + 1, n) } else { 0 };
        let kept = u16::from(k0) | u16::from(k1) << 8;
        // SAFETY: the mask limits the loads to rows below n (the second
        // group's address clamped to the last group when it is past it).
        let cv = unsafe { _mm512_maskz_loadu_epi32(kept, codes.as_ptr().add(8 * c).cast()) };
        for (v, col) in x.iter_mut().zip(cols) {
            if let LevelColumn::F64(col) = col {
                let at1 = 8 * (c + 1).min(groups - 1);
                // SAFETY: as above.
                unsafe {
                    v[0] = _mm512_maskz_loadu_pd(k0, col.as_ptr().add(8 * c));
                    v[1] = _mm512_maskz_loadu_pd(k1, col.as_ptr().add(at1));
                }
            }
        }
        for (l, cnt) in count.iter_mut().enumerate().take(levels) {
            let on = _mm512_mask_cmpeq_epi32_mask(kept, cv, _mm512_set1_epi32(l as i32));
            if on == 0 {
                continue;
            }
            *cnt += u64::from(on.count_ones());
            let (lo, hi) = (on as u8, (on >> 8) as u8);
            for (j, col) in cols.iter().enumerate() {
                match col {
                    LevelColumn::F64(_) => {
                        let a = &mut acc[2 * (l * m + j)..2 * (l * m + j) + 2];
                        a[0] = _mm512_mask_add_pd(a[0], lo, a[0], x[j][0]);
                        a[1] = _mm512_mask_add_pd(a[1], hi, a[1], x[j][1]);
                    }
                    LevelColumn::Bits(b) => {
                        let b1 = if c + 1 < groups { b[c + 1] } else { 0 };
                        ones[l * m + j] += u64::from((lo & b[c]).count_ones() + (hi & b1).count_ones());
                    }
                }
            }
        }
    }
    for l in 0..levels {
        counts[l] = count[l];
        for (j, col) in cols.iter().enumerate() {
            sums[l * m + j] = match col {
                LevelColumn::F64(_) => {
                    let a = 2 * (l * m + j);
                    _mm512_reduce_add_pd(_mm512_add_pd(acc[a], acc[a + 1]))
                }
                LevelColumn::Bits(_) => ones[l * m + j] as f64,
            };
        }
    }
}
