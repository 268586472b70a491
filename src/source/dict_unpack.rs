//! Bit-packed dictionary indices of a DOUBLE column's data pages, unpacked
//! and looked up: eight at a time by one byte permutation (AVX-512 VBMI),
//! four by in-lane byte shuffles and a gather (AVX2), else one at a time —
//! the same values on every path (tested against a bit-by-bit reading).

use super::float_values::Values;

/// Values `first..first + m` of a bit-packed run of `w`-bit indices (`run`:
/// its bytes, enough for them), looked up in `dict`, appended to `out`; the
/// first index past the dictionary as the error.
pub fn unpack_lookup(run: &[u8], w: usize, first: usize, m: usize, dict: &[f64], out: &mut Values) -> Result<(), u64> {
    if w == 0 {
        let v = *dict.first().ok_or(0u64)?;
        out.extend_repeat(v, m);
        return Ok(());
    }
    unpack_with(Unpacker::active(), run, w, first, m, dict, out)
}

/// How bit-packed indices are unpacked: one at a time, or whole groups of
/// 8 by vector (AVX2: byte shuffles within 128-bit lanes and a gather;
/// AVX-512 VBMI: one byte permutation and register lookups).
#[derive(Clone, Copy, Debug)]
enum Unpacker {
    Scalar,
    #[cfg(gramfit_x86)]
    Avx2(crate::isa::Avx2),
    #[cfg(gramfit_x86)]
    Vbmi(crate::isa::Avx512Vbmi),
}

impl Unpacker {
    /// The fastest the instruction-set level in force allows.
    fn active() -> Unpacker {
        #[cfg(gramfit_x86)]
        {
            if let Some(t) = crate::isa::Avx512Vbmi::get() {
                return Unpacker::Vbmi(t);
            }
            if let Some(t) = crate::isa::Avx2::get() {
                return Unpacker::Avx2(t);
            }
        }
        Unpacker::Scalar
    }

    /// Every unpacker this CPU can run (the tests run each).
    #[cfg(test)]
    fn all() -> Vec<Unpacker> {
        #[cfg(gramfit_x86)]
        {
            use crate::isa::{Avx2, Avx512Vbmi, Level};
            let vector = [
                Avx2::for_level(Level::Avx2).map(Unpacker::Avx2),
                Avx512Vbmi::for_level(Level::Avx512Vbmi).map(Unpacker::Vbmi),
            ];
            std::iter::once(Unpacker::Scalar).chain(vector.into_iter().flatten()).collect()
        }
        #[cfg(not(gramfit_x86))]
        vec![Unpacker::Scalar]
    }
}

/// [`unpack_lookup`] with a given unpacker.
fn unpack_with(
    unpacker: Unpacker,
    run: &[u8],
    w: usize,
    first: usize,
    m: usize,
    dict: &[f64],
    out: &mut Values,
) -> Result<(), u64> {
    #[cfg(gramfit_x86)]
    if m >= 16 && w <= 32 && !matches!(unpacker, Unpacker::Scalar) {
        // Up to the first group boundary one by one, whole groups of 8 by
        // vector, the rest one by one.
        let head = (first.next_multiple_of(8) - first).min(m);
        unpack_scalar(run, w, first, head, dict, out)?;
        let mut groups = (m - head) / 8;
        let start = first + head;
        match unpacker {
            // SAFETY: the token proves the features; the groups' bits lie
            // in `run` (the caller checked the run's bytes for all m).
            Unpacker::Vbmi(_) => unsafe { unpack_groups_avx512(run, w, start / 8, groups, dict, out)? },
            Unpacker::Avx2(_) => {
                // Groups whose 16-byte loads stay inside the run.
                let reach = (6 * w) / 8 + 16;
                let safe = if run.len() >= reach { (run.len() - reach) / w + 1 } else { 0 };
                groups = groups.min(safe.saturating_sub(start / 8));
                // SAFETY: the token proves AVX2; every group read lies in
                // `run` (above).
                unsafe { unpack_groups_avx2(run, w, start / 8, groups, dict, out)? }
            }
            Unpacker::Scalar => unreachable!("checked above"),
        }
        let done = head + 8 * groups;
        return unpack_scalar(run, w, first + done, m - done, dict, out);
    }
    let _ = unpacker;
    unpack_scalar(run, w, first, m, dict, out)
}

