//! AVX2 kernels (256-bit vectors): the same algorithms as the portable
//! ones and the AVX-512 ones, their lanes summed in the same order.

use crate::stats::dyadic::ColumnScan;
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
