//! The second pass's kernels as each instruction set provides them: the
//! trait [`RowKernels`], the macro that forwards its methods to a build of
//! the portable kernels in [`rows`], and the chunk set-up
//! that uses them ([`source_columns`]).

use super::rows::{self, FlagTerms};
use crate::bits::{bits_to_f64, kept_bits};
use crate::stats::columns::{KernelColumn, SourceColumn};

/// The second pass's kernels as an instruction set provides them: the
/// functions above ([`Portable`](super::Portable)), compiled again with
/// AVX2 and FMA (`isa::Avx2`), or the AVX-512 kernels (`isa::Avx512`) —
/// every one of which returns the same bits as the function above it
/// (`tests/it/isa.rs`). The token an implementation is for proves the
/// features its kernels need, so every method is safe.
pub trait RowKernels: Copy {
    fn binary_bits_i64(self, col: &[i64], mask: Option<&[u8]>, bits: &mut [u8]) -> bool;
    fn convert_i64(self, col: &[i64], out: &mut [f64]);
    fn equal_bits_u32(self, codes: &[u32], code: u32, n: usize, mask: Option<&[u8]>, bits: &mut [u8]);
    fn row_patterns(self, flags: &[&[u8]], n: usize) -> Vec<u8>;
    #[allow(clippy::too_many_arguments)]
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
    ) -> usize;
    fn residual_sums(self, e: &[f64]) -> ([f64; 4], f64);
    fn count_nonzero_masked(self, col: &[f64], n: usize, mask: Option<&[u8]>) -> u64;
    fn robust_weights(self, e: &[f64], h: &[f64], squared: bool, w: &mut [f64]) -> bool;
    fn gram_lower_cols(self, cols: &[&[f64]], n: usize, mask: Option<&[u8]>, w: Option<&[f64]>, out: &mut [f64]);
    /// [`rows::pattern_sums`] with one copy per table row.
    #[allow(clippy::too_many_arguments)]
    fn pattern_sums(
        self,
        cols: &[&[f64]],
        index: &[u16],
        rows: usize,
        n: usize,
        mask: Option<&[u8]>,
        w: Option<&[f64]>,
        table: &mut [f64],
    );
    /// [`rows::meat_sums`] into [`SPREAD`](crate::stats::patterns::SPREAD) copies.
    #[allow(clippy::too_many_arguments)]
    fn meat_sums(
        self,
        cols: &[&[f64]],
        patterns: &[u8],
        n: usize,
        mask: Option<&[u8]>,
        w: &[f64],
        table: &mut [f64],
        out: &mut [f64],
    );
    #[allow(clippy::too_many_arguments)]
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
    );
    #[allow(clippy::too_many_arguments)]
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
    );
    #[allow(clippy::too_many_arguments)]
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
    ) -> u64;
}

/// The portable kernels as a [`RowKernels`] (the `$name(args)` list
/// forwards each method to the function of that name; x86 reuses it with a
/// target-feature build around each call) — but for `gram_lower_cols`,
/// `meat_sums` and `leverages`, which each implementation writes out (AVX2
/// has its own).
#[macro_export]
#[doc(hidden)]
macro_rules! forward_row_kernels {
    ($wrap:ident) => {
        fn binary_bits_i64(self, col: &[i64], mask: Option<&[u8]>, bits: &mut [u8]) -> bool {
            $wrap!(rows::binary_bits_i64(col: &[i64], mask: Option<&[u8]>, bits: &mut [u8]) -> bool)
        }
        fn convert_i64(self, col: &[i64], out: &mut [f64]) {
            $wrap!(rows::convert_i64(col: &[i64], out: &mut [f64]) -> ())
        }
        fn equal_bits_u32(self, codes: &[u32], code: u32, n: usize, mask: Option<&[u8]>, bits: &mut [u8]) {
            $wrap!(rows::equal_bits_u32(codes: &[u32], code: u32, n: usize, mask: Option<&[u8]>, bits: &mut [u8]) -> ())
        }
        fn row_patterns(self, flags: &[&[u8]], n: usize) -> Vec<u8> {
            $wrap!(rows::row_patterns(flags: &[&[u8]], n: usize) -> Vec<u8>)
        }
        fn residuals(
            self,
            y: &[f64],
            offset: Option<&[f64]>,
            xs: &[&[f64]],
            beta: &[f64],
            flags: Option<(&[u8], &$crate::stats::portable::rows::FlagTerms)>,
            intercept: f64,
            n: usize,
            mask: Option<&[u8]>,
            full: &mut [f64],
            kept: &mut [f64],
        ) -> usize {
            $wrap!(rows::residuals(
                y: &[f64],
                offset: Option<&[f64]>,
                xs: &[&[f64]],
                beta: &[f64],
                flags: Option<(&[u8], &$crate::stats::portable::rows::FlagTerms)>,
                intercept: f64,
                n: usize,
                mask: Option<&[u8]>,
                full: &mut [f64],
                kept: &mut [f64]
            ) -> usize)
        }
        fn residual_sums(self, e: &[f64]) -> ([f64; 4], f64) {
            $wrap!(rows::residual_sums(e: &[f64]) -> ([f64; 4], f64))
        }
        fn count_nonzero_masked(self, col: &[f64], n: usize, mask: Option<&[u8]>) -> u64 {
            $wrap!(rows::count_nonzero_masked(col: &[f64], n: usize, mask: Option<&[u8]>) -> u64)
        }
        fn robust_weights(self, e: &[f64], h: &[f64], squared: bool, w: &mut [f64]) -> bool {
            $wrap!(rows::robust_weights(e: &[f64], h: &[f64], squared: bool, w: &mut [f64]) -> bool)
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
            $wrap!(rows::pattern_sums_once(
                cols: &[&[f64]],
                index: &[u16],
                rows: usize,
                n: usize,
                mask: Option<&[u8]>,
                w: Option<&[f64]>,
                table: &mut [f64]
            ) -> ())
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
            $wrap!(rows::add_level_leverage(
                codes: &[u32],
                code_column: (&[u32], usize),
                patterns: (&[u8], usize),
                cols: &[&[f64]],
                fixed: &[f64],
                by_column: &[f64],
                n: usize,
                mask: Option<&[u8]>,
                h: &mut [f64]
            ) -> ())
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
            $wrap!(rows::cluster_rows(
                codes: &[u32],
                levels: &[u32],
                patterns: &[u8],
                e: &[f64],
                flags: (usize, usize),
                n: usize,
                mask: Option<&[u8]>,
                index: &mut [u16],
                side: &mut [u16],
                w: &mut [f64]
            ) -> u64)
        }
    };
}

