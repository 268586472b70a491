//! CSV as spreadsheets, R, pandas and databases write it, read into Arrow
//! batches of the columns a model uses.
//!
//! One place for everything about reading CSV: how the bytes are
//! compressed (gzip, zstd, bzip2, xz — recognised by content), the
//! delimiter (given, or sniffed from the header: `,` `;` tab `|`), the
//! decimal mark (`.` or `,`), the cells read as missing (pandas' default
//! list: empty, `NA`, `N/A`, `NaN`, `NULL`, … — in text columns too),
//! column types (inferred from the first [`CSV_INFER_ROWS`] rows as pandas
//! infers them: integers, floats, booleans, text; an integer column with a
//! missing value is a float column, as in pandas) and the reader itself,
//! which keeps the byte offset of the last complete record (so a file that
//! grows can be read on from there). Records are split by `csv-core`
//! (RFC 4180 quoting, quoted delimiters and newlines, CRLF, a UTF-8 BOM);
//! only the projected columns are converted.

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringBuilder};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Rows of CSV read to infer column types.
pub const CSV_INFER_ROWS: usize = 1_000_000;

/// The cells pandas' `read_csv` reads as missing by default
/// (`pandas._libs.parsers.STR_NA_VALUES`, pandas 3.1).
pub const PANDAS_NA_VALUES: [&str; 19] = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// How to read CSV files: part of a fit (saved in its state, used again by
/// `update`, `diagnose` and every other command that rereads files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsvOptions {
    /// The field separator; `None`: sniffed from each file's header.
    pub delimiter: Option<char>,
    /// The decimal mark of numbers: `.` or `,` (`1234,56`, as
    /// `;`-separated European exports write them).
    pub decimal: char,
    /// Cells read as missing; `None`: pandas' default list
    /// ([`PANDAS_NA_VALUES`]). A list replaces it (`[""]`: only empty
    /// cells).
    pub na_values: Option<Vec<String>>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { delimiter: None, decimal: '.', na_values: None }
    }
}

impl CsvOptions {
    /// Check the options' values; the message is for the user.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(d) = self.delimiter {
            if !d.is_ascii() || matches!(d, '"' | '\n' | '\r') {
                return Err(format!(
                    "the delimiter must be one ASCII character other than a quote or newline, not {d:?}"
                ));
            }
            if d == self.decimal {
                return Err(format!("the delimiter and the decimal mark are both {d:?}"));
            }
        }
        if !matches!(self.decimal, '.' | ',') {
            return Err(format!("the decimal mark must be '.' or ',', not {:?}", self.decimal));
        }
        Ok(())
    }

    fn na_set(&self) -> NaSet {
        match &self.na_values {
            None => NaSet::new(PANDAS_NA_VALUES.iter().map(|s| s.as_bytes())),
            Some(v) => NaSet::new(v.iter().map(|s| s.as_bytes())),
        }
    }
}

/// The cells read as missing, looked up by length first (most cells are
/// longer than any token or differ in length).
#[derive(Clone, Debug)]
struct NaSet {
    by_len: Vec<Vec<Box<[u8]>>>,
}

impl NaSet {
    fn new<'a>(tokens: impl Iterator<Item = &'a [u8]>) -> NaSet {
        let mut by_len: Vec<Vec<Box<[u8]>>> = Vec::new();
        for t in tokens {
            if by_len.len() <= t.len() {
                by_len.resize(t.len() + 1, Vec::new());
            }
            by_len[t.len()].push(t.into());
        }
        NaSet { by_len }
    }

    #[inline]
    fn contains(&self, cell: &[u8]) -> bool {
        self.by_len.get(cell.len()).is_some_and(|ts| ts.iter().any(|t| **t == *cell))
    }
}

/// How a CSV file is compressed, from its first bytes (so that a
/// mislabelled file still reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

/// The compression suffixes recognised in file names.
pub const COMPRESSED_SUFFIXES: [&str; 7] = [".gz", ".gzip", ".zst", ".zstd", ".bz2", ".xz", ".lzma"];

