//! 0/1 integer columns of Parquet decoded from their pages straight to bits.
//!
//! Amenity flags and dummies stored as INT64 are dictionary-encoded by the
//! common writers (arrow-rs, pyarrow), with a dictionary of the values 0
//! and 1 and one index bit per row. arrow-rs decodes them as any integer
//! column: the RLE / bit-packed indices are unpacked to integers and
//! gathered from the dictionary into an `Int64` array (8 bytes per row),
//! which the kernels then test and pack back into bits. But with a
//! one-bit index, a bit-packed run *is* the column's bits, least
//! significant first as in Arrow's bitmaps: here a row group's 0/1 column
//! is read page by page into a `BooleanArray`, never widened. (Benchmark
//! file, 10M rows: the benchmark model's eight flags took 155 of arrow-rs's
//! 330 ms of decoding.)
//!
//! A column chunk qualifies when — checked before the row group is read —
//! it is INT64, flat (no repetition, at most one definition level), every
//! data page is dictionary-encoded (the chunk's page encoding statistics)
//! and its dictionary holds one or two values, each 0 or 1. Any other chunk
//! is left to arrow-rs. The page format (chunk, data page layouts, hybrid
//! runs) is `page_format`'s.
//!
//! BOOLEAN chunks (pandas' `bool`, DuckDB's and polars' booleans: yes/no
//! columns, which patsy codes as categories) are read the same way: their
//! PLAIN values are bit-packed, least significant bit first — already
//! Arrow's bitmap — and their RLE values (v2 pages) are the hybrid of
//! width 1 after a 4-byte length. arrow-rs unpacks them to one `bool` a
//! row and packs them again (a first pass of eight yes/no columns spent
//! 20% there).

use super::page_format::{data_page, into_buffer, DataPage, FlatChunk, PageError, PageValues, Pages, Run, Runs};
use crate::bits::low_mask;
use arrow::array::BooleanArray;
use arrow::array::BooleanBufferBuilder;
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer};
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::ChunkReader;
use std::sync::Arc;

/// Bits in 64-bit words, least significant first (Arrow's bitmap layout on
/// a little-endian machine). Invariant: bits past `len` are clear.
#[derive(Default, Debug, PartialEq)]
struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    /// Append the low `n ≤ 64` bits of `word` (higher bits clear).
    fn push(&mut self, word: u64, n: usize) {
        debug_assert!(n <= 64 && word & low_mask(n) == word);
        if n == 0 {
            return;
        }
        let s = self.len % 64;
        if s == 0 {
            self.words.push(word);
        } else {
            *self.words.last_mut().expect("a partial word") |= word << s;
            if s + n > 64 {
                self.words.push(word >> (64 - s));
            }
        }
        self.len += n;
    }

    fn push_repeat(&mut self, bit: bool, mut n: usize) {
        let word = if bit { !0 } else { 0 };
        while n > 0 {
            let k = n.min(64);
            self.push(word & low_mask(k), k);
            n -= k;
        }
    }

    /// `n` bits at bit `at` (`n ≤ 64`, `at + n ≤ len`).
    fn word_at(&self, at: usize, n: usize) -> u64 {
        if n == 0 {
            return 0;
        }
        let (w, s) = (at / 64, at % 64);
        let mut x = self.words[w] >> s;
        if s > 0 && w + 1 < self.words.len() {
            x |= self.words[w + 1] << (64 - s);
        }
        x & low_mask(n)
    }

    fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// The little-endian 64-bit word of `bytes` from byte `at`, low `n ≤ 64`
/// bits (bytes past the end read as 0).
fn bytes_word(bytes: &[u8], at: usize, n: usize) -> u64 {
    let word = match bytes.get(at..at + 8) {
        Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
        None => bytes[at.min(bytes.len())..].iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b)),
    };
    word & low_mask(n)
}

/// A chunk's dictionary: the 0/1 value at index 0 and, if there is one, at
/// index 1.
#[derive(Clone, Copy, Debug)]
struct Dictionary([Option<bool>; 2]);