/// `groups` whole groups of 8 `w`-bit indices (`w ≤ 32`) from group
/// `group` of a bit-packed run, looked up in `dict`, appended to `out`,
/// four at a time: two 16-byte loads hold four values' 8-byte windows (a
/// group is `w` bytes, so the windows' places repeat every group), a byte
/// shuffle within each 128-bit lane puts each window in its 64-bit lane, a
/// variable shift and a mask leave the index, a gather looks it up. Any
/// index past the dictionary: the error (the first such index), nothing
/// appended for its group.
///
/// # Safety
///
/// The CPU must have AVX2, and `run` must hold the 16 bytes from
/// `(group + groups − 1)·w + ⌊6w/8⌋` (checked, `assert!`).
#[cfg(gramfit_x86)]
#[target_feature(enable = "avx2")]
unsafe fn unpack_groups_avx2(
    run: &[u8],
    w: usize,
    group: usize,
    groups: usize,
    dict: &[f64],
    out: &mut Values,
) -> Result<(), u64> {
    use std::arch::x86_64::*;
    assert!((1..=32).contains(&w));
    assert!(groups == 0 || (group + groups - 1) * w + (6 * w) / 8 + 16 <= run.len(), "groups past the run");
    // Per half h of a group and 128-bit lane p: the byte its two values'
    // windows are loaded from (from the group's first byte), and per value
    // its window's bytes in the load and its shift.
    let start = |h: usize, p: usize| (4 * h + 2 * p) * w / 8;
    let mut ctrl = [[0u8; 32]; 2];
    let mut shift = [[0u64; 4]; 2];
    for h in 0..2 {
        for p in 0..2 {
            for q in 0..2 {
                let j = 4 * h + 2 * p + q;
                let off = j * w / 8 - start(h, p);
                for b in 0..8 {
                    ctrl[h][16 * p + 8 * q + b] = (off + b) as u8;
                }
                shift[h][2 * p + q] = (j * w % 8) as u64;
            }
        }
    }
    // SAFETY: 32 bytes each.
    let (ctrl, shift) = unsafe {
        (
            [_mm256_loadu_si256(ctrl[0].as_ptr().cast()), _mm256_loadu_si256(ctrl[1].as_ptr().cast())],
            [_mm256_loadu_si256(shift[0].as_ptr().cast()), _mm256_loadu_si256(shift[1].as_ptr().cast())],
        )
    };
    let starts = [[start(0, 0), start(0, 1)], [start(1, 0), start(1, 1)]];
    let mask = _mm256_set1_epi64x(((1u64 << w) - 1) as i64);
    let len = _mm256_set1_epi64x(dict.len() as i64);
    let dst = out.room(8 * groups);
    let p = run.as_ptr();
    for g in 0..groups {
        let at = (group + g) * w;
        for h in 0..2 {
            // SAFETY: 16 bytes from at + starts[h][1] ≤ at + ⌊6w/8⌋ lie in
            // the run (asserted above).
            let (lo, hi) = unsafe {
                (_mm_loadu_si128(p.add(at + starts[h][0]).cast()), _mm_loadu_si128(p.add(at + starts[h][1]).cast()))
            };
            let words = _mm256_shuffle_epi8(_mm256_set_m128i(hi, lo), ctrl[h]);
            let idx = _mm256_and_si256(_mm256_srlv_epi64(words, shift[h]), mask);
            if _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(len, idx))) != 0b1111 {
                // SAFETY: those slots were written above, within `room`.
                unsafe { out.wrote(8 * g) };
                let mut lanes = [0u64; 4];
                // SAFETY: 4 lanes.
                unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), idx) };
                return Err(*lanes.iter().find(|&&i| i as usize >= dict.len()).expect("a lane past the dictionary"));
            }
            // SAFETY: every index is below the dictionary's length (checked
            // above); `room` made space for 8 · groups values.
            unsafe {
                let values = _mm256_i64gather_pd::<8>(dict.as_ptr(), idx);
                _mm256_storeu_pd(dst.add(8 * g + 4 * h), values);
            }
        }
    }
    // SAFETY: those slots were written above, within `room`.
    unsafe { out.wrote(8 * groups) };
    Ok(())
}