fn io_err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

pub fn compression_of(path: &Path) -> Result<Compression, String> {
    let mut head = [0u8; 6];
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(|e| io_err(path, e))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [b'B', b'Z', b'h', ..] => Compression::Bzip2,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => Compression::Xz,
        _ => Compression::None,
    })
}

/// A CSV file's text, decompressed on the fly (multi-member gzip and
/// concatenated zstd, bzip2 and xz streams included, as `cat a.gz b.gz`
/// and appending writers make), from text offset `skip` (plain files seek
/// there; compressed ones are decompressed and the bytes passed over).
pub fn open_text(path: &Path, skip: u64) -> Result<Box<dyn BufRead + Send>, String> {
    open_text_counted(path, skip, None)
}

/// [`open_text`], adding the bytes read from the file (compressed, as
/// stored) to `count` as they are read (for progress).
pub fn open_text_counted(
    path: &Path,
    skip: u64,
    count: Option<Arc<AtomicU64>>,
) -> Result<Box<dyn BufRead + Send>, String> {
    let compression = compression_of(path)?;
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    if compression == Compression::None && skip > 0 {
        f.seek(SeekFrom::Start(skip)).map_err(|e| io_err(path, e))?;
        return Ok(Box::new(BufReader::with_capacity(1 << 20, Counted::new(f, count))));
    }
    let raw = BufReader::with_capacity(1 << 20, Counted::new(f, count));
    let mut text: Box<dyn BufRead + Send> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(BufReader::with_capacity(1 << 20, flate2::bufread::MultiGzDecoder::new(raw))),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| io_err(path, e))?;
            Box::new(BufReader::with_capacity(1 << 20, d))
        }
        Compression::Bzip2 => Box::new(BufReader::with_capacity(1 << 20, bzip2::bufread::MultiBzDecoder::new(raw))),
        Compression::Xz => Box::new(BufReader::with_capacity(1 << 20, lzma_rust2::XzReader::new(raw, true))),
    };
    if skip > 0 {
        let passed = std::io::copy(&mut (&mut text).take(skip), &mut std::io::sink()).map_err(|e| io_err(path, e))?;
        if passed < skip {
            return Err(io_err(path, format!("the text ends at byte {passed}, before offset {skip}")));
        }
    }
    Ok(text)
}

/// A reader that adds the bytes it reads to a shared counter.
pub struct Counted<R> {
    inner: R,
    count: Option<Arc<AtomicU64>>,
}

