//! The x86-64 kernels, compiled as a whole where `gramfit_x86` is set
//! (see `build.rs`): one module per instruction set ([`avx2`], [`avx512`]),
//! and here the portable algorithms compiled again with each set's target
//! features, behind safe functions that take the set's token
//! ([`crate::isa`]) as proof that the CPU has them.

pub mod avx2;
pub mod avx512;

use super::columns::{ColumnRef, RawMoments};
use super::columns::{ColumnStats, LevelColumn};
use super::dyadic::ColumnScan;
use super::portable::row_kernels::RowKernels;
use super::portable::rows::{self, FlagTerms};
use super::portable::scans::{DecimalInts, ScanKernels, Split};
use super::portable::{raw_moments_with, Primitives};
use super::slices::{SlicePlan, MAX_SLICES};
use crate::isa::{Avx2, Avx512};

impl Primitives for Avx2 {
    #[inline(always)]
    fn scan(self, col: &[f64], integral: bool) -> ColumnScan {
        if integral {
            return ColumnScan::of_portable(col, true);
        }
        // SAFETY: the token proves AVX2.
        unsafe { avx2::scan_avx2(col) }
    }

    #[inline(always)]
    fn gram_lower(self, _values: &[f64], _n: usize, _k: usize) -> Option<Vec<f64>> {
        None
    }
}

impl Primitives for Avx512 {
    #[inline(always)]
    fn scan(self, col: &[f64], integral: bool) -> ColumnScan {
        // SAFETY: the token proves AVX-512F.
        unsafe {
            if integral {
                avx512::scan_integral_avx512(col)
            } else {
                avx512::scan_avx512(col)
            }
        }
    }

    #[inline(always)]
    fn gram_lower(self, values: &[f64], n: usize, k: usize) -> Option<Vec<f64>> {
        let mut out = vec![0.0; k * k];
        // SAFETY: the token proves AVX-512F; `values` is n × k.
        unsafe { avx512::gram_lower_avx512(&values[..n * k], n, k, &mut out) };
        Some(out)
    }
}

