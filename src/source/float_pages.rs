//! DOUBLE columns of Parquet decoded from their pages.
//!
//! Measurements such as sizes, distances and ages take a few thousand
//! distinct values, so the common writers (arrow-rs, pyarrow) store them
//! dictionary-encoded: a dictionary page of the distinct values (PLAIN) and
//! per row an index of a few bits (the RLE / bit-packing hybrid). arrow-rs
//! decodes such a chunk through its generic dictionary decoder — indices
//! unpacked to a buffer, then gathered value by value through an iterator,
//! then moved apart for nulls — which was ~40% of the benchmark model's
//! first pass. Here the indices of a run are read straight from the page
//! (`dict_unpack`) and looked up into the batch's `Float64Array`: the same
//! values and validity arrow-rs gives (null slots hold 0.0), in one sweep,
//! 64-byte aligned. Run state is kept between batches, so a batch may end
//! anywhere in a run.
//!
//! Real values (prices in cents, coordinates) have too many distinct
//! values for a dictionary: their pages are PLAIN (8 bytes a value, copied)
//! or BYTE_STREAM_SPLIT (the values' bytes in 8 streams, put back together
//! by byte transposes: `float_values`), also after a dictionary that
//! overflowed part-way through a chunk.
//!
//! A column chunk qualifies when — checked before the row group is read —
//! it is DOUBLE, flat (no repetition, at most one definition level), every
//! data page is dictionary-encoded, PLAIN or BYTE_STREAM_SPLIT (the chunk's
//! page encoding statistics) and a dictionary page, if any, is PLAIN. Any
//! other chunk is left to arrow-rs, and so are the rows from a page of
//! another encoding on. The page format (chunk, data page layouts, hybrid
//! runs read in pieces) is `page_format`'s.
//!
//! A column that the model reads through a function of one argument
//! (`np.log(rent)`) can be read with that function's values beside its own
//! ([`FloatColumn::set_functions`]): for dictionary pages the function is
//! taken of the dictionary once and its values looked up by the same
//! indices — a lookup where the evaluation of a logarithm costs ~6 ns a
//! row; for PLAIN and BYTE_STREAM_SPLIT pages it is taken of the values
//! read. Either way each value is `Function::map`'s of the column's value
//! (null slots hold its value of NaN, as the design's evaluation gives
//! them), so the model's numbers do not depend on where it was taken.

use super::dict_unpack::unpack_lookup;
use super::float_values::{unsplit, Values};
use super::page_format::{data_page, into_buffer, DataPage, FlatChunk, Hybrid, PageError, PageValues, Pages, Piece};
use crate::bits::low_mask;
use crate::elementary::Function;
use arrow::array::{BooleanBufferBuilder, Float64Array};
use arrow::buffer::NullBuffer;
use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::basic::Type as PhysicalType;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::ChunkReader;
use std::sync::Arc;

/// The current data page: its buffer, its definition levels (nullable
/// columns) and where its values are, and the slots not yet handed out.
struct PageState {
    buf: Bytes,
    def: Option<Hybrid>,
    values: PageData,
    slots_left: usize,
}

/// Where a data page's next values are.
#[derive(Clone)]
enum PageData {
    /// Dictionary indices (the hybrid of bit-packed and repeated runs).
    Indices(Hybrid),
    /// PLAIN values from byte `at` on.
    Plain { at: usize },
    /// BYTE_STREAM_SPLIT: `n` values in 8 streams of `n` bytes from byte
    /// `at`; value `next` is the next to read.
    Split { at: usize, n: usize, next: usize },
}

/// A qualifying column chunk, decoded batch by batch.
pub struct FloatColumn {
    pages: Pages,
    /// The dictionary (`None` when the chunk has none; empty when the
    /// chunk's rows are all null).
    dict: Option<Vec<f64>>,
    nullable: bool,
    page: Option<PageState>,
    /// Functions read beside the values.
    functions: Vec<Mapped>,
}

/// A function read beside a column's values.
struct Mapped {
    f: Function,
    /// Its values of the dictionary's.
    dict: Option<Vec<f64>>,
    /// Its value of NaN: a null slot's.
    of_null: f64,
}