impl<R> Counted<R> {
    pub fn new(inner: R, count: Option<Arc<AtomicU64>>) -> Self {
        Counted { inner, count }
    }

    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(c) = &self.count {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// The delimiter of a file: given, or the most frequent of `,` `;` tab
/// `|` outside quotes in its header line (`,` when none occurs).
fn sniff_delimiter(header: &[u8], decimal: u8) -> u8 {
    let candidates = [b',', b';', b'\t', b'|'];
    let mut counts = [0usize; 4];
    let mut quoted = false;
    for &b in header {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = candidates.iter().position(|&c| c == b) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let best = (0..4).max_by_key(|&i| (counts[i], usize::from(i == 0))).expect("four candidates");
    if counts[best] == 0 {
        // A one-column file; with a decimal comma the separator is `;`.
        return if decimal == b',' { b';' } else { b',' };
    }
    candidates[best]
}

/// The options resolved for one file.
#[derive(Clone, Debug)]
struct Dialect {
    delimiter: u8,
    decimal: u8,
    na: Arc<NaSet>,
}

impl Dialect {
    fn core(&self) -> csv_core::Reader {
        csv_core::ReaderBuilder::new().delimiter(self.delimiter).build()
    }
}

/// Records of a CSV text, one at a time, with the byte offset of the end
/// of the last complete (terminated) record.
struct Records {
    text: Box<dyn BufRead + Send>,
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    nout: usize,
    nends: usize,
    /// Text bytes consumed so far (from the start of the text).
    offset: u64,
    /// The offset after the last terminated record.
    complete: u64,
    /// The physical line (1-based) where the current record started.
    line: u64,
    done: bool,
}

/// A record as read: whether a line terminator ended it (the last record
/// of a file may have none).
#[derive(PartialEq, Eq)]
enum Ended {
    Terminated,
    AtEof,
}

impl Records {
    fn new(text: Box<dyn BufRead + Send>, core: csv_core::Reader, offset: u64) -> Records {
        Records {
            text,
            core,
            out: vec![0; 4096],
            ends: vec![0; 64],
            nout: 0,
            nends: 0,
            offset,
            complete: offset,
            line: 1,
            done: false,
        }
    }

    /// The next record (its fields through [`field`](Self::field)), or
    /// `None` at the end.
    fn next(&mut self) -> std::io::Result<Option<Ended>> {
        if self.done {
            return Ok(None);
        }
        self.nout = 0;
        self.nends = 0;
        self.line = self.core.line();
        loop {
            let input = self.text.fill_buf()?;
            let eof = input.is_empty();
            let (res, nin, nout, nend) =
                self.core.read_record(input, &mut self.out[self.nout..], &mut self.ends[self.nends..]);
            self.text.consume(nin);
            self.offset += nin as u64;
            self.nout += nout;
            self.nends += nend;
            use csv_core::ReadRecordResult as R;
            match res {
                R::InputEmpty => {}
                R::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                R::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                R::Record if eof => return Ok(Some(Ended::AtEof)),
                R::Record => {
                    self.complete = self.offset;
                    return Ok(Some(Ended::Terminated));
                }
                R::End => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
    }

    fn fields(&self) -> usize {
        self.nends
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[start..self.ends[i]]
    }
}

/// A column's type as inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Only missing cells so far.
    Empty,
    Int,
    Float,
    Bool,
    Text,
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn parse_int(cell: &[u8]) -> Option<i64> {
    std::str::from_utf8(trim(cell)).ok()?.parse().ok()
}

/// A number with `decimal` as its decimal mark.
fn parse_float(cell: &[u8], decimal: u8) -> Option<f64> {
    let t = trim(cell);
    if decimal == b'.' {
        return std::str::from_utf8(t).ok()?.parse().ok();
    }
    if t.contains(&b'.') {
        return None;
    }
    let mut buf = [0u8; 64];
    let s = buf.get_mut(..t.len())?;
    for (o, &c) in s.iter_mut().zip(t) {
        *o = if c == decimal { b'.' } else { c };
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn parse_bool(cell: &[u8]) -> Option<bool> {
    match cell {
        b"True" | b"TRUE" | b"true" => Some(true),
        b"False" | b"FALSE" | b"false" => Some(false),
        _ => None,
    }
}

fn kind_of(cell: &[u8], decimal: u8) -> Kind {
    if parse_int(cell).is_some() {
        Kind::Int
    } else if parse_float(cell, decimal).is_some() {
        Kind::Float
    } else if parse_bool(cell).is_some() {
        Kind::Bool
    } else {
        Kind::Text
    }
}

/// The type that holds both.
fn widen(a: Kind, b: Kind) -> Kind {
    use Kind::*;
    match (a, b) {
        (x, y) if x == y => x,
        (Empty, x) | (x, Empty) => x,
        (Int, Float) | (Float, Int) => Float,
        _ => Text,
    }
}

/// Column names as pandas makes them: an empty name is `Unnamed: i`, a
/// repeated one gets `.1`, `.2`, ….
fn header_names(records: &Records) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::with_capacity(records.fields());
    for i in 0..records.fields() {
        let raw = std::str::from_utf8(records.field(i)).map_err(|_| format!("header field {} is not UTF-8", i + 1))?;
        let base = if raw.is_empty() { format!("Unnamed: {i}") } else { raw.to_string() };
        let mut name = base.clone();
        let mut k = 1;
        while names.contains(&name) {
            name = format!("{base}.{k}");
            k += 1;
        }
        names.push(name);
    }
    Ok(names)
}

/// A file opened at its header: the dialect, the column names and the
/// records after the header.
struct Opened {
    dialect: Dialect,
    names: Vec<String>,
    records: Records,
}

fn open_at_header(path: &Path, opts: &CsvOptions, count: Option<Arc<AtomicU64>>) -> Result<Opened, String> {
    opts.validate().map_err(|e| io_err(path, e))?;
    let mut text = open_text_counted(path, 0, count)?;
    let head = text.fill_buf().map_err(|e| io_err(path, e))?;
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let decimal = opts.decimal as u8;
    let delimiter = opts.delimiter.map_or_else(|| sniff_delimiter(head, decimal), |d| d as u8);
    let dialect = Dialect { delimiter, decimal, na: Arc::new(opts.na_set()) };
    let mut records = Records::new(text, dialect.core(), 0);
    if records.next().map_err(|e| io_err(path, e))?.is_none() {
        return Err(io_err(path, "no header line (the file holds no text)"));
    }
    let names = header_names(&records).map_err(|e| io_err(path, e))?;
    Ok(Opened { dialect, names, records })
}

/// The schema of a CSV file: its header's names and the types of their
/// values in the first [`CSV_INFER_ROWS`] rows (every field nullable).
pub fn infer_schema(path: &Path, opts: &CsvOptions) -> Result<Schema, String> {
    let Opened { dialect, names, mut records } = open_at_header(path, opts, None)?;
    let mut kinds = vec![Kind::Empty; names.len()];
    let mut missing = vec![false; names.len()];
    for _ in 0..CSV_INFER_ROWS {
        if records.next().map_err(|e| io_err(path, e))?.is_none() {
            break;
        }
        for (j, k) in kinds.iter_mut().enumerate() {
            if j >= records.fields() || dialect.na.contains(records.field(j)) {
                missing[j] = true;
                continue;
            }
            if *k != Kind::Text {
                *k = widen(*k, kind_of(records.field(j), dialect.decimal));
            }
        }
    }
    let fields: Vec<Field> = names
        .iter()
        .zip(kinds.iter().zip(&missing))
        .map(|(n, (k, &m))| {
            let t = match k {
                // pandas: an integer column with a gap, or one with no
                // value at all, is float64.
                Kind::Int if m => DataType::Float64,
                Kind::Int => DataType::Int64,
                Kind::Float | Kind::Empty => DataType::Float64,
                Kind::Bool => DataType::Boolean,
                Kind::Text => DataType::Utf8,
            };
            Field::new(n, t, true)
        })
        .collect();
    Ok(Schema::new(fields))
}

/// Why a column of numbers was inferred as text.
#[derive(Clone, Debug, PartialEq)]
pub enum TextInNumbers {
    /// Most cells are numbers; these (with their lines) are not.
    Mixed { column: String, values: Vec<(String, u64)> },
    /// The numbers are written with a decimal comma (`1234,56`) and the
    /// file is read with a decimal point: this cell, at this line.
    DecimalComma { column: String, example: (String, u64) },
}

/// For the text columns among `columns` of a file whose schema is
/// `schema`: the first that is really a column of numbers — most of its
/// non-missing cells are numbers ([`TextInNumbers::Mixed`], with its first
/// few other values), or numbers with the other decimal mark
/// ([`TextInNumbers::DecimalComma`]). Reads the first [`CSV_INFER_ROWS`]
/// rows.
pub fn text_in_numbers(
    path: &Path,
    opts: &CsvOptions,
    schema: &Schema,
    columns: &[String],
) -> Result<Option<TextInNumbers>, String> {
    let text_cols: Vec<usize> = columns
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .filter(|&i| schema.field(i).data_type() == &DataType::Utf8)
        .collect();
    if text_cols.is_empty() {
        return Ok(None);
    }
    let Opened { dialect, names, mut records } = open_at_header(path, opts, None)?;
    let other_mark = if dialect.decimal == b'.' { b',' } else { b'.' };
    let mut numeric = vec![0u64; text_cols.len()];
    let mut comma = vec![0u64; text_cols.len()];
    let mut other = vec![0u64; text_cols.len()];
    let mut bad: Vec<Vec<(String, u64)>> = vec![Vec::new(); text_cols.len()];
    for _ in 0..CSV_INFER_ROWS {
        if records.next().map_err(|e| io_err(path, e))?.is_none() {
            break;
        }
        for (k, &c) in text_cols.iter().enumerate() {
            let Some(cell) = (c < records.fields()).then(|| records.field(c)) else { continue };
            if dialect.na.contains(cell) {
                continue;
            }
            if parse_float(cell, dialect.decimal).is_some() {
                numeric[k] += 1;
                continue;
            }
            other[k] += 1;
            if parse_float(cell, other_mark).is_some() {
                comma[k] += 1;
            }
            let v = String::from_utf8_lossy(cell).to_string();
            if bad[k].len() < 3 && !bad[k].iter().any(|(b, _)| *b == v) {
                bad[k].push((v, records.line));
            }
        }
    }
    for (k, &c) in text_cols.iter().enumerate() {
        let column = names[c].clone();
        let cells = numeric[k] + other[k];
        if other_mark == b',' && cells > 0 && 2 * (numeric[k] + comma[k]) > cells && comma[k] > 0 {
            let example = bad[k][0].clone();
            return Ok(Some(TextInNumbers::DecimalComma { column, example }));
        }
        if numeric[k] > other[k] && !bad[k].is_empty() {
            return Ok(Some(TextInNumbers::Mixed { column, values: std::mem::take(&mut bad[k]) }));
        }
    }
    Ok(None)
}

/// Where to start reading a file and what to do with an unterminated last
/// line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadFrom {
    /// Text offset of the first record to read (0: after the header).
    pub offset: u64,
    /// Records before it (for line numbers in messages).
    pub records_before: u64,
    /// Leave an unterminated last line unread (a file still being
    /// written: the line may not be complete).
    pub hold_tail: bool,
    /// Stop after this many records in all (`records_before` included):
    /// a file read again only as far as it was folded in.
    pub limit: Option<u64>,
}

/// Where a read of a file stopped: the offset after the last record read,
/// and whether its last record had no line terminator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadEnd {
    /// Text offset after the last complete (terminated) record read.
    pub complete_offset: u64,
    /// Text offset after the last byte read into a row: the end of the
    /// text when an unterminated last line was read as a row, else
    /// `complete_offset`.
    pub end_offset: u64,
    /// Records read (after the header), in all.
    pub records: u64,
    /// The file ended with an unterminated line, which was read as a row
    /// (`hold_tail` off) — or left pending (`tail_pending`, `hold_tail` on).
    pub unterminated_tail: bool,
    pub tail_pending: bool,
}

/// A shared cell the reader writes its [`ReadEnd`] to when it finishes.
pub type EndCell = Arc<std::sync::Mutex<Option<ReadEnd>>>;

/// One projected column being converted.
enum Builder {
    Float(Vec<f64>, Vec<bool>),
    Int(Vec<i64>, Vec<bool>),
    Bool(Vec<bool>, Vec<bool>),
    Text(StringBuilder),
}

/// Batches of the projected columns of a CSV file.
pub struct CsvBatches {
    path: String,
    dialect: Dialect,
    records: Records,
    /// Per output column: its field index in the file and its name.
    columns: Vec<(usize, String, DataType)>,
    schema: SchemaRef,
    width: usize,
    batch_size: usize,
    from: ReadFrom,
    read: u64,
    end: EndCell,
    finished: bool,
}

/// The batches of `columns` (all when empty) of a CSV file whose schema is
/// `schema` (from [`infer_schema`]), from `from`.
#[allow(clippy::too_many_arguments)]
pub fn batches(
    path: &Path,
    opts: &CsvOptions,
    schema: &Schema,
    columns: &[String],
    batch_size: usize,
    from: ReadFrom,
    end: EndCell,
    count: Option<Arc<AtomicU64>>,
) -> Result<CsvBatches, String> {
    let header_count = if from.offset == 0 { count.clone() } else { None };
    let Opened { dialect, names, mut records } = open_at_header(path, opts, header_count)?;
    let mut out = Vec::new();
    for (j, f) in schema.fields().iter().enumerate() {
        if !columns.is_empty() && !columns.contains(f.name()) {
            continue;
        }
        let at = names.iter().position(|n| n == f.name()).ok_or_else(|| {
            io_err(
                path,
                format!("column '{}' is not in the header (the file changed after its schema was read)", f.name()),
            )
        })?;
        let _ = j;
        out.push((at, f.name().clone(), f.data_type().clone()));
    }
    if from.offset > 0 {
        let header_end = records.offset;
        if from.offset < header_end {
            return Err(io_err(path, format!("offset {} is inside the header", from.offset)));
        }
        let text = open_text_counted(path, from.offset, count)?;
        records = Records::new(text, dialect.core(), from.offset);
    }
    let schema = Arc::new(Schema::new(out.iter().map(|(_, n, t)| Field::new(n, t.clone(), true)).collect::<Vec<_>>()));
    Ok(CsvBatches {
        path: path.display().to_string(),
        dialect,
        records,
        width: names.len(),
        columns: out,
        schema,
        batch_size: batch_size.max(1),
        from,
        read: 0,
        end,
        finished: false,
    })
}

impl CsvBatches {
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn error(&self, msg: String) -> ArrowError {
        ArrowError::ParseError(format!("line {}: {msg}", self.records.line))
    }

    fn finish(&mut self, unterminated: bool) {
        self.finished = true;
        let pending = unterminated && self.from.hold_tail;
        let end = ReadEnd {
            complete_offset: self.records.complete,
            end_offset: if unterminated && !pending { self.records.offset } else { self.records.complete },
            records: self.from.records_before + self.read,
            unterminated_tail: unterminated,
            tail_pending: pending,
        };
        if let Ok(mut e) = self.end.lock() {
            *e = Some(end);
        }
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        if self.finished {
            return Ok(None);
        }
        let mut builders: Vec<Builder> = self
            .columns
            .iter()
            .map(|(_, _, t)| match t {
                DataType::Int64 => Builder::Int(Vec::with_capacity(self.batch_size), Vec::new()),
                DataType::Boolean => Builder::Bool(Vec::with_capacity(self.batch_size), Vec::new()),
                DataType::Utf8 => Builder::Text(StringBuilder::new()),
                _ => Builder::Float(Vec::with_capacity(self.batch_size), Vec::new()),
            })
            .collect();
        let mut rows = 0;
        while rows < self.batch_size {
            if self.from.limit.is_some_and(|l| self.from.records_before + self.read >= l) {
                self.finish(false);
                break;
            }
            let ended = self.records.next().map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
            let Some(ended) = ended else {
                self.finish(false);
                break;
            };
            if ended == Ended::AtEof && self.from.hold_tail {
                self.finish(true);
                break;
            }
            if self.records.fields() > self.width {
                return Err(self.error(format!(
                    "{} fields, where the header has {}",
                    self.records.fields(),
                    self.width
                )));
            }
            for (b, (at, name, _)) in builders.iter_mut().zip(&self.columns) {
                let cell: &[u8] = if *at < self.records.fields() { self.records.field(*at) } else { b"" };
                let na = *at >= self.records.fields() || self.dialect.na.contains(cell);
                let bad = |what: &str| {
                    format!(
                        "column '{name}': '{}' is not {what} (the column's type was inferred from the first {CSV_INFER_ROWS} rows)",
                        String::from_utf8_lossy(cell)
                    )
                };
                match b {
                    Builder::Float(v, nulls) => {
                        if na {
                            v.push(0.0);
                            note_null(nulls, v.len());
                        } else {
                            let x = parse_float(cell, self.dialect.decimal);
                            v.push(x.ok_or_else(|| self.error(bad("a number")))?);
                        }
                    }
                    Builder::Int(v, nulls) => {
                        if na {
                            v.push(0);
                            note_null(nulls, v.len());
                        } else {
                            v.push(parse_int(cell).ok_or_else(|| self.error(bad("an integer")))?);
                        }
                    }
                    Builder::Bool(v, nulls) => {
                        if na {
                            v.push(false);
                            note_null(nulls, v.len());
                        } else {
                            v.push(parse_bool(cell).ok_or_else(|| self.error(bad("True or False")))?);
                        }
                    }
                    Builder::Text(s) => {
                        if na {
                            s.append_null();
                        } else {
                            let t = std::str::from_utf8(cell)
                                .map_err(|_| self.error(format!("column '{name}': the text is not UTF-8")))?;
                            s.append_value(t);
                        }
                    }
                }
            }
            rows += 1;
            self.read += 1;
            if ended == Ended::AtEof {
                self.finish(true);
                break;
            }
        }
        if rows == 0 {
            return Ok(None);
        }
        let arrays: Vec<ArrayRef> = builders
            .into_iter()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Float(v, n) => Arc::new(Float64Array::new(v.into(), nulls_of(n, rows))),
                    Builder::Int(v, n) => Arc::new(Int64Array::new(v.into(), nulls_of(n, rows))),
                    Builder::Bool(v, n) => Arc::new(BooleanArray::new(BooleanBuffer::from(v), nulls_of(n, rows))),
                    Builder::Text(mut s) => Arc::new(s.finish()),
                }
            })
            .collect();
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            arrays,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map(Some)
    }
}

/// Mark the last of `len` slots missing (validity kept only once a slot
/// is missing).
fn note_null(nulls: &mut Vec<bool>, len: usize) {
    nulls.resize(len - 1, true);
    nulls.push(false);
}

fn nulls_of(mut valid: Vec<bool>, rows: usize) -> Option<NullBuffer> {
    if valid.is_empty() {
        return None;
    }
    valid.resize(rows, true);
    Some(NullBuffer::from(valid))
}

impl Iterator for CsvBatches {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_batch() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => None,
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

impl CsvBatches {
    /// The file's path, for messages.
    pub fn path(&self) -> &str {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn read_all(p: &Path, opts: &CsvOptions, from: ReadFrom) -> (Vec<RecordBatch>, ReadEnd) {
        let schema = infer_schema(p, opts).unwrap();
        let end: EndCell = Default::default();
        let b = batches(p, opts, &schema, &[], 3, from, end.clone(), None).unwrap();
        let out = b.collect::<Result<Vec<_>, _>>().unwrap();
        let e = end.lock().unwrap().expect("the reader reports where it ended");
        (out, e)
    }

    #[test]
    fn pandas_missing_tokens_keep_numbers_numeric() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.csv", b"y,x,g\n1,2,a\n2,NA,NA\n3,,b\n4,N/A,null\n5,7.5,c\n");
        let s = infer_schema(&p, &CsvOptions::default()).unwrap();
        assert_eq!(s.field(0).data_type(), &DataType::Int64);
        assert_eq!(s.field(1).data_type(), &DataType::Float64);
        assert_eq!(s.field(2).data_type(), &DataType::Utf8);
        let (b, end) = read_all(&p, &CsvOptions::default(), ReadFrom::default());
        let b = arrow::compute::concat_batches(&b[0].schema(), &b).unwrap();
        assert_eq!(b.column(1).null_count(), 3);
        assert_eq!(b.column(2).null_count(), 2);
        assert_eq!(
            end,
            ReadEnd { complete_offset: 44, end_offset: 44, records: 5, unterminated_tail: false, tail_pending: false }
        );
        // A replaced list: only empty cells are missing, so NA is text.
        let only_empty = CsvOptions { na_values: Some(vec![String::new()]), ..Default::default() };
        let s = infer_schema(&p, &only_empty).unwrap();
        assert_eq!(s.field(1).data_type(), &DataType::Utf8);
    }

