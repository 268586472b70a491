//! Bit columns and row masks: a byte per 8 rows, row `r` at bit `r % 8`
//! of byte `r / 8` (Arrow's validity layout). One home for the helpers
//! every kernel and page decoder uses, so that the bit order is stated and
//! tested once.

/// The low `c ≤ 64` bits set.
#[inline(always)]
pub fn low_mask(c: usize) -> u64 {
    if c >= 64 {
        !0
    } else {
        (1u64 << c) - 1
    }
}

/// Bit `r` of a bit column.
#[inline(always)]
pub fn bit(bits: &[u8], r: usize) -> bool {
    bits[r / 8] >> (r % 8) & 1 == 1
}

/// Whether row `r` is kept by a row mask (`None`: every row is).
#[inline(always)]
pub fn is_kept(mask: Option<&[u8]>, r: usize) -> bool {
    mask.is_none_or(|m| bit(m, r))
}

/// Rows `8c..8c+8` kept: byte `c` of the mask (all when `None`), limited
/// to the `n` rows.
#[inline(always)]
pub fn row_mask(mask: Option<&[u8]>, c: usize, n: usize) -> u8 {
    let m = mask.map_or(0xff, |m| m[c]);
    let left = n - 8 * c;
    if left >= 8 {
        m
    } else {
        m & ((1u8 << left) - 1)
    }
}

/// Set bits of a bit column, eight bytes (one popcount) at a time.
#[inline(always)]
pub fn ones_in(bits: &[u8]) -> u64 {
    let words = bits.chunks_exact(8);
    let rest = words.remainder();
    let w: u64 = words.map(|w| u64::from(u64::from_le_bytes(w.try_into().expect("8 bytes")).count_ones())).sum();
    w + rest.iter().map(|b| u64::from(b.count_ones())).sum::<u64>()
}

/// Set bits among the first `n` of `bits`, but for those set in `not`:
/// a popcount per 64 rows.
pub fn ones_in_first(bits: &[u8], not: Option<&[u8]>, n: usize) -> u64 {
    let word = |b: &[u8], w: usize| u64::from_le_bytes(b[8 * w..8 * w + 8].try_into().expect("8 bytes"));
    let mut total = 0u64;
    for w in 0..n / 64 {
        let x = word(bits, w) & !not.map_or(0, |m| word(m, w));
        total += u64::from(x.count_ones());
    }
    for c in (n / 64) * 8..n.div_ceil(8) {
        let x = bits[c] & !not.map_or(0, |m| m[c]) & row_mask(None, c, n);
        total += u64::from(x.count_ones());
    }
    total
}

/// `Σ_r a_r b_r` for two 0/1 columns given as bits: the popcount of their
/// intersection (exact).
#[inline(always)]
pub fn and_ones(a: &[u8], b: &[u8]) -> u64 {
    let mut total = 0u64;
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (wa.remainder(), wb.remainder());
    for (x, y) in wa.zip(wb) {
        let x = u64::from_le_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(y.try_into().expect("8 bytes"));
        total += u64::from((x & y).count_ones());
    }
    for (x, y) in ra.iter().zip(rb) {
        total += u64::from((x & y).count_ones());
    }
    total
}

/// Rows kept by a row mask (bit `r % 8` of byte `r / 8`; `None`: all `n`);
/// bits past row `n` are ignored.
pub fn kept_rows(mask: Option<&[u8]>, n: usize) -> usize {
    mask.map_or(n, |mk| {
        let full = mk.len().min(n / 8);
        // Eight bytes at a time: one popcount per 64 rows.
        let words = mk[..full].chunks_exact(8);
        let rest = words.remainder();
        let mut k: usize =
            words.map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")).count_ones() as usize).sum();
        k += rest.iter().map(|b| b.count_ones() as usize).sum::<usize>();
        if !n.is_multiple_of(8) {
            k += (mk[full] & ((1u8 << (n % 8)) - 1)).count_ones() as usize;
        }
        k
    })
}

/// The bits of a [`SourceColumn::Bits`](crate::stats::columns::SourceColumn::Bits) on the kept rows below `n` (clear
/// elsewhere), into `out` (a byte per 8 rows).
pub fn kept_bits(src: &[u8], mask: Option<&[u8]>, n: usize, out: &mut [u8]) {
    let nbytes = n.div_ceil(8);
    let (out, src) = (&mut out[..nbytes], &src[..nbytes]);
    match mask {
        Some(m) => {
            for ((o, &s), &m) in out.iter_mut().zip(src).zip(&m[..nbytes]) {
                *o = s & m;
            }
        }
        None => out.copy_from_slice(src),
    }
    if !n.is_multiple_of(8) {
        out[nbytes - 1] &= (1u8 << (n % 8)) - 1;
    }
}

