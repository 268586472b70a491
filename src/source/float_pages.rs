//! Dictionary-encoded DOUBLE columns of Parquet decoded from their pages.
//!
//! Measurements such as sizes, distances and ages take a few thousand
//! distinct values, so the common writers (arrow-rs, pyarrow) store them
//! dictionary-encoded: a dictionary page of the distinct values (PLAIN) and
//! per row an index of a few bits (the RLE / bit-packing hybrid). arrow-rs
//! decodes such a chunk through its generic dictionary decoder — indices
//! unpacked to a buffer, then gathered value by value through an iterator,
//! then moved apart for nulls — which was ~40% of the benchmark model's
//! first pass. Here the indices of a run are read straight from the page —
//! eight at a time by one byte permutation, a shift and a mask (AVX-512
//! VBMI; one unaligned 64-bit load per value elsewhere) — and looked up in
//! the dictionary (held in registers up to 64 values, gathered beyond),
//! into the batch's `Float64Array`: the same values and validity arrow-rs
//! gives (null slots hold 0.0), in one sweep, 64-byte aligned. Run state is
//! kept between batches, so a batch may end anywhere in a run.
//!
//! A column chunk qualifies when — checked before the row group is read —
//! it is DOUBLE, flat (no repetition, at most one definition level), every
//! data page is dictionary-encoded (the chunk's page encoding statistics)
//! and its dictionary page is PLAIN. Any other chunk is left to arrow-rs.
//! The page format (chunk, data page layouts, hybrid runs read in pieces)
//! is `page_format`'s.

use super::page_format::{data_page, parquet_message, DataPage, DictionaryChunk, Hybrid, PageError, Piece};
use crate::bits::low_mask;
use arrow::array::{BooleanBufferBuilder, Float64Array};
use arrow::buffer::{Buffer, NullBuffer, ScalarBuffer};
use bytes::Bytes;
use parquet::basic::Type as PhysicalType;
use parquet::column::page::PageReader;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::ChunkReader;
use std::sync::Arc;

/// The values of one batch being decoded: `cap` slots of a `Vec` whose
/// first slot is 64-byte aligned, as arrow-rs's buffers are (the kernels'
/// vector loads then never split a cache line; a `Vec` from malloc is
/// 16-byte aligned), the first `len` written. (Kept a plain `Vec`
/// allocation: 64-byte-aligned allocations cost ~4 MiB more peak memory
/// under glibc.)
struct Values {
    vec: Vec<f64>,
    /// Slots before the aligned first one.
    start: usize,
    len: usize,
    cap: usize,
}

