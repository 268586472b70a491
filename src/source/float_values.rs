//! The values of a batch of a DOUBLE column as the page readers
//! (`float_pages`, `dict_unpack`) write them: a 64-byte-aligned buffer
//! that becomes the batch's `Float64Array` values; and BYTE_STREAM_SPLIT
//! values put back together.

use arrow::buffer::{Buffer, ScalarBuffer};

/// The values of one batch being decoded: `cap` slots of a `Vec` whose
/// first slot is 64-byte aligned, as arrow-rs's buffers are (the kernels'
/// vector loads then never split a cache line; a `Vec` from malloc is
/// 16-byte aligned), the first `len` written. (Kept a plain `Vec`
/// allocation: 64-byte-aligned allocations cost ~4 MiB more peak memory
/// under glibc.)
pub struct Values {
    vec: Vec<f64>,
    /// Slots before the aligned first one.
    start: usize,
    len: usize,
    cap: usize,
}

impl Values {
    pub fn with_capacity(cap: usize) -> Values {
        let vec = Vec::<f64>::with_capacity(cap + 7);
        let start = vec.as_ptr().align_offset(64).min(7);
        Values { vec, start, len: 0, cap }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Room for `m` more values: where the next goes.
    pub fn room(&mut self, m: usize) -> *mut f64 {
        assert!(self.len + m <= self.cap, "more values than the batch holds");
        // SAFETY: within the vector's capacity (start + cap ≤ cap + 7).
        unsafe { self.vec.as_mut_ptr().add(self.start + self.len) }
    }

    /// Mark the next `m` slots (from [`room`](Self::room)) written.
    ///
    /// # Safety
    ///
    /// The caller wrote all `m` of them, and `room(m)` allowed them.
    pub unsafe fn wrote(&mut self, m: usize) {
        self.len += m;
    }

    /// Append the values of an iterator of known length.
    pub fn extend(&mut self, values: impl ExactSizeIterator<Item = f64>) {
        let m = values.len();
        let at = self.room(m);
        let mut written = 0;
        for (i, v) in values.enumerate().take(m) {
            // SAFETY: `room` checked the space for m values.
            unsafe { at.add(i).write(v) };
            written += 1;
        }
        self.len += written;
    }

    pub fn extend_repeat(&mut self, v: f64, m: usize) {
        self.extend(std::iter::repeat_n(v, m));
    }

    /// The values written so far.
    pub fn as_mut_slice(&mut self) -> &mut [f64] {
        // SAFETY: the `len` values from `start` were written.
        unsafe { std::slice::from_raw_parts_mut(self.vec.as_mut_ptr().add(self.start), self.len) }
    }

    pub fn finish(mut self) -> ScalarBuffer<f64> {
        // The slots before `start` are never read; zeroed so that the whole
        // vector is initialised.
        for i in 0..self.start {
            // SAFETY: start ≤ 7 < capacity.
            unsafe { self.vec.as_mut_ptr().add(i).write(0.0) };
        }
        // SAFETY: the first start + len values are initialised.
        unsafe { self.vec.set_len(self.start + self.len) };
        ScalarBuffer::new(Buffer::from_vec(self.vec), self.start, self.len)
    }
}

/// Values `first..first + k` of a BYTE_STREAM_SPLIT page's `n` values
/// (`streams`: 8 streams of `n` bytes, stream `b` holding every value's byte
/// `b`), appended to `out`. Eight values at a time: one 8-byte load from
/// each stream is an 8×8 matrix of bytes (row `b`: byte `b` of the eight
/// values), and its transpose, by three rounds of swapping blocks
/// (Hacker's Delight §7-3, on bytes), is the eight values.
pub fn unsplit(streams: &[u8], n: usize, first: usize, k: usize, out: &mut Values) {
    assert!(streams.len() >= 8 * n && first + k <= n, "values past the streams");
    let stream = |b: usize| &streams[b * n + first..b * n + first + k];
    let s: [&[u8]; 8] = std::array::from_fn(stream);
    let at = out.room(k);
    // 64 values at a time by AVX-512 byte unpacks where the CPU has them.
    #[cfg(gramfit_x86)]
    let done = match crate::isa::Avx512::get() {
        Some(token) => {
            // SAFETY: the token proves AVX-512 F and BW; each stream holds
            // k bytes, `room(k)` allowed k slots.
            unsafe { unsplit64_avx512(token, &s, k / 64, at) };
            64 * (k / 64)
        }
        None => 0,
    };
    #[cfg(not(gramfit_x86))]
    let done = 0;
    let blocks = k / 8;
    for blk in done / 8..blocks {
        let mut r: [u64; 8] =
            std::array::from_fn(|b| u64::from_le_bytes(s[b][8 * blk..8 * blk + 8].try_into().expect("8 bytes")));
        transpose_bytes(&mut r);
        for (i, v) in r.iter().enumerate() {
            // SAFETY: `room(k)` allowed k slots; 8·blk + i < k.
            unsafe { at.add(8 * blk + i).write(f64::from_bits(*v)) };
        }
    }
    for i in 8 * blocks..k {
        let bytes: [u8; 8] = std::array::from_fn(|b| s[b][i]);
        // SAFETY: i < k.
        unsafe { at.add(i).write(f64::from_le_bytes(bytes)) };
    }
    // SAFETY: all k slots were written.
    unsafe { out.wrote(k) };
}

/// `blocks` blocks of 64 values of [`unsplit`] written from `at`: per
/// 128-bit lane, three rounds of byte, 16-bit and 32-bit unpacks turn the
/// eight streams' 16 bytes into 16 whole values, two per lane of eight
/// registers; a 4×4 transpose of 128-bit lanes puts them in order.
///
/// # Safety
///
/// The CPU must have AVX-512 F and BW (`_token`); every stream holds
/// `64·blocks` bytes and `at` has room for `64·blocks` values.
#[cfg(gramfit_x86)]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn unsplit64_avx512(_token: crate::isa::Avx512, s: &[&[u8]; 8], blocks: usize, at: *mut f64) {
    use std::arch::x86_64::*;
    assert!(s.iter().all(|t| t.len() >= 64 * blocks));
    for blk in 0..blocks {
        // SAFETY: 64 bytes of each stream from 64·blk (asserted above).
        let v: [__m512i; 8] =
            std::array::from_fn(|b| unsafe { _mm512_loadu_si512(s[b].as_ptr().add(64 * blk).cast()) });
        // Bytes (0,1), (2,3), (4,5), (6,7) of values 0–7 (lo) and 8–15 (hi)
        // of each lane.
        let a: [__m512i; 8] = std::array::from_fn(|i| {
            let (x, y) = (v[2 * (i / 2)], v[2 * (i / 2) + 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_epi8(x, y)
            } else {
                _mm512_unpackhi_epi8(x, y)
            }
        });
        // Bytes 0–3 (b) and 4–7 (c) of values 0–3, 4–7, 8–11, 12–15.
        let half = |x: __m512i, y: __m512i| [_mm512_unpacklo_epi16(x, y), _mm512_unpackhi_epi16(x, y)];
        let [b0, b1] = half(a[0], a[2]);
        let [b2, b3] = half(a[1], a[3]);
        let [c0, c1] = half(a[4], a[6]);
        let [c2, c3] = half(a[5], a[7]);
        // d[r], lane L: values 16L + 2r and 16L + 2r + 1.
        let d = [
            _mm512_unpacklo_epi32(b0, c0),
            _mm512_unpackhi_epi32(b0, c0),
            _mm512_unpacklo_epi32(b1, c1),
            _mm512_unpackhi_epi32(b1, c1),
            _mm512_unpacklo_epi32(b2, c2),
            _mm512_unpackhi_epi32(b2, c2),
            _mm512_unpacklo_epi32(b3, c3),
            _mm512_unpackhi_epi32(b3, c3),
        ];
        for h in 0..2 {
            let [p, q, r, t] = [d[4 * h], d[4 * h + 1], d[4 * h + 2], d[4 * h + 3]];
            let t0 = _mm512_shuffle_i64x2::<0x44>(p, q);
            let t1 = _mm512_shuffle_i64x2::<0xee>(p, q);
            let t2 = _mm512_shuffle_i64x2::<0x44>(r, t);
            let t3 = _mm512_shuffle_i64x2::<0xee>(r, t);
            let lanes = [
                _mm512_shuffle_i64x2::<0x88>(t0, t2),
                _mm512_shuffle_i64x2::<0xdd>(t0, t2),
                _mm512_shuffle_i64x2::<0x88>(t1, t3),
                _mm512_shuffle_i64x2::<0xdd>(t1, t3),
            ];
            for (l, o) in lanes.iter().enumerate() {
                // SAFETY: values 64·blk + 8(2l + h) … + 7 are within the room.
                unsafe { _mm512_storeu_si512(at.add(64 * blk + 8 * (2 * l + h)).cast(), *o) };
            }
        }
    }
}

/// The transpose of an 8×8 byte matrix held as 8 little-endian words (row
/// `b`, column `i`: byte `i` of `r[b]`): 4×4 blocks swapped between rows
/// `b` and `b + 4`, then 2×2 blocks between `b` and `b + 2`, then bytes
/// between `b` and `b + 1`.
#[inline(always)]
fn transpose_bytes(r: &mut [u64; 8]) {
    for (half, mask, pairs) in [
        (32, 0x0000_0000_ffff_ffff_u64, [(0, 4), (1, 5), (2, 6), (3, 7)]),
        (16, 0x0000_ffff_0000_ffff, [(0, 2), (1, 3), (4, 6), (5, 7)]),
        (8, 0x00ff_00ff_00ff_00ff, [(0, 1), (2, 3), (4, 5), (6, 7)]),
    ] {
        for (a, b) in pairs {
            let t = ((r[a] >> half) ^ r[b]) & mask;
            r[a] ^= t << half;
            r[b] ^= t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsplit_puts_every_value_back_together() {
        let n = 333;
        let values: Vec<f64> =
            (0..n).map(|i| (i as f64 * 1.37e-3 - 0.05).exp() * if i % 3 == 0 { -1.0 } else { 1.0 }).collect();
        let mut streams = vec![0u8; 8 * n];
        for (i, v) in values.iter().enumerate() {
            for (b, byte) in v.to_le_bytes().iter().enumerate() {
                streams[b * n + i] = *byte;
            }
        }
        for first in [0, 1, 7, 8, 30, 100] {
            for k in [0, 1, 7, 8, 9, 16, 17, 63, 64, 65, 130, n - first] {
                let k = k.min(n - first);
                let mut out = Values::with_capacity(k);
                unsplit(&streams, n, first, k, &mut out);
                let got: Vec<u64> = out.finish().iter().map(|v| v.to_bits()).collect();
                let want: Vec<u64> = values[first..first + k].iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, want, "first {first}, k {k}");
            }
        }
    }
}