/// Each byte's eight bits as 0 and 1, low bit first (a yes/no column's
/// level codes, eight rows a lookup).
static BYTE_BITS: [[u32; 8]; 256] = {
    let mut t = [[0u32; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        while k < 8 {
            t[b][k] = ((b >> k) & 1) as u32;
            k += 1;
        }
        b += 1;
    }
    t
};

/// The rows of `codes` (at most 8) whose code is `code`, as a byte: row
/// `i` at bit `i`. Eight comparisons and no branch: the indicator of a
/// level, a byte at a time, for kernels and design blocks alike.
#[inline(always)]
pub fn equal_byte(codes: &[u32], code: u32) -> u8 {
    debug_assert!(codes.len() <= 8);
    codes.iter().enumerate().fold(0u8, |b, (i, &c)| b | u8::from(c == code) << i)
}

/// The codes of a yes/no column's first `n` rows (no = 0, yes = 1) from
/// the bits of its yes rows, and `u32::MAX` where `missing` (a byte per 8
/// rows, like the values) has its bit set.
pub fn yes_no_codes(yes: &[u8], missing: Option<&[u8]>, n: usize) -> Vec<u32> {
    let mut codes = vec![0u32; n];
    for (c, out) in codes.chunks_mut(8).enumerate() {
        let bits = &BYTE_BITS[usize::from(yes[c])];
        match missing {
            Some(m) => {
                let gone = &BYTE_BITS[usize::from(m[c])];
                for ((o, &b), &g) in out.iter_mut().zip(bits).zip(gone) {
                    *o = b | g.wrapping_neg();
                }
            }
            None => out.copy_from_slice(&bits[..out.len()]),
        }
    }
    codes
}

/// The first row below `n` kept by `mask` whose bit in `bits` is `value`.
pub fn first_kept(bits: &[u8], value: bool, n: usize, mask: Option<&[u8]>) -> Option<usize> {
    let flip = if value { 0 } else { 0xff };
    (0..n.div_ceil(8)).find_map(|c| {
        let hits = (bits[c] ^ flip) & row_mask(mask, c, n);
        (hits != 0).then(|| 8 * c + hits.trailing_zeros() as usize)
    })
}

/// `f64` 0/1 values of bits (a byte per 8 rows) for the first `n` rows.
pub fn bits_to_f64(bits: &[u8], n: usize, out: &mut [f64]) {
    for (r, x) in out[..n].iter_mut().enumerate() {
        *x = f64::from(bits[r / 8] >> (r % 8) & 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths 0, 1, a byte ± 1, a word ± 1: the helpers agree with the
    /// bit-by-bit definition.
    #[test]
    fn helpers_agree_with_bit_by_bit_counts() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        };
        for n in [0usize, 1, 7, 8, 9, 63, 64, 65, 200] {
            let a: Vec<u8> = (0..n.div_ceil(8) + 1).map(|_| next()).collect();
            let b: Vec<u8> = (0..a.len()).map(|_| next()).collect();
            let rows = |f: &dyn Fn(usize) -> bool| (0..n).filter(|&r| f(r)).count();
            let nb = n.div_ceil(8);
            assert_eq!(ones_in(&a[..nb]) as usize, rows(&|r| bit(&a, r)) + extra(&a[..nb], n));
            assert_eq!(kept_rows(Some(&a), n), rows(&|r| is_kept(Some(&a), r)), "n {n}");
            assert_eq!(kept_rows(None, n), n);
            assert_eq!(
                and_ones(&a[..nb], &b[..nb]) as usize,
                (0..nb * 8).filter(|&r| bit(&a, r) && bit(&b, r)).count(),
                "n {n}"
            );
            assert_eq!(ones_in_first(&a, None, n) as usize, rows(&|r| bit(&a, r)), "n {n}");
            assert_eq!(ones_in_first(&a, Some(&b), n) as usize, rows(&|r| bit(&a, r) && !bit(&b, r)), "n {n}");
            let codes = yes_no_codes(&a, Some(&b), n);
            let want: Vec<u32> = (0..n).map(|r| if bit(&b, r) { u32::MAX } else { u32::from(bit(&a, r)) }).collect();
            assert_eq!(codes, want, "n {n}");
            assert_eq!(yes_no_codes(&a, None, n), (0..n).map(|r| u32::from(bit(&a, r))).collect::<Vec<_>>());
            for value in [false, true] {
                let first = (0..n).find(|&r| bit(&b, r) && bit(&a, r) == value);
                assert_eq!(first_kept(&a, value, n, Some(&b)), first, "n {n}");
                assert_eq!(first_kept(&a, value, n, None), (0..n).find(|&r| bit(&a, r) == value), "n {n}");
            }
            let codes: Vec<u32> = a.iter().take(nb).map(|&x| u32::from(x % 3)).collect();
            for group in codes.chunks(8) {
                for code in 0..3 {
                    let byte = equal_byte(group, code);
                    for (i, &c) in group.iter().enumerate() {
                        assert_eq!(byte >> i & 1 == 1, c == code, "n {n}");
                    }
                    assert_eq!(u32::from(byte) >> group.len(), 0, "n {n}: bits past the group");
                }
            }
            let mut out = vec![0u8; nb];
            kept_bits(&b, Some(&a), n, &mut out);
            for r in 0..nb * 8 {
                assert_eq!(bit(&out, r), r < n && bit(&a, r) && bit(&b, r), "n {n}, row {r}");
            }
            for c in 0..nb {
                for l in 0..8 {
                    let r = 8 * c + l;
                    assert_eq!(row_mask(Some(&a), c, n) >> l & 1 == 1, r < n && bit(&a, r), "n {n}, row {r}");
                }
            }
        }
        for c in 0..=64 {
            assert_eq!(low_mask(c).count_ones() as usize, c);
        }
    }

    /// Set bits of `bits` at rows `n..` (within its bytes).
    fn extra(bits: &[u8], n: usize) -> usize {
        (n..bits.len() * 8).filter(|&r| bit(bits, r)).count()
    }
}
