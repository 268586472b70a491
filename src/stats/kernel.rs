//! The kernels' entry points: each picks, once per call, the instruction
//! set in force ([`crate::isa`]) and runs its build of the algorithm. The
//! algorithms themselves are in [`super::portable`] (compensated and exact
//! raw moments) and, for x86, in `super::x86` (the in-place first pass, the
//! second pass's kernels); every set returns the same bits (see
//! `tests/it/isa.rs`).

use super::columns::{matrix_columns, ColumnRef, DirectColumn, MaskedMoments, RawMoments, SourceColumn};
use super::dyadic::{ColumnScan, DyadicProfile};
use super::inplace;
use super::portable::{raw_moments_with, Portable, Primitives};
#[cfg(gramfit_x86)]
use super::x86;
#[cfg(gramfit_x86)]
use crate::isa::{Avx2, Avx512};

impl ColumnScan {
    /// One pass tests integrality at `2⁰` and `2⁻¹` — whole numbers and
    /// halves, nearly every real column — and takes the magnitude, sum and
    /// non-zero count; finer fractions are tried only when both fail. The
    /// outcome is exact (a yes/no, a maximum, a count, and a sum that is
    /// used only when it is exact), so the explicit-SIMD versions give
    /// the same result as the portable loop.
    /// `integral`: the caller knows every value is a whole number, so
    /// only the magnitude, sum and count are taken.
    #[inline]
    pub fn of(col: &[f64], integral: bool) -> ColumnScan {
        #[cfg(gramfit_x86)]
        {
            if let Some(token) = Avx512::get() {
                return token.scan(col, integral);
            }
            if let Some(token) = Avx2::get() {
                return token.scan(col, integral);
            }
        }
        Portable.scan(col, integral)
    }
}

impl DyadicProfile {
    /// `None` when some value is not a multiple of `2^-16` (or is NaN).
    pub fn of(col: &[f64]) -> Option<DyadicProfile> {
        ColumnScan::of(col, false).profile
    }
}

/// Compensated raw moments of a block; dispatches at run time to an
/// AVX2+FMA build of the same code where the CPU has it.
pub fn raw_moments(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    raw_moments_dispatch(cols, None, weights)
}

/// [`raw_moments`] of a block held as one column-major matrix
/// (`values.len() == n · lo.len()`), multiplied in place on the exact path.
/// `integral[j]`: column `j` is known to hold whole numbers; `decimals`:
/// see [`ColumnRef::decimals`].
pub fn raw_moments_of_matrix(
    values: &[f64],
    n: usize,
    lo: &[Option<&[f64]>],
    integral: &[bool],
    decimals: bool,
    weights: Option<&[f64]>,
) -> RawMoments {
    assert_eq!(values.len(), n * lo.len(), "an n × m column-major matrix");
    raw_moments_dispatch(&matrix_columns(values, n, lo, integral, decimals), Some(values), weights)
}

fn raw_moments_dispatch(cols: &[ColumnRef<'_>], matrix: Option<&[f64]>, weights: Option<&[f64]>) -> RawMoments {
    #[cfg(gramfit_x86)]
    {
        if let Some(token) = Avx512::get() {
            return x86::raw_moments_avx512(token, cols, matrix, weights);
        }
        if let Some(token) = Avx2::get() {
            return x86::raw_moments_avx2(token, cols, matrix, weights);
        }
    }
    raw_moments_with::<_, false, true>(Portable, cols, matrix, weights)
}

/// The compensated loop only (no exact fast path), so tests can check that
/// the fast path returns the same bits.
pub fn raw_moments_compensated(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    raw_moments_with::<_, false, false>(Portable, cols, None, weights)
}

/// The portable path, exposed so tests can check it agrees bit for bit.
pub fn raw_moments_portable(cols: &[ColumnRef<'_>], weights: Option<&[f64]>) -> RawMoments {
    raw_moments_with::<_, false, true>(Portable, cols, None, weights)
}

/// Raw moments of the kept rows of source columns read in place — the
/// common case of a model whose every term is a plain numeric column,
/// without weights — with no design matrix built: dropped rows are masked
/// out as they are loaded (`mask`: bit `r % 8` of byte `r / 8` set for a
/// kept row; `None`: all kept).
///
/// Returns `None` where this path does not apply (some column or pair of
/// columns is not exact in plain arithmetic, even with real-valued columns
/// split into slices: `stats::slices`); the caller then builds the design
/// block and takes [`raw_moments`]. When it applies, every sum it forms is
/// exact and sliced columns are folded as the general path folds them, so
/// the result is the same bits the general path returns.
pub fn raw_moments_masked(cols: &[SourceColumn<'_>], n: usize, mask: Option<&[u8]>) -> Option<RawMoments> {
    let cols: Vec<DirectColumn<'_>> = cols.iter().map(|&c| DirectColumn::Source(c)).collect();
    raw_moments_masked_columns(&cols, n, mask).map(|m| m.raw)
}

/// [`raw_moments_masked`] with categorical factors among the columns: a
/// factor's cells are indicators, so their sums are counts, their products
/// with a numeric column are per-level sums of it (one pass, whatever the
/// number of levels), with another factor's cells a cross tabulation, and
/// with each other zero. All exact, so again the same bits as the general
/// path, which builds the indicator columns densely.
pub fn raw_moments_masked_columns(cols: &[DirectColumn<'_>], n: usize, mask: Option<&[u8]>) -> Option<MaskedMoments> {
    #[cfg(gramfit_x86)]
    {
        if let Some(token) = Avx512::get() {
            return with_scratch(|converted| inplace::masked_moments(token, cols, n, mask, converted));
        }
        if let Some(token) = Avx2::get() {
            return with_scratch(|converted| inplace::masked_moments(token, cols, n, mask, converted));
        }
    }
    with_scratch(|converted| inplace::masked_moments(Portable, cols, n, mask, converted))
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's scratch buffer for converted integer columns
/// (both passes; never nested), kept between chunks so that it is neither
/// allocated nor zeroed each time: every value is written before it is read.
pub fn with_scratch<R>(f: impl FnOnce(&mut Vec<f64>) -> R) -> R {
    let mut v = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let r = f(&mut v);
    SCRATCH.with(|s| *s.borrow_mut() = v);
    r
}