impl Values {
    fn with_capacity(cap: usize) -> Values {
        let vec = Vec::<f64>::with_capacity(cap + 7);
        let start = vec.as_ptr().align_offset(64).min(7);
        Values { vec, start, len: 0, cap }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Room for `m` more values: where the next goes.
    fn room(&mut self, m: usize) -> *mut f64 {
        assert!(self.len + m <= self.cap, "more values than the batch holds");
        // SAFETY: within the vector's capacity (start + cap ≤ cap + 7).
        unsafe { self.vec.as_mut_ptr().add(self.start + self.len) }
    }

    /// Append the values of an iterator of known length.
    fn extend(&mut self, values: impl ExactSizeIterator<Item = f64>) {
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

    fn extend_repeat(&mut self, v: f64, m: usize) {
        self.extend(std::iter::repeat_n(v, m));
    }

    /// The values written so far.
    fn as_mut_slice(&mut self) -> &mut [f64] {
        // SAFETY: the `len` values from `start` were written.
        unsafe { std::slice::from_raw_parts_mut(self.vec.as_mut_ptr().add(self.start), self.len) }
    }

    fn finish(mut self) -> ScalarBuffer<f64> {
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

/// The current data page: its buffer, its definition levels (nullable
/// columns) and dictionary indices, and the slots not yet handed out.
struct PageState {
    buf: Bytes,
    def: Option<Hybrid>,
    indices: Hybrid,
    slots_left: usize,
}

/// A qualifying column chunk, decoded batch by batch.
pub struct FloatColumn {
    pages: Box<dyn PageReader>,
    dict: Vec<f64>,
    nullable: bool,
    page: Option<PageState>,
}

impl FloatColumn {
    /// The chunk's reader, or `None` when it does not qualify (see the
    /// module's comment): then arrow-rs reads it. Reads its dictionary page.
    pub fn open<R: ChunkReader + 'static>(
        file: Arc<R>,
        chunk: &ColumnChunkMetaData,
        rows: usize,
    ) -> Result<Option<FloatColumn>, String> {
        let Some(DictionaryChunk { pages, dict: buf, nullable }) =
            DictionaryChunk::open(file, chunk, rows, PhysicalType::DOUBLE)?
        else {
            return Ok(None);
        };
        let dict = buf.chunks_exact(8).map(|v| f64::from_le_bytes(v.try_into().expect("8 bytes"))).collect();
        Ok(Some(FloatColumn { pages, dict, nullable, page: None }))
    }

    /// The next `n` rows (null slots hold 0.0).
    pub fn read(&mut self, n: usize) -> Result<Float64Array, PageError> {
        let mut out = Values::with_capacity(n);
        let mut valid = self.nullable.then(|| BooleanBufferBuilder::new(n));
        while out.len() < n {
            if self.page.as_ref().is_none_or(|p| p.slots_left == 0) {
                let next = self.next_page(n - out.len())?;
                self.page = Some(next);
            }
            let page = self.page.as_mut().expect("a page with slots left");
            let k = (n - out.len()).min(page.slots_left);
            let base = out.len();
            let defined = match (&mut page.def, &mut valid) {
                (Some(def), Some(valid)) => read_levels(def, &page.buf, k, valid)?,
                _ => k,
            };
            read_values(&mut page.indices, &page.buf, defined, &self.dict, &mut out)?;
            if defined < k {
                // Values of the defined slots moved to their slots, from
                // the last (each moves right or stays), nulls 0.0.
                let valid = valid.as_ref().expect("a nullable column has levels");
                let bits = valid.as_slice();
                let start = valid.len() - k;
                out.extend_repeat(0.0, k - defined);
                spread_defined(&mut out.as_mut_slice()[base..], defined, &bits[..(start + k).div_ceil(8)], start);
            }
            page.slots_left -= k;
        }
        let nulls = valid.map(|mut v| NullBuffer::new(v.finish())).filter(|v| v.null_count() > 0);
        Ok(Float64Array::new(out.finish(), nulls))
    }

    /// The next data page; `wanted`: rows still to read (for the message
    /// when the chunk ends early).
    fn next_page(&mut self, wanted: usize) -> Result<PageState, PageError> {
        let page = match self.pages.get_next_page().map_err(|e| parquet_message(&e))? {
            Some(p) => p,
            None => return Err(format!("the column chunk ended {wanted} rows early").into()),
        };
        let DataPage { slots, def, values } = data_page(&page, self.nullable)?;
        let buf = page.buffer().clone();
        if slots == 0 {
            return Err(PageError::Damaged("an empty data page".into()));
        }
        // A page of nulls only may have no index bit width at all.
        let width = buf.get(values).copied().unwrap_or(0);
        if width > 32 {
            return Err(format!("dictionary indices of {width} bits").into());
        }
        let indices = Hybrid::new((values + 1).min(buf.len())..buf.len(), usize::from(width));
        Ok(PageState { def: def.map(|r| Hybrid::new(r, 1)), indices, slots_left: slots, buf })
    }
}

/// The first `defined` values of `slots` moved to the slots whose
/// validity bit (bit `start + s` of `bits` for slot `s`) is set, in order;
/// the other slots 0.0. From the last slot down (each value moves right or
/// stays, so none is overwritten before it moves), 64 slots at a time: a
/// block with no null moves as one copy (nulls are usually rare), others
/// slot by slot, branch-free.
fn spread_defined(slots: &mut [f64], defined: usize, bits: &[u8], start: usize) {
    let k = slots.len();
    assert!(defined <= k && (start + k).div_ceil(8) <= bits.len());
    let mut from = defined;
    let mut end = k;
    while end > 0 {
        let c = end.min(64);
        let lo = end - c;
        let word = bits_at(bits, start + lo, c);
        if word == low_mask(c) {
            slots.copy_within(from - c..from, lo);
            from -= c;
        } else {
            for i in (0..c).rev() {
                let v = (word >> i & 1) as usize;
                from -= v;
                // A null slot reads some slot at or past `from` (in
                // bounds: from stays ≤ the slot) and writes 0.0.
                let x = slots[from.min(k - 1)];
                slots[lo + i] = if v == 1 { x } else { 0.0 };
            }
        }
        end = lo;
    }
}

/// `c ≤ 64` bits of `bits` from bit `at` (least significant first).
fn bits_at(bits: &[u8], at: usize, c: usize) -> u64 {
    let first = at / 8;
    let last = (at + c).div_ceil(8).min(bits.len());
    let word = bits[first..last].iter().rev().fold(0u128, |w, &b| w << 8 | u128::from(b));
    (word >> (at % 8)) as u64 & low_mask(c)
}

/// `k` definition levels (0 or 1) appended to `valid`; returns the count
/// of 1s (defined slots).
fn read_levels(def: &mut Hybrid, buf: &[u8], k: usize, valid: &mut BooleanBufferBuilder) -> Result<usize, String> {
    let (mut done, mut ones) = (0, 0);
    while done < k {
        match def.take(buf, k - done)? {
            Piece::Repeat(level, m) => {
                if level > 1 {
                    return Err(format!("definition level {level} in a column of at most 1"));
                }
                valid.append_n(m, level == 1);
                ones += if level == 1 { m } else { 0 };
                done += m;
            }
            Piece::Packed { at, first, k: m } => {
                let bytes = &buf[at..def.end()];
                valid.append_packed_range(first..first + m, bytes);
                ones += (first..first + m).filter(|&j| bytes[j / 8] >> (j % 8) & 1 == 1).count();
                done += m;
            }
        }
    }
    Ok(ones)
}

/// `k` values (dictionary entries by index) appended to `out`.
fn read_values(indices: &mut Hybrid, buf: &[u8], k: usize, dict: &[f64], out: &mut Values) -> Result<(), String> {
    let mut done = 0;
    let past = |i: u64| format!("dictionary index {i} past a dictionary of {} values", dict.len());
    while done < k {
        match indices.take(buf, k - done)? {
            Piece::Repeat(i, m) => {
                let v = *dict.get(i as usize).ok_or_else(|| past(u64::from(i)))?;
                out.extend_repeat(v, m);
                done += m;
            }
            Piece::Packed { at, first, k: m } => {
                unpack_lookup(&buf[at..indices.end()], indices.width, first, m, dict, out).map_err(past)?;
                done += m;
            }
        }
    }
    Ok(())
}

/// Values `first..first + m` of a bit-packed run of `w`-bit indices (`run`:
/// its bytes, enough for them), looked up in `dict`, appended to `out`; the
/// first index past the dictionary as the error.
fn unpack_lookup(run: &[u8], w: usize, first: usize, m: usize, dict: &[f64], out: &mut Values) -> Result<(), u64> {
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
                out.len += 8 * g;
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
    out.len += 8 * groups;
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
            out.len += done;
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
    out.len += done;
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

    /// Hybrid pieces stop inside runs and resume: a repeated run of 5 × 3
    /// and a bit-packed group of 8 two-bit values, taken 3 at a time.
    #[test]
    fn hybrid_runs_resume_inside_runs() {
        // Header 5 << 1 (repeat), value 3; header (1 << 1) | 1 (one group),
        // 2 bytes: values 0,1,2,3,3,2,1,0.
        let buf = [10u8, 3, 3, 0b1110_0100, 0b0001_1011];
        let dict = [10.0, 11.0, 12.0, 13.0];
        let mut h = Hybrid::new(0..buf.len(), 2);
        let mut out = Values::with_capacity(13);
        for _ in 0..4 {
            read_values(&mut h, &buf, 3, &dict, &mut out).expect("valid");
        }
        read_values(&mut h, &buf, 1, &dict, &mut out).expect("valid");
        assert_eq!(out.as_mut_slice(), [13.0, 13.0, 13.0, 13.0, 13.0, 10.0, 11.0, 12.0, 13.0, 13.0, 12.0, 11.0, 10.0]);
        // Past the end: an error, not a panic.
        assert_eq!(read_values(&mut h, &buf, 1, &dict, &mut out).unwrap_err(), "the page's values ended early");
        // An index past the dictionary.
        let mut h = Hybrid::new(0..buf.len(), 2);
        let mut out = Values::with_capacity(13);
        assert_eq!(
            read_values(&mut h, &buf, 13, &dict[..3], &mut out).unwrap_err(),
            "dictionary index 3 past a dictionary of 3 values"
        );
    }

    #[test]
    fn spread_puts_values_on_their_valid_slots() {
        // Slots 0..10 from bit 3 of the validity: valid at 0, 2, 3, 7, 9.
        let valid = [true, false, true, true, false, false, false, true, false, true];
        let mut bits = [0u8; 2];
        for (s, &v) in valid.iter().enumerate() {
            bits[(s + 3) / 8] |= u8::from(v) << ((s + 3) % 8);
        }
        let mut slots = [1.0, 2.0, 3.0, 4.0, 5.0, -1.0, -1.0, -1.0, -1.0, -1.0];
        spread_defined(&mut slots, 5, &bits, 3);
        assert_eq!(slots, [1.0, 0.0, 2.0, 3.0, 0.0, 0.0, 0.0, 4.0, 0.0, 5.0]);
        // Long: blocks of 64 with and without nulls, from an odd bit.
        let n: usize = 300;
        let valid: Vec<bool> = (0..n).map(|s| !(70..75).contains(&s) && s % 97 != 3).collect();
        let mut bits = vec![0u8; (n + 5).div_ceil(8)];
        for (s, &v) in valid.iter().enumerate() {
            bits[(s + 5) / 8] |= u8::from(v) << ((s + 5) % 8);
        }
        let defined = valid.iter().filter(|&&v| v).count();
        let mut slots: Vec<f64> = (0..n).map(|i| if i < defined { i as f64 + 1.0 } else { -1.0 }).collect();
        spread_defined(&mut slots, defined, &bits, 5);
        let mut next = 0.0;
        for (s, &v) in valid.iter().enumerate() {
            let want = if v {
                next += 1.0;
                next
            } else {
                0.0
            };
            assert_eq!(slots[s], want, "slot {s}");
        }
        // All null.
        let mut none = [7.0; 4];
        spread_defined(&mut none, 0, &[0u8], 0);
        assert_eq!(none, [0.0; 4]);
    }

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