/// The portable raw moments compiled for AVX2 and FMA.
pub fn raw_moments_avx2(
    token: Avx2,
    cols: &[ColumnRef<'_>],
    matrix: Option<&[f64]>,
    weights: Option<&[f64]>,
) -> RawMoments {
    #[target_feature(enable = "avx2,fma")]
    fn build(token: Avx2, cols: &[ColumnRef<'_>], matrix: Option<&[f64]>, weights: Option<&[f64]>) -> RawMoments {
        raw_moments_with::<_, true, true>(token, cols, matrix, weights)
    }
    // SAFETY: the token proves AVX2 and FMA.
    unsafe { build(token, cols, matrix, weights) }
}

/// The same code again with 512-bit vectors: the lanes are the same eight
/// accumulators, so the result is the same bits.
pub fn raw_moments_avx512(
    token: Avx512,
    cols: &[ColumnRef<'_>],
    matrix: Option<&[f64]>,
    weights: Option<&[f64]>,
) -> RawMoments {
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn build(token: Avx512, cols: &[ColumnRef<'_>], matrix: Option<&[f64]>, weights: Option<&[f64]>) -> RawMoments {
        raw_moments_with::<_, true, true>(token, cols, matrix, weights)
    }
    // SAFETY: the token proves AVX-512F, AVX2 and FMA.
    unsafe { build(token, cols, matrix, weights) }
}

/// Call a portable kernel (`module::name(args) -> ret`) through a build of
/// it with the target features `$features`, which the caller's token proves.
macro_rules! feature_call {
    ($features:literal, $module:ident::$name:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {{
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        fn build($($arg: $ty),*) -> $ret {
            crate::stats::portable::$module::$name($($arg),*)
        }
        // SAFETY: the caller's token proves every feature of `$features`.
        unsafe { build($($arg),*) }
    }};
}

/// [`feature_call`] with AVX2, FMA and POPCNT (the `Avx2` token proves all
/// three).
macro_rules! avx2_call {
    ($($call:tt)*) => {
        feature_call!("avx2,fma,popcnt", $($call)*)
    };
}

/// [`feature_call`] with AVX-512 F and DQ, for a portable kernel the
/// AVX-512 level has no hand-written build of (`isa::Avx512` is detected
/// with AVX2, FMA and POPCNT too).
macro_rules! avx512_call {
    ($($call:tt)*) => {
        feature_call!("avx512f,avx512dq,avx2,fma,popcnt", $($call)*)
    };
}

/// The portable kernels built with AVX2, FMA and POPCNT, but for the
/// weighted gram (hand-written: the compiler kept its sums in memory) and
/// the meat, which uses it — the same bits.
impl RowKernels for Avx2 {
    fn gram_lower_cols(self, cols: &[&[f64]], n: usize, mask: Option<&[u8]>, w: Option<&[f64]>, out: &mut [f64]) {
        // SAFETY: the token proves AVX2 and FMA.
        unsafe { avx2::gram_lower_cols_avx2(cols, n, mask, w, out) }
    }
    /// The weighted gram, then the pattern sums: the same products
    /// (`w·x`) added in the same order as the portable meat's one loop.
    fn meat_sums(
        self,
        cols: &[&[f64]],
        patterns: &[u8],
        n: usize,
        mask: Option<&[u8]>,
        w: &[f64],
        table: &mut [f64],
        out: &mut [f64],
    ) {
        self.gram_lower_cols(cols, n, mask, Some(w), out);
        #[target_feature(enable = "avx2,fma")]
        fn sums(cols: &[&[f64]], patterns: &[u8], n: usize, mask: Option<&[u8]>, w: &[f64], table: &mut [f64]) {
            rows::pattern_sums(cols, patterns, 256, crate::stats::patterns::SPREAD, n, mask, Some(w), table)
        }
        // SAFETY: the token proves AVX2 and FMA.
        unsafe { sums(cols, patterns, n, mask, w, table) }
    }
    fn leverages(
        self,
        cols: &[&[f64]],
        bk: &[f64],
        m: usize,
        patterns: &[u8],
        table: &[f64],
        n: usize,
        mask: Option<&[u8]>,
        h: &mut [f64],
    ) {
        if cols.len() <= avx2::LEVERAGE_COLS {
            // SAFETY: the token proves AVX2 and FMA; patterns are bytes,
            // and the table has 256 rows (checked there).
            unsafe { avx2::leverages_avx2(cols, bk, m, patterns, table, n, mask, h) }
        } else {
            avx2_call!(rows::leverages(
                cols: &[&[f64]],
                bk: &[f64],
                m: usize,
                patterns: &[u8],
                table: &[f64],
                n: usize,
                mask: Option<&[u8]>,
                h: &mut [f64]
            ) -> ())
        }
    }
    crate::forward_row_kernels!(avx2_call);
}

/// The portable scans built with AVX2, FMA and POPCNT, but for the four
/// that the compiler does not vectorize well (a scan, the masked sums, the
/// per-level sums and the gram: hand-written, 2–5× faster on the benchmark
/// file).
impl ScanKernels for Avx2 {
    fn scan_masked(self, col: &[f64], mask: Option<&[u8]>) -> (bool, ColumnStats) {
        // SAFETY: the token proves AVX2.
        unsafe { avx2::scan_masked_avx2(col, mask) }
    }
    fn bits_by_cols(self, bins: &[&[u8]], cont: &[&[f64]], n: usize, _mask: Option<&[u8]>, out: &mut [f64]) {
        // SAFETY: the token proves AVX2.
        unsafe { avx2::bits_by_cols_avx2(bins, cont, n, out) }
    }
    fn gram_exact(self, cols: &[&[f64]], n: usize, mask: Option<&[u8]>, out: &mut [f64]) {
        // SAFETY: the token proves AVX2 and FMA.
        unsafe { avx2::gram_lower_cols_avx2(cols, n, mask, None, out) }
    }
    fn level_sums(
        self,
        codes: &[u32],
        levels: usize,
        cols: &[LevelColumn<'_>],
        n: usize,
        mask: Option<&[u8]>,
        sums: &mut [f64],
        counts: &mut [u64],
    ) {
        // SAFETY: the token proves AVX2 and POPCNT.
        unsafe { avx2::level_sums_avx2(codes, levels, cols, n, mask, sums, counts) }
    }
    crate::forward_scan_kernels!(avx2_call);
}

/// The AVX-512 scans (exact sums: equal in value to the portable ones).
impl ScanKernels for Avx512 {
    fn scan_masked(self, col: &[f64], mask: Option<&[u8]>) -> (bool, ColumnStats) {
        // SAFETY: the token proves AVX-512F and DQ.
        unsafe { avx512::scan_masked_avx512(col, mask) }
    }
    fn halves_masked(self, col: &[f64], mask: Option<&[u8]>) -> bool {
        // SAFETY: the token proves AVX-512F and DQ.
        unsafe { avx512::halves_masked_avx512(col, mask) }
    }
    fn convert_i64_masked(self, col: &[i64], mask: Option<&[u8]>, out: &mut [f64]) -> ColumnStats {
        // SAFETY: the token proves AVX-512F and DQ.
        unsafe { avx512::convert_i64_masked_avx512(col, mask, out) }
    }
    fn nonzero_bits_masked(self, col: &[f64], mask: Option<&[u8]>, bits: &mut [u8]) {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::nonzero_bits_masked_avx512(col, mask, bits) }
    }
    fn bits_by_cols(self, bins: &[&[u8]], cont: &[&[f64]], n: usize, mask: Option<&[u8]>, out: &mut [f64]) {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::bits_by_cols_avx512(bins, cont, n, mask, out) }
    }
    fn level_sums(
        self,
        codes: &[u32],
        levels: usize,
        cols: &[LevelColumn<'_>],
        n: usize,
        mask: Option<&[u8]>,
        sums: &mut [f64],
        counts: &mut [u64],
    ) {
        // SAFETY: the token proves AVX-512F and POPCNT.
        unsafe { avx512::level_sums_avx512(codes, levels, cols, n, mask, sums, counts) }
    }
    fn flag_counts(self, index: &[u16], patterns: &[u8], rows: usize, n: usize, table: &mut [f64]) {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::patterns::flag_counts(index, patterns, rows, n, table) }
    }
    fn gram_exact(self, cols: &[&[f64]], n: usize, mask: Option<&[u8]>, out: &mut [f64]) {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::gram_lower_cols_avx512(cols, n, mask, None, out) }
    }
    fn and_ones(self, a: &[u8], b: &[u8]) -> u64 {
        #[target_feature(enable = "popcnt")]
        fn build(a: &[u8], b: &[u8]) -> u64 {
            crate::bits::and_ones(a, b)
        }
        // SAFETY: the token proves POPCNT.
        unsafe { build(a, b) }
    }
    fn decimal_masked(
        self,
        col: &[f64],
        mask: Option<&[u8]>,
        scale: f64,
        offset: f64,
        out: &mut [f64],
    ) -> Result<DecimalInts, usize> {
        avx512_call!(scans::decimal_masked(
            col: &[f64],
            mask: Option<&[u8]>,
            scale: f64,
            offset: f64,
            out: &mut [f64]
        ) -> Result<DecimalInts, usize>)
    }
    fn split_masked(
        self,
        col: &[f64],
        mask: Option<&[u8]>,
        plan: &SlicePlan,
        out: &mut [f64],
        stride: usize,
        sums: &mut [f64; MAX_SLICES],
    ) -> Split {
        avx512_call!(scans::split_masked(
            col: &[f64],
            mask: Option<&[u8]>,
            plan: &SlicePlan,
            out: &mut [f64],
            stride: usize,
            sums: &mut [f64; MAX_SLICES]
        ) -> Split)
    }
}

/// The AVX-512 kernels, each equal bit for bit to the portable one.
impl RowKernels for Avx512 {
    fn binary_bits_i64(self, col: &[i64], mask: Option<&[u8]>, bits: &mut [u8]) -> bool {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::binary_bits_i64_avx512(col, mask, bits) }
    }
    fn convert_i64(self, col: &[i64], out: &mut [f64]) {
        // SAFETY: the token proves AVX-512F and DQ.
        unsafe { avx512::convert_i64_avx512(col, out) }
    }
    fn equal_bits_u32(self, codes: &[u32], code: u32, n: usize, mask: Option<&[u8]>, bits: &mut [u8]) {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::equal_bits_u32_avx512(codes, code, n, mask, bits) }
    }
    fn row_patterns(self, flags: &[&[u8]], n: usize) -> Vec<u8> {
        avx512::patterns::row_patterns(flags, n)
    }
    fn residuals(
        self,
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
        // SAFETY: the token proves AVX-512F and POPCNT.
        unsafe { avx512::residuals_masked_avx512(y, offset, xs, beta, flags, intercept, n, mask, full, kept) }
    }
    fn residual_sums(self, e: &[f64]) -> ([f64; 4], f64) {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::residual_sums_avx512(e) }
    }
    fn count_nonzero_masked(self, col: &[f64], n: usize, mask: Option<&[u8]>) -> u64 {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::count_nonzero_masked_avx512(col, n, mask) }
    }
    fn robust_weights(self, e: &[f64], h: &[f64], squared: bool, w: &mut [f64]) -> bool {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::robust_weights_avx512(e, h, squared, w) }
    }
    fn gram_lower_cols(self, cols: &[&[f64]], n: usize, mask: Option<&[u8]>, w: Option<&[f64]>, out: &mut [f64]) {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::gram_lower_cols_avx512(cols, n, mask, w, out) }
    }
    fn pattern_sums(
        self,
        cols: &[&[f64]],
        index: &[u16],
        rows: usize,
        n: usize,
        mask: Option<&[u8]>,
        w: Option<&[f64]>,
        table: &mut [f64],
    ) {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::patterns::pattern_sums(cols, index, rows, n, mask, w, table) }
    }
    fn meat_sums(
        self,
        cols: &[&[f64]],
        patterns: &[u8],
        n: usize,
        mask: Option<&[u8]>,
        w: &[f64],
        table: &mut [f64],
        out: &mut [f64],
    ) {
        // SAFETY: the token proves AVX-512F.
        unsafe {
            if !avx512::patterns::meat_sums(cols, patterns, n, mask, w, table, out) {
                avx512::gram_lower_cols_avx512(cols, n, mask, Some(w), out);
                avx512::patterns::spread_pattern_sums(cols, patterns, n, mask, Some(w), table);
            }
        }
    }
    fn leverages(
        self,
        cols: &[&[f64]],
        bk: &[f64],
        m: usize,
        patterns: &[u8],
        table: &[f64],
        n: usize,
        mask: Option<&[u8]>,
        h: &mut [f64],
    ) {
        // SAFETY: the token proves AVX-512F.
        unsafe { avx512::patterns::leverage_by_patterns(cols, bk, m, patterns, table, n, mask, h) }
    }
    fn add_level_leverage(
        self,
        codes: &[u32],
        code_column: (&[u32], usize),
        patterns: (&[u8], usize),
        cols: &[&[f64]],
        fixed: &[f64],
        by_column: &[f64],
        n: usize,
        mask: Option<&[u8]>,
        h: &mut [f64],
    ) {
        // SAFETY: the token proves AVX-512F and DQ.
        unsafe {
            avx512::patterns::add_level_leverage(codes, code_column, patterns, cols, fixed, by_column, n, mask, h)
        }
    }
    fn cluster_rows(
        self,
        codes: &[u32],
        levels: &[u32],
        patterns: &[u8],
        e: &[f64],
        flags: (usize, usize),
        n: usize,
        mask: Option<&[u8]>,
        index: &mut [u16],
        side: &mut [u16],
        w: &mut [f64],
    ) -> u64 {
        // SAFETY: the token proves AVX-512F and POPCNT.
        unsafe { avx512::patterns::cluster_rows(codes, levels, patterns, e, flags, n, mask, index, side, w) }
    }
}