impl FloatColumn {
    /// The chunk's reader, or `None` when it does not qualify (see the
    /// module's comment): then arrow-rs reads it. Reads its dictionary page.
    pub fn open<R: ChunkReader + 'static>(
        file: Arc<R>,
        chunk: &ColumnChunkMetaData,
        rows: usize,
    ) -> Result<Option<FloatColumn>, String> {
        let Some(FlatChunk { mut pages, dict, nullable }) =
            FlatChunk::open(file, chunk, rows, PhysicalType::DOUBLE, PageValues::Any)?
        else {
            return Ok(None);
        };
        let dict = dict.map(|b| {
            let values = b.chunks_exact(8).map(|v| f64::from_le_bytes(v.try_into().expect("8 bytes"))).collect();
            // The dictionary page's buffer holds the first data page.
            pages.recycle(b);
            values
        });
        Ok(Some(FloatColumn { pages, dict, nullable, page: None, functions: Vec::new() }))
    }

    /// The column read with `functions` of its values beside them (see the
    /// module's comment): [`read`](Self::read)'s second part, one array
    /// per function, in order.
    pub fn set_functions(&mut self, functions: &[Function]) {
        self.functions = functions
            .iter()
            .map(|&f| {
                let dict = self.dict.as_ref().map(|d| {
                    let mut out = vec![0.0; d.len()];
                    f.map(d, &mut out);
                    out
                });
                Mapped { f, dict, of_null: f.of(f64::NAN) }
            })
            .collect();
    }

    /// The next `n` rows (null slots hold 0.0), and the functions' values
    /// of them ([`set_functions`](Self::set_functions)).
    pub fn read(&mut self, n: usize) -> Result<(Float64Array, Vec<Float64Array>), PageError> {
        let mut out = Values::with_capacity(n);
        let mut mapped: Vec<Values> = self.functions.iter().map(|_| Values::with_capacity(n)).collect();
        let mut valid = self.nullable.then(|| BooleanBufferBuilder::new(n));
        while out.len() < n {
            if self.page.as_ref().is_none_or(|p| p.slots_left == 0) {
                if let Some(done) = self.page.take() {
                    self.pages.recycle(done.buf);
                }
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
            // The functions' values by the same indices, read again from
            // where the values' reading starts.
            let indices = match &page.values {
                PageData::Indices(_) if !mapped.is_empty() => Some(page.values.clone()),
                _ => None,
            };
            read_values(&mut page.values, &page.buf, defined, self.dict.as_deref().unwrap_or_default(), &mut out)?;
            for (m, values) in self.functions.iter().zip(&mut mapped) {
                match (&indices, &m.dict) {
                    (Some(indices), Some(dict)) => read_values(&mut indices.clone(), &page.buf, defined, dict, values)?,
                    _ => {
                        values.extend_repeat(0.0, defined);
                        let at = values.len() - defined;
                        m.f.map(&out.as_mut_slice()[base..base + defined], &mut values.as_mut_slice()[at..]);
                    }
                }
            }
            if defined < k {
                // Values of the defined slots moved to their slots, from
                // the last (each moves right or stays), nulls 0.0 (the
                // functions': their value of NaN).
                let valid = valid.as_ref().expect("a nullable column has levels");
                let bits = valid.as_slice();
                let start = valid.len() - k;
                let bits = &bits[..(start + k).div_ceil(8)];
                out.extend_repeat(0.0, k - defined);
                spread_defined(&mut out.as_mut_slice()[base..], defined, bits, start);
                for (m, values) in self.functions.iter().zip(&mut mapped) {
                    values.extend_repeat(0.0, k - defined);
                    let slots = &mut values.as_mut_slice()[base..];
                    spread_defined(slots, defined, bits, start);
                    for (s, v) in slots.iter_mut().enumerate() {
                        if !crate::bits::bit(bits, start + s) {
                            *v = m.of_null;
                        }
                    }
                }
            }
            page.slots_left -= k;
        }
        let nulls = valid.map(|mut v| NullBuffer::new(v.finish())).filter(|v| v.null_count() > 0);
        let mapped = mapped.into_iter().map(|v| Float64Array::new(v.finish(), nulls.clone())).collect();
        Ok((Float64Array::new(out.finish(), nulls), mapped))
    }

    /// The next data page; `wanted`: rows still to read (for the message
    /// when the chunk ends early).
    fn next_page(&mut self, wanted: usize) -> Result<PageState, PageError> {
        let page = match self.pages.next_page()? {
            Some(p) => p,
            None => return Err(format!("the column chunk ended {wanted} rows early").into()),
        };
        let layout = data_page(&page, self.nullable)?;
        let buf = into_buffer(page);
        if layout.slots == 0 {
            return Err(PageError::Damaged("an empty data page".into()));
        }
        let DataPage { slots, def, values, encoding, nulls } = layout;
        let data = match encoding {
            Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                if self.dict.is_none() {
                    return Err(PageError::Damaged("dictionary indices in a chunk without a dictionary".into()));
                }
                // A page of nulls only may have no index bit width at all.
                let width = buf.get(values).copied().unwrap_or(0);
                if width > 32 {
                    return Err(format!("dictionary indices of {width} bits").into());
                }
                PageData::Indices(Hybrid::new((values + 1).min(buf.len())..buf.len(), usize::from(width)))
            }
            Encoding::PLAIN => PageData::Plain { at: values },
            Encoding::BYTE_STREAM_SPLIT => {
                // The streams' length is the page's count of values, which a
                // v1 page with nulls says only through its levels.
                let n = match (&def, nulls) {
                    (Some(def), None) => count_defined(&buf, def.clone(), slots)?,
                    (_, Some(nulls)) => slots - nulls,
                    (None, None) => slots,
                };
                if values + 8 * n > buf.len() {
                    return Err(format!("BYTE_STREAM_SPLIT streams of {n} values past the end of the page").into());
                }
                PageData::Split { at: values, n, next: 0 }
            }
            _ => return Err(PageError::Unsupported(format!("a data page encoded as {encoding}"))),
        };
        Ok(PageState { def: def.map(|r| Hybrid::new(r, 1)), values: data, slots_left: slots, buf })
    }
}

