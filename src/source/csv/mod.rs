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
//!
//! Modules: `files` (opening, decompressing, counting bytes),
//! `records` (records and fields), `infer` (column types); here the
//! options and the reader that turns records into Arrow batches.

#[cfg(test)]
mod differential;
mod files;
mod infer;
mod numbers;
mod parse;
mod records;
mod split;

pub use files::{compression_of, Compression, Counted, COMPRESSED_SUFFIXES};
pub use infer::{infer_schema, text_in_numbers, TextInNumbers};
pub use parse::{BlockParser, Projection};
pub use split::{Block, Splitter};

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use files::{io_err, open_text_counted};
use infer::{open_at_header, Opened};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::AtomicU64;
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
    /// Some token reads as a number other than NaN (`-1`, `999`): then a
    /// cell is looked up before it is parsed (else after: the numbers of
    /// a column are no tokens).
    numeric: bool,
}

impl NaSet {
    fn new<'a>(tokens: impl Iterator<Item = &'a [u8]>) -> NaSet {
        let mut by_len: Vec<Vec<Box<[u8]>>> = Vec::new();
        let mut numeric = false;
        for t in tokens {
            if by_len.len() <= t.len() {
                by_len.resize(t.len() + 1, Vec::new());
            }
            by_len[t.len()].push(t.into());
            let number = |mark| numbers::parse_float(t, mark).is_some_and(|x| !x.is_nan());
            numeric |= number(b'.') || number(b',') || numbers::parse_int(t).is_some();
        }
        NaSet { by_len, numeric }
    }

    #[inline]
    fn contains(&self, cell: &[u8]) -> bool {
        self.by_len.get(cell.len()).is_some_and(|ts| ts.iter().any(|t| **t == *cell))
    }
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

/// Batches of the projected columns of a CSV file, read block by block
/// (the engine parses the blocks of a [`BlockSource`] in parallel; this
/// reads them in order on the caller's thread).
pub struct CsvBatches {
    path: String,
    source: BlockSource,
    parser: Option<BlockParser>,
    batch_size: usize,
    end: EndCell,
    finished: bool,
}

/// A CSV file opened for reading: the columns read and the blocks of
/// whole records still to come.
pub struct BlockSource {
    pub projection: Projection,
    pub splitter: Splitter,
}

/// Records per block of [`CsvBatches`].
const SERIAL_BLOCK_RECORDS: usize = 1 << 16;

/// The blocks of `per_block` records of `columns` (all when empty) of a
/// CSV file whose schema is `schema` (from [`infer_schema`]), from `from`;
/// bytes read from the file are added to `count`.
pub fn blocks(
    path: &Path,
    opts: &CsvOptions,
    schema: &Schema,
    columns: &[String],
    per_block: usize,
    from: ReadFrom,
    count: Option<Arc<AtomicU64>>,
) -> Result<BlockSource, String> {
    let header_count = if from.offset == 0 { count.clone() } else { None };
    let Opened { dialect, names, records } = open_at_header(path, opts, header_count)?;
    let mut out = Vec::new();
    for f in schema.fields() {
        if !columns.is_empty() && !columns.contains(f.name()) {
            continue;
        }
        let at = names.iter().position(|n| n == f.name()).ok_or_else(|| {
            io_err(
                path,
                format!("column '{}' is not in the header (the file changed after its schema was read)", f.name()),
            )
        })?;
        out.push((at, f.name().clone(), f.data_type().clone()));
    }
    let (text, offset, line): (Box<dyn std::io::Read + Send>, u64, u64) = if from.offset > 0 {
        let header_end = records.offset;
        if from.offset < header_end {
            return Err(io_err(path, format!("offset {} is inside the header", from.offset)));
        }
        // Lines before the offset are not counted again: a file with one
        // record per line has record k (0-based) on line k + 2.
        (Box::new(open_text_counted(path, from.offset, count)?), from.offset, from.records_before + 2)
    } else {
        let (offset, line) = (records.offset, records.core.line());
        (Box::new(records.text), offset, line)
    };
    let delimiter = dialect.delimiter;
    let schema = Arc::new(Schema::new(out.iter().map(|(_, n, t)| Field::new(n, t.clone(), true)).collect::<Vec<_>>()));
    let projection = Projection { columns: out, schema, width: names.len(), dialect };
    let splitter =
        Splitter::new(text, delimiter, per_block, offset, line, from.records_before, from.limit, from.hold_tail);
    Ok(BlockSource { projection, splitter })
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
    let source = blocks(path, opts, schema, columns, SERIAL_BLOCK_RECORDS, from, count)?;
    Ok(CsvBatches {
        path: path.display().to_string(),
        source,
        parser: None,
        batch_size: batch_size.max(1),
        end,
        finished: false,
    })
}

impl CsvBatches {
    pub fn schema(&self) -> SchemaRef {
        self.source.projection.schema()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            if let Some(p) = &mut self.parser {
                if let Some(b) =
                    p.next_batch(&self.source.projection, self.batch_size).map_err(ArrowError::ParseError)?
                {
                    return Ok(Some(b));
                }
            }
            match self.source.splitter.next_block().map_err(|e| ArrowError::ExternalError(Box::new(e)))? {
                Some(block) => self.parser = Some(BlockParser::new(block, self.source.projection.dialect.delimiter)),
                None => {
                    self.finished = true;
                    if let Ok(mut e) = self.end.lock() {
                        *e = self.source.splitter.end();
                    }
                }
            }
        }
    }
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
    use arrow::array::Float64Array;
    use arrow::datatypes::DataType;

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