/// Call the portable function as it is.
#[macro_export]
#[doc(hidden)]
macro_rules! direct_call {
    ($module:ident::$name:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $crate::stats::portable::$module::$name($($arg),*)
    };
}

impl RowKernels for super::Portable {
    fn gram_lower_cols(self, cols: &[&[f64]], n: usize, mask: Option<&[u8]>, w: Option<&[f64]>, out: &mut [f64]) {
        rows::gram_lower_cols(cols, n, mask, w, out)
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
        rows::meat_sums_spread(cols, patterns, n, mask, w, table, out)
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
        rows::leverages(cols, bk, m, patterns, table, n, mask, h)
    }
    forward_row_kernels!(direct_call);
}

/// Source columns for the second pass: floats in place; integer columns
/// whose kept values are all 0 or 1 as bits (at most `max_flags` of them,
/// and only where `may_flag` allows), appended to `bits` (`n.div_ceil(8)`
/// bytes each); other integers converted into `scratch`.
#[allow(clippy::too_many_arguments)]
pub fn source_columns<'a, K: RowKernels>(
    k: K,
    cols: &[SourceColumn<'a>],
    may_flag: &[bool],
    max_flags: usize,
    n: usize,
    mask: Option<&[u8]>,
    scratch: &'a mut Vec<f64>,
    bits: &mut Vec<u8>,
) -> Vec<KernelColumn<'a>> {
    let stride = n.div_ceil(8) * 8;
    let nbytes = n.div_ceil(8);
    let ints = cols.iter().filter(|c| matches!(c, SourceColumn::I64(_) | SourceColumn::Bits(_))).count();
    if scratch.len() < ints * stride {
        scratch.resize(ints * stride, 0.0);
    }
    // Which integer columns are flags, and where the others go.
    let mut kinds = Vec::with_capacity(cols.len());
    let (mut flags, mut converted) = (0, 0);
    for (c, &may) in cols.iter().zip(may_flag) {
        kinds.push(match *c {
            SourceColumn::F64(_) => None,
            SourceColumn::Bits(b) => {
                if may && flags < max_flags {
                    let at = bits.len();
                    bits.resize(at + nbytes, 0);
                    kept_bits(b, mask, n, &mut bits[at..]);
                    flags += 1;
                    Some(KernelColumn::Flag(at / nbytes))
                } else {
                    let out = &mut scratch[converted * stride..(converted + 1) * stride];
                    bits_to_f64(b, n, out);
                    out[n..].fill(0.0);
                    converted += 1;
                    None
                }
            }
            SourceColumn::I64(v) => {
                let at = bits.len();
                bits.resize(at + nbytes, 0);
                if may && flags < max_flags && k.binary_bits_i64(&v[..n], mask, &mut bits[at..]) {
                    flags += 1;
                    Some(KernelColumn::Flag(at / nbytes))
                } else {
                    bits.truncate(at);
                    let out = &mut scratch[converted * stride..(converted + 1) * stride];
                    k.convert_i64(&v[..n], out);
                    converted += 1;
                    None
                }
            }
        });
    }
    let scratch: &'a Vec<f64> = scratch;
    let mut next = scratch.chunks_exact(stride);
    cols.iter()
        .zip(kinds)
        .map(|(c, kind)| match (*c, kind) {
            (_, Some(flag)) => flag,
            (SourceColumn::F64(v), None) => KernelColumn::F64(&v[..n]),
            (SourceColumn::I64(_) | SourceColumn::Bits(_), None) => {
                KernelColumn::F64(&next.next().expect("one conversion per integer column")[..n])
            }
        })
        .collect()
}
