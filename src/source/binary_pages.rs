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
//! is left to arrow-rs. Formats: the RLE / bit-packing hybrid and the data
//! page layouts v1 and v2 of the Parquet format specification
//! (parquet-format, `Encodings.md` and `README.md`, "Data Pages").

use arrow::array::BooleanArray;
use arrow::array::BooleanBufferBuilder;
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer};
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::ChunkReader;
use parquet::file::serialized_reader::SerializedPageReader;
use std::sync::Arc;

/// Bits in 64-bit words, least significant first (Arrow's bitmap layout on
/// a little-endian machine). Invariant: bits past `len` are clear.
#[derive(Default, Debug, PartialEq)]
struct Bits {
    words: Vec<u64>,
    len: usize,
}

/// The low `n` bits of `x` (`n ≤ 64`).
fn low(x: u64, n: usize) -> u64 {
    if n >= 64 {
        x
    } else {
        x & ((1u64 << n) - 1)
    }
}

impl Bits {
    /// Append the low `n ≤ 64` bits of `word` (higher bits clear).
    fn push(&mut self, word: u64, n: usize) {
        debug_assert!(n <= 64 && low(word, n) == word);
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
            self.push(low(word, k), k);
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
        low(x, n)
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
    low(word, n)
}

/// One run of the RLE / bit-packing hybrid.
enum Run<'a> {
    /// A value repeated `len` times.
    Repeat(u64, usize),
    /// `len` values packed at the run's bit width, least significant bit
    /// first, from the start of these bytes (which run on to the end of
    /// the page: a word may be read whole past the run's last value).
    Packed(&'a [u8], usize),
}

/// ULEB-128 varint at `pos` (the hybrid's run headers).
#[inline(always)]
pub(super) fn uleb128(data: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = data.get(*pos) else {
            return Err("a run header past the end of the page".into());
        };
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("a run header longer than 64 bits".into())
}

/// The runs of `count` values of the hybrid encoding at bit width `width`
/// in `data`, one at a time. A last bit-packed run may hold more values
/// than are left (padding) and its bytes may stop after the last one used.
struct Runs<'a> {
    data: &'a [u8],
    width: usize,
    pos: usize,
    left: usize,
}

impl<'a> Runs<'a> {
    fn new(data: &'a [u8], width: usize, count: usize) -> Self {
        Runs { data, width, pos: 0, left: count }
    }

    /// The next run (at most the values left), or `None` after the last.
    /// Inlined into each decoding loop: runs are often a few values long.
    #[inline(always)]
    fn next_run(&mut self) -> Result<Option<Run<'a>>, String> {
        if self.left == 0 {
            return Ok(None);
        }
        let (data, width) = (self.data, self.width);
        let header = uleb128(data, &mut self.pos)?;
        let len = usize::try_from(header >> 1).map_err(|_| "a run longer than memory")?;
        let run = if header & 1 == 1 {
            let take = len.saturating_mul(8).min(self.left);
            let avail = data.len() - self.pos;
            if avail < (take * width).div_ceil(8) {
                return Err(format!("a bit-packed run of {take} values past the end of the page"));
            }
            let run = Run::Packed(&data[self.pos..], take);
            self.pos += len.saturating_mul(width).min(avail);
            self.left -= take;
            run
        } else {
            let bytes = width.div_ceil(8);
            if data.len() - self.pos < bytes {
                return Err("a repeated value past the end of the page".into());
            }
            let v = (0..bytes).fold(0u64, |v, i| v | u64::from(data[self.pos + i]) << (8 * i));
            self.pos += bytes;
            let take = len.min(self.left);
            self.left -= take;
            Run::Repeat(v, take)
        };
        Ok(Some(run))
    }
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
        if self.0[1].is_none() && low(idx, n) != 0 {
            return Err("a dictionary index 1 in a dictionary of one value".into());
        }
        Ok(low(idx & mask(self.0[1]) | !idx & mask(self.0[0]), n))
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
            Run::Repeat(v, n) => out.push_repeat(dict.value(v)?, n),
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
            Run::Repeat(v, n) => out.push_repeat(dict.value(v)?, n),
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

/// A flat, wholly dictionary-encoded column chunk of 8-byte values, its
/// dictionary page read: what both page readers (`binary_pages`,
/// `float_pages`) start from.
pub(super) struct DictionaryChunk {
    /// The data pages, next.
    pub pages: Box<dyn PageReader>,
    /// The dictionary's values (PLAIN, 8 bytes each).
    pub dict: bytes::Bytes,
    /// One definition level (nullable) or none.
    pub nullable: bool,
}

