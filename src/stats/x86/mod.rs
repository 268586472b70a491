//! The x86-64 kernels, compiled as a whole where `gramfit_x86` is set
//! (see `build.rs`): one module per instruction set ([`avx2`], [`avx512`]),
//! and here the portable algorithms compiled again with each set's target
//! features, behind safe functions that take the set's token
//! ([`crate::isa`]) as proof that the CPU has them.

pub mod avx2;
pub mod avx512;

use super::columns::{ColumnRef, RawMoments};
use super::dyadic::ColumnScan;
use super::portable::{raw_moments_with, Primitives};
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