/// `groups` whole groups of 8 `w`-bit indices (`w ≤ 32`) from group
/// `group` of a bit-packed run, looked up in `dict`, appended to `out`. A
/// group is `w` bytes: one byte permutation puts each value's 8-byte window
/// in its lane, a variable shift and a mask leave the index; dictionaries
/// of up to 64 values are looked up by register permutations, larger ones
/// by a gather. Any index past the dictionary: the error (the first such
/// index), nothing appended for its group.
#[cfg(gramfit_x86)]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn unpack_groups_avx512(
    run: &[u8],
    w: usize,
    group: usize,
    groups: usize,
    dict: &[f64],
    out: &mut Values,
) -> Result<(), u64> {
    use std::arch::x86_64::*;
    // A release check: the masked loads below trust it (`run.len() - at`).
    assert!((1..=32).contains(&w) && (group + groups) * w <= run.len(), "groups past the run");
    let perm: [u8; 64] = std::array::from_fn(|b| ((b / 8) * w / 8 + b % 8) as u8);
    let shifts: [u64; 8] = std::array::from_fn(|j| (j * w % 8) as u64);
    // SAFETY: 64 bytes each.
    let (perm, shifts) =
        unsafe { (_mm512_loadu_si512(perm.as_ptr().cast()), _mm512_loadu_si512(shifts.as_ptr().cast())) };
    let mask = _mm512_set1_epi64(((1u64 << w) - 1) as i64);
    let len = _mm512_set1_epi64(dict.len() as i64);
    // Dictionaries of up to 64 values live in (up to) 8 registers: pairs
    // looked up by `vpermt2pd` (16 values each), bits 4 and 5 of the index
    // choosing among the pairs.
    let mut small = [0.0f64; 64];
    let pairs = if dict.len() <= 64 { dict.len().div_ceil(16).max(1) } else { 0 };
    if pairs > 0 {
        small[..dict.len()].copy_from_slice(dict);
    }
    // SAFETY: 64 values.
    let d: [__m512d; 8] = std::array::from_fn(|i| unsafe { _mm512_loadu_pd(small.as_ptr().add(8 * i)) });
    let (bit4, bit5) = (_mm512_set1_epi64(16), _mm512_set1_epi64(32));
    let dst = out.room(8 * groups);
    let mut done = 0;
    for g in 0..groups {
        let at = (group + g) * w;
        // The bytes of this group and the next few (masked to the run).
        let avail = (run.len() - at).min(64);
        let k: __mmask64 = if avail == 64 { !0 } else { (1u64 << avail) - 1 };
        // SAFETY: the mask limits the load to the run's bytes.
        let bytes = unsafe { _mm512_maskz_loadu_epi8(k, run.as_ptr().add(at).cast()) };
        let words = _mm512_permutexvar_epi8(perm, bytes);
        let idx = _mm512_and_si512(_mm512_srlv_epi64(words, shifts), mask);
        if _mm512_cmpge_epu64_mask(idx, len) != 0 {
            // SAFETY: those slots were written above, within `room`.
            unsafe { out.wrote(done) };
            let mut lanes = [0u64; 8];
            // SAFETY: 8 lanes.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), idx) };
            return Err(*lanes.iter().find(|&&i| i as usize >= dict.len()).expect("a lane past the dictionary"));
        }
        let values = match pairs {
            1 => _mm512_permutex2var_pd(d[0], idx, d[1]),
            2 => {
                let hi = _mm512_test_epi64_mask(idx, bit4);
                _mm512_mask_blend_pd(
                    hi,
                    _mm512_permutex2var_pd(d[0], idx, d[1]),
                    _mm512_permutex2var_pd(d[2], idx, d[3]),
                )
            }
            3 | 4 => {
                let (m4, m5) = (_mm512_test_epi64_mask(idx, bit4), _mm512_test_epi64_mask(idx, bit5));
                let low = _mm512_mask_blend_pd(
                    m4,
                    _mm512_permutex2var_pd(d[0], idx, d[1]),
                    _mm512_permutex2var_pd(d[2], idx, d[3]),
                );
                let high = _mm512_mask_blend_pd(
                    m4,
                    _mm512_permutex2var_pd(d[4], idx, d[5]),
                    _mm512_permutex2var_pd(d[6], idx, d[7]),
                );
                _mm512_mask_blend_pd(m5, low, high)
            }
            // SAFETY: every index is below the dictionary's length.
            _ => unsafe { _mm512_i64gather_pd::<8>(idx, dict.as_ptr()) },
        };
        // SAFETY: `room` made space for 8 · groups values.
        unsafe { _mm512_storeu_pd(dst.add(8 * g), values) };
        done += 8;
    }
    // SAFETY: those slots were written above, within `room`.
    unsafe { out.wrote(done) };
    Ok(())
}

