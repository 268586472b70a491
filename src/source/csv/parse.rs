//! Parsing a [`Block`] of records into Arrow batches of the projected
//! columns.
//!
//! A block without a `"` (most blocks of most files: numbers, plain words)
//! is split by a bit mask of its separators, 64 bytes at a time: without
//! quotes a field ends at the delimiter and a record at `\r` or `\n`,
//! which is all `csv-core` does on such text. A block with a quote goes
//! through `csv-core` itself. Only the projected columns' cells are
//! converted, and a number is tried before the missing-value tokens when
//! no token could be read as a number (pandas' list holds none).

use super::numbers::{parse_float, parse_int};
use super::records::Dialect;
use super::split::{count_newlines, Block};
use super::CSV_INFER_ROWS;
use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringBuilder};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::datatypes::{DataType, SchemaRef};
use std::sync::Arc;

/// The columns read from a file: per output column its field index in the
/// file, name and type, and the schema of the batches made.
#[derive(Clone, Debug)]
pub struct Projection {
    pub(super) columns: Vec<(usize, String, DataType)>,
    pub(super) schema: SchemaRef,
    /// Fields in the header: a record with more is an error.
    pub(super) width: usize,
    pub(super) dialect: Dialect,
}

impl Projection {
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The file's field separator.
    pub fn delimiter(&self) -> u8 {
        self.dialect.delimiter
    }
}

/// One record's fields: field `i` is `bytes[start(i)..bounds[i]]`, where
/// `start(0) = 0` and `start(i) = bounds[i - 1] + sep` (`sep` = 1 when the
/// delimiters are still in `bytes`).
pub(super) struct Fields<'a> {
    bytes: &'a [u8],
    bounds: &'a [usize],
    sep: usize,
}

impl Fields<'_> {
    #[inline]
    pub(super) fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.bounds.get(i)?;
        let start = if i == 0 { 0 } else { self.bounds[i - 1] + self.sep };
        Some(&self.bytes[start..end])
    }
}

/// One projected column being converted.
enum Builder {
    Float(Vec<f64>, Vec<bool>),
    Int(Vec<i64>, Vec<bool>),
    Bool(Vec<bool>, Vec<bool>),
    Text(StringBuilder),
}

/// A block being parsed, batch by batch.
pub struct BlockParser {
    block: Block,
    /// Byte offset of the next record (or of terminators before it).
    pos: usize,
    /// Records parsed so far.
    parsed: usize,
    quoted: bool,
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    bounds: Vec<usize>,
    /// Byte offset of each parsed record's first byte (for line numbers).
    starts: Vec<usize>,
}

/// The 64-bit mask of the bytes of `w` that end a field: `d`, `\n`, `\r`
/// (bit i for byte i).
#[inline]
fn separators(w: &[u8; 64], d: u8) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        separators_sse2(w, d)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        separators_portable(w, d)
    }
}

/// [`separators`] byte by byte (the reference; the path of other CPUs).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn separators_portable(w: &[u8; 64], d: u8) -> u64 {
    let mut m = 0u64;
    for (i, &b) in w.iter().enumerate() {
        m |= u64::from((b == d) | (b == b'\n') | (b == b'\r')) << i;
    }
    m
}

/// [`separators`] 16 bytes at a time by SSE2 compares and byte masks
/// (SSE2 is part of x86-64: no detection needed).
#[cfg(target_arch = "x86_64")]
#[inline]
fn separators_sse2(w: &[u8; 64], d: u8) -> u64 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is in every x86-64 CPU; the loads read 4 × 16 bytes of
    // the 64-byte array (unaligned loads).
    unsafe {
        let (dv, nl, cr) = (_mm_set1_epi8(d as i8), _mm_set1_epi8(b'\n' as i8), _mm_set1_epi8(b'\r' as i8));
        let mut m = 0u64;
        for k in 0..4 {
            let v = _mm_loadu_si128(w.as_ptr().add(16 * k).cast());
            let hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, dv), _mm_cmpeq_epi8(v, nl)), _mm_cmpeq_epi8(v, cr));
            m |= u64::from(_mm_movemask_epi8(hit) as u16) << (16 * k);
        }
        m
    }
}

impl BlockParser {
    pub fn new(block: Block, delimiter: u8) -> BlockParser {
        let quoted = memchr::memchr(b'"', &block.text).is_some();
        let records = block.records;
        BlockParser {
            block,
            pos: 0,
            parsed: 0,
            quoted,
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            out: vec![0; 4096],
            ends: vec![0; 64],
            bounds: Vec::with_capacity(64),
            starts: Vec::with_capacity(records),
        }
    }

    /// Records of the file before the block's first.
    pub fn first_record(&self) -> u64 {
        self.block.first_record
    }

    /// The physical line (1-based) where record `r` of the block (counted
    /// from its first) starts, once parsed.
    pub fn line_of(&self, r: usize) -> u64 {
        let start = self.starts.get(r).copied().unwrap_or(self.pos);
        self.block.first_line + count_newlines(&self.block.text[..start])
    }