    #[test]
    fn integer_with_gap_is_float_as_in_pandas() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.csv", b"y,x\n1,2\n2,\n");
        let s = infer_schema(&p, &CsvOptions::default()).unwrap();
        assert_eq!(s.field(1).data_type(), &DataType::Float64);
        assert_eq!(s.field(0).data_type(), &DataType::Int64);
    }

    #[test]
    fn sniffs_semicolons_tabs_and_reads_decimal_commas() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "eu.csv",
            "\u{feff}preis;fläche;ort\r\n1234,56;80;\"Köln; Süd\"\r\n99,5;40;Bonn\r\n".as_bytes(),
        );
        let opts = CsvOptions { decimal: ',', ..Default::default() };
        let s = infer_schema(&p, &opts).unwrap();
        assert_eq!(s.field(0).name(), "preis");
        assert_eq!(s.field(0).data_type(), &DataType::Float64);
        assert_eq!(s.field(1).data_type(), &DataType::Int64);
        let (b, _) = read_all(&p, &opts, ReadFrom::default());
        let x = b[0].column(0).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(x.values().as_ref(), &[1234.56, 99.5]);
        let t = b[0].column(2).as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
        assert_eq!(t.value(0), "Köln; Süd");
        let tsv = write(dir.path(), "t.tsv", b"a\tb\n1\t2\n");
        assert_eq!(infer_schema(&tsv, &CsvOptions::default()).unwrap().fields().len(), 2);
        // Without the decimal option the European numbers are text.
        assert_eq!(infer_schema(&p, &CsvOptions::default()).unwrap().field(0).data_type(), &DataType::Utf8);
    }

    #[test]
    fn quoted_newlines_and_unterminated_tails() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"y,note\n1,\"a\nb\"\n2,c\n3,d";
        let p = write(dir.path(), "q.csv", text);
        let (b, end) = read_all(&p, &CsvOptions::default(), ReadFrom::default());
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert_eq!(
            end,
            ReadEnd { complete_offset: 19, end_offset: 22, records: 3, unterminated_tail: true, tail_pending: false }
        );
        let (b, end) = read_all(&p, &CsvOptions::default(), ReadFrom { hold_tail: true, ..Default::default() });
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        assert_eq!(
            end,
            ReadEnd { complete_offset: 19, end_offset: 19, records: 2, unterminated_tail: true, tail_pending: true }
        );
        // Read on from the offset once the line is complete.
        std::fs::write(&p, b"y,note\n1,\"a\nb\"\n2,c\n3,d\n4,e\n").unwrap();
        let from = ReadFrom { offset: 19, records_before: 2, hold_tail: true, limit: None };
        let (b, end) = read_all(&p, &CsvOptions::default(), from);
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        assert_eq!(
            end,
            ReadEnd { complete_offset: 27, end_offset: 27, records: 4, unterminated_tail: false, tail_pending: false }
        );
        // Read again only as far as it was folded in.
        let (b, end) = read_all(&p, &CsvOptions::default(), ReadFrom { limit: Some(3), ..Default::default() });
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert_eq!(end.complete_offset, 23);
    }

    #[test]
    fn a_bad_value_past_inference_names_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.csv", b"y,x\n1,2\n2,3\n");
        let s = infer_schema(&p, &CsvOptions::default()).unwrap();
        std::fs::write(&p, b"y,x\n1,2\n2,oops\n").unwrap();
        let end: EndCell = Default::default();
        let r: Result<Vec<_>, _> =
            batches(&p, &CsvOptions::default(), &s, &[], 10, ReadFrom::default(), end, None).unwrap().collect();
        let e = r.unwrap_err().to_string();
        assert!(e.contains("line 3: column 'x': 'oops' is not an integer"), "{e}");
    }
}