impl DictionaryChunk {
    /// The chunk, or `None` when it is not of `physical` type, not flat
    /// (repeated, or nested definition levels), has a data page not
    /// dictionary-encoded (the chunk's page encoding statistics), or its
    /// dictionary page is not PLAIN 8-byte values.
    pub fn open<R: ChunkReader + 'static>(
        file: Arc<R>,
        chunk: &ColumnChunkMetaData,
        rows: usize,
        physical: PhysicalType,
    ) -> Result<Option<DictionaryChunk>, String> {
        let descr = chunk.column_descr();
        let all_dictionary = chunk
            .page_encoding_stats_mask()
            .is_some_and(|m| m.is_only(Encoding::RLE_DICTIONARY) || m.is_only(Encoding::PLAIN_DICTIONARY));
        if descr.physical_type() != physical
            || descr.max_rep_level() != 0
            || descr.max_def_level() > 1
            || chunk.dictionary_page_offset().is_none()
            || !all_dictionary
        {
            return Ok(None);
        }
        let mut pages = SerializedPageReader::new(file, chunk, rows, None).map_err(|e| e.to_string())?;
        let Some(Page::DictionaryPage { buf, num_values, encoding, .. }) =
            pages.get_next_page().map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        if !matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY) || buf.len() != 8 * num_values as usize {
            return Ok(None);
        }
        Ok(Some(DictionaryChunk { pages: Box::new(pages), dict: buf, nullable: descr.max_def_level() == 1 }))
    }
}

/// A qualifying column chunk, read as bits batch by batch.
pub struct BinaryColumn {
    pages: Box<dyn PageReader>,
    dict: Dictionary,
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
        let Some(DictionaryChunk { pages, dict: buf, nullable }) =
            DictionaryChunk::open(file, chunk, rows, PhysicalType::INT64)?
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
        Ok(Some(BinaryColumn {
            pages,
            dict: Dictionary(dict),
            nullable,
            values: Buffer::from_vec(Vec::<u64>::new()),
            valid: None,
            len: 0,
            at: 0,
        }))
    }

    /// The next `n` rows (nulls: value 0 and a null slot).
    pub fn read(&mut self, n: usize) -> Result<BooleanArray, String> {
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
    fn next_page(&mut self, wanted: usize) -> Result<(), String> {
        let page = match self.pages.get_next_page().map_err(|e| e.to_string())? {
            Some(p) => p,
            None => return Err(format!("the column chunk ended {wanted} rows early")),
        };
        let (slots, encoding, def, data): (usize, Encoding, Option<&[u8]>, &[u8]) = match &page {
            Page::DataPage { buf, num_values, encoding, def_level_encoding, .. } => {
                if !self.nullable {
                    (*num_values as usize, *encoding, None, &buf[..])
                } else {
                    if *def_level_encoding != Encoding::RLE {
                        return Err(format!("definition levels encoded as {def_level_encoding}, not RLE"));
                    }
                    let len = buf.get(..4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
                    match len {
                        Some(len) if 4 + len <= buf.len() => {
                            (*num_values as usize, *encoding, Some(&buf[4..4 + len]), &buf[4 + len..])
                        }
                        _ => return Err("definition levels past the end of the page".into()),
                    }
                }
            }
            Page::DataPageV2 { buf, num_values, encoding, def_levels_byte_len, rep_levels_byte_len, .. } => {
                let (r, d) = (*rep_levels_byte_len as usize, *def_levels_byte_len as usize);
                if r + d > buf.len() {
                    return Err("levels past the end of the page".into());
                }
                let def = self.nullable.then(|| &buf[r..r + d]);
                (*num_values as usize, *encoding, def, &buf[r + d..])
            }
            Page::DictionaryPage { .. } => return Err("a second dictionary page".into()),
        };
        if !matches!(encoding, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY) {
            return Err(format!(
                "a data page encoded as {encoding}, where the chunk's metadata lists only dictionary-encoded pages"
            ));
        }
        let valid = match def {
            Some(d) => {
                let mut v = Bits::default();
                let mut runs = Runs::new(d, 1, slots);
                while let Some(run) = runs.next_run()? {
                    match run {
                        Run::Repeat(x, k) if x <= 1 => v.push_repeat(x == 1, k),
                        Run::Repeat(x, _) => return Err(format!("definition level {x} in a column of at most 1")),
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
            let Some((&width, indices)) = data.split_first() else {
                return Err("a data page without its indices' bit width".into());
            };
            if width > 32 {
                return Err(format!("dictionary indices of {width} bits"));
            }
            decode_indices(indices, usize::from(width), defined, self.dict, &mut values)?;
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
            let w = low(x, n);
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