    /// The next `n` records (fewer at the block's end) as a batch of the
    /// projected columns; `None` when the block is parsed. The error names
    /// the line and column.
    pub fn next_batch(&mut self, proj: &Projection, n: usize) -> Result<Option<RecordBatch>, String> {
        let n = n.min(self.block.records - self.parsed);
        if n == 0 {
            return Ok(None);
        }
        let mut builders: Vec<Builder> = proj
            .columns
            .iter()
            .map(|(_, _, t)| match t {
                DataType::Int64 => Builder::Int(Vec::with_capacity(n), Vec::new()),
                DataType::Boolean => Builder::Bool(Vec::with_capacity(n), Vec::new()),
                DataType::Utf8 => Builder::Text(StringBuilder::new()),
                _ => Builder::Float(Vec::with_capacity(n), Vec::new()),
            })
            .collect();
        let first_line = self.block.first_line;
        let mut on_record = |fields: &Fields<'_>, text: &[u8], start: usize| {
            convert(proj, &mut builders, fields, || first_line + count_newlines(&text[..start]))
        };
        let got = self.visit(proj.dialect.delimiter, n, &mut on_record)?;
        if got != n {
            return Err(format!(
                "line {}: the block ended after {got} of {n} records (a CSV splitting error; please report it)",
                self.line_of(self.parsed)
            ));
        }
        let arrays: Vec<ArrayRef> = builders
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Float(v, nv) => Arc::new(Float64Array::new(v.into(), nulls_of(nv, n))),
                    Builder::Int(v, nv) => Arc::new(Int64Array::new(v.into(), nulls_of(nv, n))),
                    Builder::Bool(v, nv) => Arc::new(BooleanArray::new(BooleanBuffer::from(v), nulls_of(nv, n))),
                    Builder::Text(mut s) => Arc::new(s.finish()),
                }
            })
            .collect();
        RecordBatch::try_new_with_options(
            proj.schema(),
            arrays,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map(Some)
        .map_err(|e| e.to_string())
    }

    /// Hand the next `n` records (fewer at the block's end) to
    /// `on_record(fields, block text, record start)`; returns how many.
    pub(super) fn visit(&mut self, delimiter: u8, n: usize, on_record: &mut OnRecord<'_>) -> Result<usize, String> {
        if self.quoted {
            self.quoted_records(n, on_record)
        } else {
            self.plain_records(delimiter, n, on_record)
        }
    }

    /// Records of a block without quotes, split by separator masks.
    fn plain_records(&mut self, d: u8, n: usize, on_record: &mut OnRecord<'_>) -> Result<usize, String> {
        let text = &self.block.text;
        let len = text.len();
        let mut got = 0;
        let mut start = self.pos;
        let mut o = self.pos;
        self.bounds.clear();
        'windows: while o < len {
            let mut m = if o + 64 <= len {
                separators(text[o..o + 64].try_into().expect("64 bytes"), d)
            } else {
                let mut w = [0u8; 64];
                w[..len - o].copy_from_slice(&text[o..]);
                separators(&w, d) & ((1u64 << (len - o)) - 1)
            };
            while m != 0 {
                let p = o + m.trailing_zeros() as usize;
                m &= m - 1;
                if text[p] == d {
                    self.bounds.push(p - start);
                    continue;
                }
                if self.bounds.is_empty() && p == start {
                    // A line of terminators only (or CRLF's second byte).
                    start = p + 1;
                    continue;
                }
                self.bounds.push(p - start);
                self.starts.push(start);
                on_record(&Fields { bytes: &text[start..p], bounds: &self.bounds, sep: 1 }, text, start)?;
                got += 1;
                start = p + 1;
                self.bounds.clear();
                if got == n {
                    break 'windows;
                }
            }
            o += 64;
        }
        if got < n && start < len && self.block.unterminated {
            self.bounds.push(len - start);
            self.starts.push(start);
            on_record(&Fields { bytes: &text[start..], bounds: &self.bounds, sep: 1 }, text, start)?;
            got += 1;
            start = len;
        }
        self.pos = start;
        self.parsed += got;
        Ok(got)
    }

    /// Records of a block with quotes, by `csv-core`.
    fn quoted_records(&mut self, n: usize, on_record: &mut OnRecord<'_>) -> Result<usize, String> {
        use csv_core::ReadRecordResult as R;
        let text = &self.block.text;
        let mut got = 0;
        while got < n {
            while matches!(text.get(self.pos), Some(b'\n' | b'\r')) {
                self.pos += 1;
            }
            let start = self.pos;
            let (mut nout, mut nend) = (0, 0);
            loop {
                let (res, nin, o, e) =
                    self.core.read_record(&text[self.pos..], &mut self.out[nout..], &mut self.ends[nend..]);
                self.pos += nin;
                nout += o;
                nend += e;
                match res {
                    R::InputEmpty if self.pos == text.len() && nin == 0 => {
                        // The end of the block: a last record without a
                        // terminator comes with the empty input.
                        let (res, _, o, e) = self.core.read_record(&[], &mut self.out[nout..], &mut self.ends[nend..]);
                        nout += o;
                        nend += e;
                        if res != R::Record {
                            return Ok(got);
                        }
                        break;
                    }
                    R::InputEmpty => {}
                    R::OutputFull => {
                        let len = self.out.len() * 2;
                        self.out.resize(len, 0);
                    }
                    R::OutputEndsFull => {
                        let len = self.ends.len() * 2;
                        self.ends.resize(len, 0);
                    }
                    R::Record => break,
                    R::End => return Ok(got),
                }
            }
            self.starts.push(start);
            on_record(&Fields { bytes: &self.out[..nout], bounds: &self.ends[..nend], sep: 0 }, text, start)?;
            got += 1;
        }
        self.parsed += got;
        Ok(got)
    }
}