/// The count of defined slots (definition level 1) among a page's `slots`.
fn count_defined(buf: &[u8], def: std::ops::Range<usize>, slots: usize) -> Result<usize, String> {
    let mut levels = Hybrid::new(def, 1);
    let mut valid = BooleanBufferBuilder::new(slots);
    read_levels(&mut levels, buf, slots, &mut valid)
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

/// The next `k` values of a page appended to `out`.
fn read_values(data: &mut PageData, buf: &[u8], k: usize, dict: &[f64], out: &mut Values) -> Result<(), String> {
    match data {
        PageData::Indices(indices) => read_indices(indices, buf, k, dict, out),
        PageData::Plain { at } => {
            let bytes = buf.get(*at..*at + 8 * k).ok_or("PLAIN values past the end of the page")?;
            out.extend(bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))));
            *at += 8 * k;
            Ok(())
        }
        PageData::Split { at, n, next } => {
            if *next + k > *n {
                return Err(format!("more values than the page's BYTE_STREAM_SPLIT streams hold ({n})"));
            }
            unsplit(&buf[*at..*at + 8 * *n], *n, *next, k, out);
            *next += k;
            Ok(())
        }
    }
}

/// `k` values (dictionary entries by index) appended to `out`.
fn read_indices(indices: &mut Hybrid, buf: &[u8], k: usize, dict: &[f64], out: &mut Values) -> Result<(), String> {
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
            read_indices(&mut h, &buf, 3, &dict, &mut out).expect("valid");
        }
        read_indices(&mut h, &buf, 1, &dict, &mut out).expect("valid");
        assert_eq!(out.as_mut_slice(), [13.0, 13.0, 13.0, 13.0, 13.0, 10.0, 11.0, 12.0, 13.0, 13.0, 12.0, 11.0, 10.0]);
        // Past the end: an error, not a panic.
        assert_eq!(read_indices(&mut h, &buf, 1, &dict, &mut out).unwrap_err(), "the page's values ended early");
        // An index past the dictionary.
        let mut h = Hybrid::new(0..buf.len(), 2);
        let mut out = Values::with_capacity(13);
        assert_eq!(
            read_indices(&mut h, &buf, 13, &dict[..3], &mut out).unwrap_err(),
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
}