impl Dictionary {
    /// Rows' values from their one-bit indices (`n ≤ 64` bits of `idx`):
    /// `idx & at1 | !idx & at0`, with `at_i` all ones where value `i` is 1.
    #[inline]
    fn map_word(self, idx: u64, n: usize) -> Result<u64, String> {
        let mask = |v: Option<bool>| if v == Some(true) { !0u64 } else { 0 };
        if self.0[1].is_none() && idx & low_mask(n) != 0 {
            return Err("a dictionary index 1 in a dictionary of one value".into());
        }
        Ok((idx & mask(self.0[1]) | !idx & mask(self.0[0])) & low_mask(n))
    }

    fn value(self, idx: u64) -> Result<bool, String> {
        match self.0.get(idx as usize).copied().flatten() {
            Some(v) => Ok(v),
            None => Err(format!("dictionary index {idx} past a dictionary of {} values", self.len())),
        }
    }

    fn len(self) -> usize {
        self.0.iter().flatten().count()
    }
}

/// Decode `count` dictionary indices of bit width `width` to the rows'
/// values.
fn decode_indices(data: &[u8], width: usize, count: usize, dict: Dictionary, out: &mut Bits) -> Result<(), String> {
    if width <= 1 {
        return decode_one_bit_indices(data, width, count, dict, out);
    }
    let mut runs = Runs::new(data, width, count);
    while let Some(run) = runs.next_run()? {
        match run {
            Run::Repeat(v, n) => out.push_repeat(dict.value(u64::from(v))?, n),
            Run::Packed(bytes, n) => {
                // Wider indices than a dictionary of two values needs: valid,
                // if unusual; value by value.
                for i in 0..n {
                    let (bit, mut v) = (i * width, 0u64);
                    for b in 0..width {
                        let at = bit + b;
                        v |= u64::from(bytes[at / 8] >> (at % 8) & 1) << b;
                    }
                    out.push(u64::from(dict.value(v)?), 1);
                }
            }
        }
    }
    Ok(())
}

/// [`decode_indices`] for indices of at most one bit, the common case:
/// a bit-packed run's indices 64 at a time, mapped through the dictionary
/// word by word.
fn decode_one_bit_indices(
    data: &[u8],
    width: usize,
    count: usize,
    dict: Dictionary,
    out: &mut Bits,
) -> Result<(), String> {
    let mut runs = Runs::new(data, width, count);
    while let Some(run) = runs.next_run()? {
        match run {
            Run::Repeat(v, n) => out.push_repeat(dict.value(u64::from(v))?, n),
            Run::Packed(bytes, n) => {
                for i in (0..n).step_by(64) {
                    let k = (n - i).min(64);
                    let idx = if width == 0 { 0 } else { bytes_word(bytes, i / 8, k) };
                    out.push(dict.map_word(idx, k)?, k);
                }
            }
        }
    }
    Ok(())
}

/// Decode `count` booleans of a data page's values (`encoding` PLAIN or
/// RLE) to bits.
fn decode_booleans(data: &[u8], encoding: Encoding, count: usize, out: &mut Bits) -> Result<(), String> {
    if encoding == Encoding::RLE {
        // The hybrid of width 1, after its length in 4 bytes.
        let len = data.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
        let Some(runs) = len.and_then(|len| data.get(4..4 + len)) else {
            return Err("RLE booleans past the end of the page".into());
        };
        return decode_one_bit_indices(runs, 1, count, Dictionary([Some(false), Some(true)]), out);
    }
    if data.len() * 8 < count {
        return Err(format!("a page of {count} booleans in {} bytes", data.len()));
    }
    for i in (0..count).step_by(64) {
        let k = (count - i).min(64);
        out.push(bytes_word(data, i / 8, k), k);
    }
    Ok(())
}

/// Scatter the low bits of `src` to the set bits of `mask`, in order
/// (BMI2's `pdep`).
fn deposit(mut src: u64, mut mask: u64) -> u64 {
    let mut out = 0;
    while mask != 0 {
        let lowest = mask & mask.wrapping_neg();
        if src & 1 == 1 {
            out |= lowest;
        }
        src >>= 1;
        mask &= mask - 1;
    }
    out
}