/// What a parse hands each record: its fields, the block's text and the
/// record's first byte in it.
pub(super) type OnRecord<'a> = dyn FnMut(&Fields<'_>, &[u8], usize) -> Result<(), String> + 'a;

/// Convert one record's projected cells, appending to `builders`.
#[inline]
fn convert(
    proj: &Projection,
    builders: &mut [Builder],
    fields: &Fields<'_>,
    line: impl Fn() -> u64,
) -> Result<(), String> {
    let nfields = fields.bounds.len();
    if nfields > proj.width {
        return Err(format!("line {}: {nfields} fields, where the header has {}", line(), proj.width));
    }
    let na = &proj.dialect.na;
    let decimal = proj.dialect.decimal;
    for (b, (at, name, _)) in builders.iter_mut().zip(&proj.columns) {
        // A short record's missing fields are missing values.
        let cell = fields.get(*at);
        let bad = |what: &str| {
            format!(
                "line {}: column '{name}': '{}' is not {what} (the column's type was inferred from the first {CSV_INFER_ROWS} rows)",
                line(),
                String::from_utf8_lossy(cell.unwrap_or_default())
            )
        };
        match b {
            Builder::Float(v, nulls) => match cell {
                Some(c) if !na.numeric => match parse_float(c, decimal) {
                    Some(x) if !(x.is_nan() && na.contains(c)) => v.push(x),
                    _ if na.contains(c) => push_null(v, nulls, 0.0),
                    _ => return Err(bad("a number")),
                },
                Some(c) if !na.contains(c) => v.push(parse_float(c, decimal).ok_or_else(|| bad("a number"))?),
                _ => push_null(v, nulls, 0.0),
            },
            Builder::Int(v, nulls) => match cell {
                Some(c) if !na.numeric => match parse_int(c) {
                    Some(x) => v.push(x),
                    None if na.contains(c) => push_null(v, nulls, 0),
                    None => return Err(bad("an integer")),
                },
                Some(c) if !na.contains(c) => v.push(parse_int(c).ok_or_else(|| bad("an integer"))?),
                _ => push_null(v, nulls, 0),
            },
            Builder::Bool(v, nulls) => match cell {
                Some(c) if !na.contains(c) => v.push(super::infer::parse_bool(c).ok_or_else(|| bad("True or False"))?),
                _ => push_null(v, nulls, false),
            },
            Builder::Text(s) => match cell {
                Some(c) if !na.contains(c) => {
                    let t = std::str::from_utf8(c)
                        .map_err(|_| format!("line {}: column '{name}': the text is not UTF-8", line()))?;
                    s.append_value(t);
                }
                _ => s.append_null(),
            },
        }
    }
    Ok(())
}

/// Append a missing value: `fill` in the values, the slot marked missing
/// (validity kept only once a slot is missing).
#[inline]
fn push_null<T>(v: &mut Vec<T>, valid: &mut Vec<bool>, fill: T) {
    v.push(fill);
    valid.resize(v.len() - 1, true);
    valid.push(false);
}

fn nulls_of(mut valid: Vec<bool>, rows: usize) -> Option<NullBuffer> {
    if valid.is_empty() {
        return None;
    }
    valid.resize(rows, true);
    Some(NullBuffer::from(valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separator_masks_agree_with_the_byte_loop() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        for round in 0..20_000 {
            let mut w = [0u8; 64];
            for b in w.iter_mut() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // Mostly separators and near misses, some of every byte.
                *b = match s % 8 {
                    0 => b',',
                    1 => b'\n',
                    2 => b'\r',
                    3 => b';',
                    4 => (s >> 8) as u8,
                    _ => b'0' + (s % 10) as u8,
                };
            }
            let d = [b',', b';', b'\t', b'|', 0, 0xff][round % 6];
            assert_eq!(separators(&w, d), separators_portable(&w, d), "{w:?}");
        }
    }
}