/// [`unpack_lookup`] one value at a time.
fn unpack_scalar(run: &[u8], w: usize, first: usize, m: usize, dict: &[f64], out: &mut Values) -> Result<(), u64> {
    let mask = (1u64 << w) - 1;
    // Values whose 8-byte window lies inside the run are read with one
    // unaligned load each; the last few byte by byte. (`extend` over a
    // range: the length is known, so the vector's length is not kept in
    // memory between values, as `push` had it.)
    let fast_end = if run.len() >= 8 { ((run.len() - 8) * 8 / w).min(first + m).max(first) } else { first };
    let mut bad = false;
    let mut lookup = |i: usize| match dict.get(i) {
        Some(&v) => v,
        None => {
            bad = true;
            0.0
        }
    };
    let p = run.as_ptr();
    out.extend((first..fast_end).map(|j| {
        let bit = j * w;
        // SAFETY: j < fast_end, so bit / 8 + 8 ≤ run.len().
        let word = u64::from_le(unsafe { std::ptr::read_unaligned(p.add(bit / 8).cast::<u64>()) });
        lookup((word >> (bit % 8) & mask) as usize)
    }));
    out.extend((fast_end..first + m).map(|j| {
        let bit = j * w;
        let bytes = &run[bit / 8..run.len().min(bit / 8 + 8)];
        let word = bytes.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b));
        lookup((word >> (bit % 8) & mask) as usize)
    }));
    if bad {
        let i = (first..first + m)
            .map(|j| {
                let bit = j * w;
                let bytes = &run[bit / 8..run.len().min(bit / 8 + 8)];
                bytes.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b)) >> (bit % 8) & mask
            })
            .find(|&i| i as usize >= dict.len())
            .expect("a bad index");
        return Err(i);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dictionaries of every size class (one register pair, two, four, a
    /// gather) give each index its entry, on every path.
    #[test]
    fn lookups_of_every_dictionary_size() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for len in [1usize, 5, 16, 17, 30, 32, 33, 50, 64, 65, 200] {
            let w = (usize::BITS - (len - 1).leading_zeros()) as usize;
            let w = w.max(1);
            let n = 200;
            let idx: Vec<usize> = (0..n)
                .map(|_| {
                    x = x.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    (x >> 11) as usize % len
                })
                .collect();
            let mut run = vec![0u8; (n * w).div_ceil(8)];
            for (j, &i) in idx.iter().enumerate() {
                for b in 0..w {
                    run[(j * w + b) / 8] |= ((i >> b & 1) as u8) << ((j * w + b) % 8);
                }
            }
            let dict: Vec<f64> = (0..len).map(|i| i as f64 * 1.5 - 3.0).collect();
            for first in [0usize, 3, 8] {
                for u in Unpacker::all() {
                    let mut out = Values::with_capacity(n - first);
                    unpack_with(u, &run, w, first, n - first, &dict, &mut out).expect("indices within the dictionary");
                    let want: Vec<f64> = idx[first..].iter().map(|&i| dict[i]).collect();
                    assert_eq!(out.as_mut_slice(), want, "{u:?}: dictionary of {len}, from {first}");
                }
            }
        }
    }

    /// Runs that end exactly after their last value (no slack bytes), at
    /// counts 0, 1, a group ± 1, eight groups ± 1: every index read, none
    /// past the run (the masked loads are bounded by the run's length).
    #[test]
    fn unpacking_reads_runs_to_their_last_byte() {
        for w in [1usize, 3, 8, 13, 32] {
            for m in [0usize, 1, 7, 8, 9, 63, 64, 65] {
                for first in [0usize, 1] {
                    let total = first + m;
                    let value = |j: usize| (j * 2_654_435_761 % 1_000_003) as u64 & ((1u64 << w.min(10)) - 1);
                    let mut run = vec![0u8; (total * w).div_ceil(8)];
                    for j in 0..total {
                        for b in 0..w {
                            run[(j * w + b) / 8] |= ((value(j) >> b & 1) as u8) << ((j * w + b) % 8);
                        }
                    }
                    let dict: Vec<f64> = (0..1u64 << w.min(10)).map(|i| i as f64 + 0.5).collect();
                    for u in Unpacker::all() {
                        let mut out = Values::with_capacity(m);
                        unpack_with(u, &run, w, first, m, &dict, &mut out).expect("indices within the dictionary");
                        let want: Vec<f64> = (first..total).map(|j| value(j) as f64 + 0.5).collect();
                        assert_eq!(out.as_mut_slice(), want, "{u:?}: width {w}, {m} values from {first}");
                    }
                }
            }
        }
    }

    /// Wide indices read by the 8-byte window and by the byte-wise tail
    /// agree with a bit-by-bit reading.
    #[test]
    fn unpacking_matches_bit_by_bit() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for w in [1usize, 3, 7, 12, 17, 25, 32] {
            let run: Vec<u8> = (0..8 * w)
                .map(|_| {
                    x = x.rotate_left(13).wrapping_mul(0x2545_F491_4F6C_DD1D);
                    x as u8
                })
                .collect();
            let value =
                |j: usize| (0..w).fold(0u64, |v, b| v | u64::from(run[(j * w + b) / 8] >> ((j * w + b) % 8) & 1) << b);
            let dict: Vec<f64> = (0..1u64 << w.min(20)).map(|i| i as f64).collect();
            for first in [0usize, 1, 5, 63] {
                let m = 64 - first;
                let first_bad = (first..64).map(value).find(|&v| v as usize >= dict.len());
                for u in Unpacker::all() {
                    let mut out = Values::with_capacity(m);
                    match unpack_with(u, &run, w, first, m, &dict, &mut out) {
                        Ok(()) => {
                            let want: Vec<f64> = (first..64).map(|j| value(j) as f64).collect();
                            assert_eq!(out.as_mut_slice(), want, "{u:?}: width {w}, from {first}");
                            assert_eq!(out.finish().as_ptr() as usize % 64, 0, "an aligned buffer");
                        }
                        Err(i) => assert_eq!(Some(i), first_bad, "{u:?}: width {w}, from {first}"),
                    }
                }
            }
        }
    }
}