/// What a chunk's values are.
#[derive(Clone, Copy, Debug)]
enum Values {
    /// 0/1 integers through their dictionary.
    Dictionary(Dictionary),
    /// Booleans.
    Boolean,
}

/// A qualifying column chunk, read as bits batch by batch.
pub struct BinaryColumn {
    pages: Pages,
    values_are: Values,
    nullable: bool,
    /// The current page's values (0 on null slots) and validity (`None`:
    /// no null in it), `len` slots, and the next slot to hand out. A batch
    /// within one page is a slice of these buffers (no copy).
    values: Buffer,
    valid: Option<Buffer>,
    len: usize,
    at: usize,
}

impl BinaryColumn {
    /// The chunk as bits, or `None` when it does not qualify (see the
    /// module's comment): then arrow-rs reads it. Reads its dictionary page.
    pub fn open<R: ChunkReader + 'static>(
        file: Arc<R>,
        chunk: &ColumnChunkMetaData,
        rows: usize,
    ) -> Result<Option<BinaryColumn>, String> {
        let Some(FlatChunk { pages, dict: Some(buf), nullable }) =
            FlatChunk::open(file, chunk, rows, PhysicalType::INT64, PageValues::Dictionary)?
        else {
            return Ok(None);
        };
        let n = buf.len() / 8;
        if !(1..=2).contains(&n) {
            return Ok(None);
        }
        let mut dict = [None; 2];
        for (i, v) in buf.chunks_exact(8).enumerate() {
            dict[i] = match i64::from_le_bytes(v.try_into().expect("8 bytes")) {
                0 => Some(false),
                1 => Some(true),
                _ => return Ok(None),
            };
        }
        Ok(Some(BinaryColumn::new(pages, Values::Dictionary(Dictionary(dict)), nullable)))
    }

    /// A BOOLEAN chunk as bits, or `None` when it is not flat or some data
    /// page is neither PLAIN nor RLE (then arrow-rs reads it).
    pub fn open_boolean<R: ChunkReader + 'static>(
        file: Arc<R>,
        chunk: &ColumnChunkMetaData,
        rows: usize,
    ) -> Result<Option<BinaryColumn>, String> {
        Ok(match FlatChunk::open(file, chunk, rows, PhysicalType::BOOLEAN, PageValues::Booleans)? {
            Some(FlatChunk { pages, dict: None, nullable }) => {
                Some(BinaryColumn::new(pages, Values::Boolean, nullable))
            }
            _ => None,
        })
    }

    fn new(pages: Pages, values_are: Values, nullable: bool) -> BinaryColumn {
        BinaryColumn {
            pages,
            values_are,
            nullable,
            values: Buffer::from_vec(Vec::<u64>::new()),
            valid: None,
            len: 0,
            at: 0,
        }
    }

    /// The next `n` rows (nulls: value 0 and a null slot).
    pub fn read(&mut self, n: usize) -> Result<BooleanArray, PageError> {
        if n == 0 {
            return Ok(BooleanArray::new(BooleanBuffer::new_unset(0), None));
        }
        if self.at == self.len {
            self.next_page(n)?;
        }
        if n <= self.len - self.at {
            let slice = |b: &Buffer| BooleanBuffer::new(b.clone(), self.at, n);
            let array = BooleanArray::new(slice(&self.values), self.valid.as_ref().map(|v| NullBuffer::new(slice(v))));
            self.at += n;
            return Ok(array);
        }
        // Across pages: copied.
        let mut values = BooleanBufferBuilder::new(n);
        let mut valid: Option<BooleanBufferBuilder> = None;
        while values.len() < n {
            if self.at == self.len {
                self.next_page(n - values.len())?;
                continue;
            }
            let done = values.len();
            let k = (n - done).min(self.len - self.at);
            values.append_packed_range(self.at..self.at + k, self.values.as_slice());
            if self.valid.is_some() || valid.is_some() {
                let out = valid.get_or_insert_with(|| {
                    let mut v = BooleanBufferBuilder::new(n);
                    v.append_n(done, true);
                    v
                });
                match &self.valid {
                    Some(p) => out.append_packed_range(self.at..self.at + k, p.as_slice()),
                    None => out.append_n(k, true),
                }
            }
            self.at += k;
        }
        Ok(BooleanArray::new(values.finish(), valid.map(|mut v| NullBuffer::new(v.finish()))))
    }

    /// Decode the next data page; `wanted`: rows still to read (for the
    /// message when the chunk ends early).
    fn next_page(&mut self, wanted: usize) -> Result<(), PageError> {
        let page = match self.pages.next_page()? {
            Some(p) => p,
            None => return Err(format!("the column chunk ended {wanted} rows early").into()),
        };
        let layout = data_page(&page, self.nullable)?;
        let decodes = match self.values_are {
            Values::Dictionary(_) => layout.is_dictionary(),
            Values::Boolean => matches!(layout.encoding, Encoding::PLAIN | Encoding::RLE),
        };
        if !decodes {
            return Err(layout.unsupported());
        }
        let DataPage { slots, def, values, encoding, .. } = layout;
        let buf = page.buffer();
        let (def, data) = (def.map(|r| &buf[r]), &buf[values..]);
        let valid = match def {
            Some(d) => {
                let mut v = Bits::default();
                let mut runs = Runs::new(d, 1, slots);
                while let Some(run) = runs.next_run()? {
                    match run {
                        Run::Repeat(x, k) if x <= 1 => v.push_repeat(x == 1, k),
                        Run::Repeat(x, _) => {
                            return Err(format!("definition level {x} in a column of at most 1").into())
                        }
                        Run::Packed(bytes, k) => {
                            for i in (0..k).step_by(64) {
                                v.push(bytes_word(bytes, i / 8, (k - i).min(64)), (k - i).min(64));
                            }
                        }
                    }
                }
                Some(v)
            }
            None => None,
        };
        let defined = valid.as_ref().map_or(slots, Bits::count_ones);
        let mut values = Bits { words: Vec::with_capacity(slots.div_ceil(64)), len: 0 };
        if defined > 0 {
            match self.values_are {
                Values::Dictionary(dict) => {
                    let Some((&width, indices)) = data.split_first() else {
                        return Err(PageError::Damaged("a data page without its indices' bit width".into()));
                    };
                    if width > 32 {
                        return Err(format!("dictionary indices of {width} bits").into());
                    }
                    decode_indices(indices, usize::from(width), defined, dict, &mut values)?;
                }
                Values::Boolean => decode_booleans(data, encoding, defined, &mut values)?,
            }
        }
        let mut valid_buffer = None;
        if let Some(v) = valid.filter(|_| defined < slots) {
            // Values of the defined slots to every slot (0 on nulls).
            let mut spread = Bits::default();
            let mut k = 0;
            for w in 0..slots.div_ceil(64) {
                let nb = (slots - 64 * w).min(64);
                let mask = v.word_at(64 * w, nb);
                let c = mask.count_ones() as usize;
                spread.push(deposit(values.word_at(k, c), mask), nb);
                k += c;
            }
            values = spread;
            valid_buffer = Some(Buffer::from_vec(v.words));
        }
        self.len = values.len;
        self.values = Buffer::from_vec(values.words);
        self.valid = valid_buffer;
        self.at = 0;
        self.pages.recycle(into_buffer(page));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_append_across_words_and_read_back() {
        let mut b = Bits::default();
        let mut want = Vec::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for n in [1usize, 63, 64, 5, 64, 17, 0, 40] {
            x = x.rotate_left(13).wrapping_mul(0x2545_F491_4F6C_DD1D);
            let w = x & low_mask(n);
            b.push(w, n);
            want.extend((0..n).map(|i| w >> i & 1 == 1));
        }
        assert_eq!(b.len, want.len());
        for (i, &bit) in want.iter().enumerate() {
            assert_eq!(b.word_at(i, 1) == 1, bit, "bit {i}");
        }
        assert_eq!(b.count_ones(), want.iter().filter(|&&v| v).count());
    }

    #[test]
    fn booleans_decode_from_plain_and_rle_pages_and_short_ones_are_errors() {
        // PLAIN: bit-packed, least significant bit first.
        let mut out = Bits::default();
        decode_booleans(&[0b1010_0101, 0b1], Encoding::PLAIN, 9, &mut out).unwrap();
        assert_eq!((0..9).map(|i| out.word_at(i, 1)).collect::<Vec<_>>(), [1, 0, 1, 0, 0, 1, 0, 1, 1]);
        assert_eq!(
            decode_booleans(&[0xff], Encoding::PLAIN, 9, &mut Bits::default()).unwrap_err(),
            "a page of 9 booleans in 1 bytes"
        );
        // RLE: a 4-byte length, then a run of 3 trues and a packed group.
        let mut out = Bits::default();
        decode_booleans(&[4, 0, 0, 0, 0b110, 1, 0b11, 0b0101_1010], Encoding::RLE, 11, &mut out).unwrap();
        assert_eq!((0..11).map(|i| out.word_at(i, 1)).collect::<Vec<_>>(), [1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0]);
        assert_eq!(
            decode_booleans(&[9, 0, 0, 0, 0b110, 1], Encoding::RLE, 3, &mut Bits::default()).unwrap_err(),
            "RLE booleans past the end of the page"
        );
    }

    #[test]
    fn deposit_matches_its_definition() {
        let (src, mask) = (0b1011u64, 0b1101_0010u64);
        // Set bits of the mask, low to high: 1, 4, 6, 7 take src bits 1, 1, 0, 1.
        assert_eq!(deposit(src, mask), 0b1001_0010);
    }

    #[test]
    fn hybrid_runs_decode_repeats_and_packed_groups() {
        // RLE run of 3 × 1, then one bit-packed group of 8 one-bit values.
        let data = [0b110, 1, 0b11, 0b1010_0101];
        let mut out = Bits::default();
        decode_indices(&data, 1, 11, Dictionary([Some(false), Some(true)]), &mut out).expect("valid");
        let got: Vec<u64> = (0..11).map(|i| out.word_at(i, 1)).collect();
        assert_eq!(got, [1, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1]);
        // The same indices through the dictionary [1, 0].
        let mut out = Bits::default();
        decode_indices(&data, 1, 11, Dictionary([Some(true), Some(false)]), &mut out).expect("valid");
        let got: Vec<u64> = (0..11).map(|i| out.word_at(i, 1)).collect();
        assert_eq!(got, [0, 0, 0, 0, 1, 0, 1, 1, 0, 1, 0]);
        // Index 1 in a dictionary of one value; a truncated run.
        let mut out = Bits::default();
        let one = Dictionary([Some(true), None]);
        assert_eq!(
            decode_indices(&data, 1, 11, one, &mut out).unwrap_err(),
            "dictionary index 1 past a dictionary of 1 values"
        );
        // Two-bit indices (valid, if wider than needed): a bit-packed group
        // of 0,1,1,0,1,0,0,1 and a repeated 1; then an index past the
        // dictionary.
        let wide = [0b11, 0x14, 0x41, 0b110, 1];
        let mut out = Bits::default();
        decode_indices(&wide, 2, 11, Dictionary([Some(false), Some(true)]), &mut out).expect("valid");
        let got: Vec<u64> = (0..11).map(|i| out.word_at(i, 1)).collect();
        assert_eq!(got, [0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1]);
        let past = [0b11, 0x14, 0x42];
        assert_eq!(
            decode_indices(&past, 2, 8, Dictionary([Some(false), Some(true)]), &mut Bits::default()).unwrap_err(),
            "dictionary index 2 past a dictionary of 2 values"
        );
        assert_eq!(
            decode_indices(&data[..3], 1, 11, Dictionary([Some(false), Some(true)]), &mut Bits::default()).unwrap_err(),
            "a bit-packed run of 8 values past the end of the page"
        );
    }
}
