//! Inputs: paths, directories and globs of Parquet, Arrow IPC and CSV files
//! (and `-`, an Arrow IPC stream on stdin), their column types, and readers
//! that yield Arrow record batches.
//!
//! Parquet files are read row group by row group (the unit of parallel
//! work), projected to the columns the formula needs, each task opening
//! the file itself (a cloned handle shares its offset) and reusing the
//! footer read once. CSV and IPC are sequential: one reader thread parses
//! them (see [`crate::engine`]).

mod binary_pages;
mod float_pages;
mod page_format;

use crate::formula::SourceType;
use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use binary_pages::BinaryColumn;
use float_pages::FloatColumn;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows of CSV read to infer column types.
pub const CSV_INFER_ROWS: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}: not a readable {kind} file: {message}")]
    Format { path: String, kind: &'static str, message: String },
    #[error("no input files match '{0}'")]
    NoMatch(String),
    #[error("{0}: the directory holds no .parquet, .arrow, .ipc, .feather or .csv (.csv.gz, .csv.zst) files")]
    EmptyDir(String),
    #[error("{path}: column '{column}' is missing (it is in the other inputs and used by the model)")]
    MissingColumn { path: String, column: String },
    #[error("{path}: column '{column}' is {found} here but {expected} in {first}")]
    TypeConflict { path: String, column: String, found: String, expected: String, first: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Csv,
    Parquet,
    IpcFile,
    IpcStream,
}

/// One input file (or stdin for `-`).
#[derive(Clone, Debug)]
pub struct Input {
    pub path: PathBuf,
    pub kind: SourceKind,
}

impl Input {
    pub fn display(&self) -> String {
        if self.is_stdin() {
            "<stdin>".into()
        } else {
            self.path.display().to_string()
        }
    }
    pub fn is_stdin(&self) -> bool {
        self.path.as_os_str() == "-"
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> SourceError {
    SourceError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// How a CSV file is compressed, from its first bytes (so that a
/// mislabelled file still reads): gzip (`1f 8b`) or zstd (`28 b5 2f fd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression suffixes recognised in file names.
const COMPRESSED_SUFFIXES: [&str; 4] = [".gz", ".gzip", ".zst", ".zstd"];

fn compression_of(path: &Path) -> Result<Compression, SourceError> {
    let mut head = [0u8; 4];
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut n = 0;
    while n < 4 {
        match f.read(&mut head[n..]).map_err(|e| io_err(path, e))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(match &head[..n] {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    })
}

/// The text of a CSV file, decompressed on the fly when it is gzip or zstd
/// (multi-member gzip included, as `cat a.gz b.gz` makes).
fn csv_text(path: &Path) -> Result<Box<dyn BufRead + Send>, SourceError> {
    let compression = compression_of(path)?;
    let f = open(path)?;
    let raw = BufReader::with_capacity(1 << 20, f);
    Ok(match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(BufReader::with_capacity(1 << 20, flate2::bufread::MultiGzDecoder::new(raw))),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| io_err(path, e))?;
            Box::new(BufReader::with_capacity(1 << 20, d))
        }
    })
}

fn kind_of(path: &Path) -> Option<SourceKind> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    // `listings.csv.gz` is a CSV file.
    let name = COMPRESSED_SUFFIXES.iter().find_map(|s| name.strip_suffix(s)).map_or(name.clone(), str::to_string);
    if name.ends_with(".parquet") || name.ends_with(".pq") {
        Some(SourceKind::Parquet)
    } else if name.ends_with(".arrow") || name.ends_with(".ipc") || name.ends_with(".feather") {
        Some(SourceKind::IpcFile)
    } else if name.ends_with(".arrows") {
        Some(SourceKind::IpcStream)
    } else if name.ends_with(".csv") || name.ends_with(".tsv") || name.ends_with(".txt") {
        Some(SourceKind::Csv)
    } else {
        None
    }
}

/// Sniff the format of a file whose name says nothing.
fn sniff(path: &Path) -> SourceKind {
    let mut head = [0u8; 6];
    let n = File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    if n >= 4 && &head[..4] == b"PAR1" {
        SourceKind::Parquet
    } else if n >= 6 && &head[..6] == b"ARROW1" {
        SourceKind::IpcFile
    } else {
        SourceKind::Csv
    }
}

/// Expand paths, directories (their data files, sorted) and glob patterns,
/// in the order given.
pub fn expand(args: &[String]) -> Result<Vec<Input>, SourceError> {
    let mut out = Vec::new();
    for a in args {
        if a == "-" {
            out.push(Input { path: PathBuf::from("-"), kind: SourceKind::IpcStream });
            continue;
        }
        let p = Path::new(a);
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| io_err(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && kind_of(f).is_some())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(SourceError::EmptyDir(a.clone()));
            }
            for f in files {
                let kind = kind_of(&f).unwrap_or(SourceKind::Csv);
                out.push(Input { path: f, kind });
            }
        } else if p.exists() {
            out.push(Input { path: p.to_path_buf(), kind: kind_of(p).unwrap_or_else(|| sniff(p)) });
        } else if a.contains(['*', '?', '[']) {
            let mut files: Vec<PathBuf> = glob::glob(a)
                .map_err(|e| SourceError::Io { path: a.clone(), message: format!("bad glob pattern: {e}") })?
                .filter_map(Result::ok)
                .filter(|f| f.is_file())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(SourceError::NoMatch(a.clone()));
            }
            for f in files {
                let kind = kind_of(&f).unwrap_or_else(|| sniff(&f));
                out.push(Input { path: f, kind });
            }
        } else {
            return Err(io_err(p, "no such file or directory"));
        }
    }
    Ok(out)
}

fn source_type(dt: &DataType) -> SourceType {
    match dt {
        DataType::Boolean => SourceType::Bool,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => SourceType::Text,
        DataType::Dictionary(_, v) => source_type(v),
        _ => SourceType::Numeric,
    }
}

fn type_name(t: SourceType) -> &'static str {
    match t {
        SourceType::Numeric => "numeric",
        SourceType::Text => "text",
        SourceType::Bool => "boolean",
    }
}

/// Open a file for reading, refusing empty files with a clear message.
fn open(path: &Path) -> Result<File, SourceError> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    let len = f.metadata().map_err(|e| io_err(path, e))?.len();
    if len == 0 {
        return Err(io_err(path, "the file is empty (0 bytes)"));
    }
    Ok(f)
}

/// A Parquet file read with positional reads (`pread`): arrow-rs's reader
/// for a `File` duplicates the descriptor, seeks and closes it again for
/// every page (four system calls besides the read; ~15,000 of each for the
/// 10M-row benchmark file).
#[cfg(unix)]
struct PositionalFile {
    file: Arc<File>,
    len: u64,
}

#[cfg(unix)]
impl PositionalFile {
    fn new(file: File) -> PositionalFile {
        let len = file.metadata().map_or(0, |m| m.len());
        PositionalFile { file: Arc::new(file), len }
    }
}

/// A reader from an offset of a [`PositionalFile`].
#[cfg(unix)]
struct PositionalRead {
    file: Arc<File>,
    at: u64,
}

#[cfg(unix)]
impl Read for PositionalRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(unix)]
impl parquet::file::reader::Length for PositionalFile {
    fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(unix)]
impl parquet::file::reader::ChunkReader for PositionalFile {
    type T = BufReader<PositionalRead>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(BufReader::new(PositionalRead { file: Arc::clone(&self.file), at: start }))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        let mut buf = Vec::with_capacity(length);
        let read =
            PositionalRead { file: Arc::clone(&self.file), at: start }.take(length as u64).read_to_end(&mut buf)?;
        if read != length {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "expected to read {length} bytes at offset {start}, read only {read}"
            )));
        }
        Ok(buf.into())
    }
}

/// Elsewhere, arrow-rs's reader for a `File`.
#[cfg(not(unix))]
struct PositionalFile;

#[cfg(not(unix))]
impl PositionalFile {
    fn new(file: File) -> File {
        file
    }
}

/// The Parquet footer, read once per file.
///
/// String columns are read as dictionaries (as Parquet stores them): a
/// categorical factor is then coded from its few distinct values instead of
/// row by row, and the decoder does not copy every string.
pub fn parquet_metadata(input: &Input) -> Result<ArrowReaderMetadata, SourceError> {
    let f = open(&input.path)?;
    let meta = ArrowReaderMetadata::load(&f, ArrowReaderOptions::new()).map_err(|e| SourceError::Format {
        path: input.display(),
        kind: "Parquet",
        message: e.to_string(),
    })?;
    let schema = meta.schema();
    let is_string = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8);
    if !schema.fields().iter().any(|f| is_string(f.data_type())) {
        return Ok(meta);
    }
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let f = f.as_ref().clone();
            if is_string(f.data_type()) {
                let t = DataType::Dictionary(Box::new(DataType::Int32), Box::new(f.data_type().clone()));
                f.with_data_type(t)
            } else {
                f
            }
        })
        .collect();
    let hinted = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    // Should the reader refuse the hint, the plain strings still work.
    Ok(ArrowReaderMetadata::try_new(meta.metadata().clone(), ArrowReaderOptions::new().with_schema(hinted))
        .unwrap_or(meta))
}

/// Infer the schema of a CSV file from its first rows. Integer-looking
/// columns stay integers (so `C(x)` names levels as pandas would); they are
/// cast to `f64` where used as numbers.
pub fn csv_schema(input: &Input) -> Result<Schema, SourceError> {
    let text = csv_text(&input.path)?;
    let format = arrow::csv::reader::Format::default().with_header(true);
    let (schema, _) = format.infer_schema(text, Some(CSV_INFER_ROWS)).map_err(|e| SourceError::Format {
        path: input.display(),
        kind: "CSV",
        message: e.to_string(),
    })?;
    // A column with integers in the first rows and a decimal later would
    // fail to parse; numbers are read as f64 unless they are integers
    // throughout the inferred range, in which case they stay Int64 — the
    // reader reports the line if a later value does not fit.
    Ok(schema)
}

/// For CSV text columns among `columns`: the first value that is not a
/// number, when nearly all others are numbers — a numeric column with a bad
/// value, which type inference would otherwise turn into a categorical.
/// Returns `(column, value, line)`.
pub fn csv_numeric_outliers(
    input: &Input,
    schema: &Schema,
    columns: &[String],
) -> Result<Option<(String, String, u64)>, SourceError> {
    let text_cols: Vec<usize> = columns
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .filter(|&i| matches!(schema.field(i).data_type(), DataType::Utf8 | DataType::LargeUtf8))
        .collect();
    if text_cols.is_empty() {
        return Ok(None);
    }
    let mut reader = csv_text(&input.path)?.lines();
    let _header = reader.next();
    let mut numeric = vec![0u64; text_cols.len()];
    let mut other = vec![0u64; text_cols.len()];
    let mut first_bad: Vec<Option<(String, u64)>> = vec![None; text_cols.len()];
    for (n, line) in reader.enumerate().take(CSV_INFER_ROWS) {
        let line = line.map_err(|e| io_err(&input.path, e))?;
        // Quoted fields are never numbers; a plain split is enough here.
        let fields: Vec<&str> = line.split(',').collect();
        for (k, &c) in text_cols.iter().enumerate() {
            let v = fields.get(c).map_or("", |v| v.trim());
            if v.is_empty() {
                continue;
            }
            if v.parse::<f64>().is_ok() {
                numeric[k] += 1;
            } else {
                other[k] += 1;
                if first_bad[k].is_none() {
                    first_bad[k] = Some((v.to_string(), n as u64 + 2));
                }
            }
        }
    }
    for (k, &c) in text_cols.iter().enumerate() {
        if numeric[k] > 0 && numeric[k] >= 9 * other[k] {
            if let Some((v, line)) = first_bad[k].take() {
                return Ok(Some((schema.field(c).name().clone(), v, line)));
            }
        }
    }
    Ok(None)
}

/// The schema of any input.
pub fn schema_of(input: &Input) -> Result<SchemaRef, SourceError> {
    match input.kind {
        SourceKind::Parquet => Ok(parquet_metadata(input)?.schema().clone()),
        SourceKind::Csv => Ok(Arc::new(csv_schema(input)?)),
        SourceKind::IpcFile => {
            let f = open(&input.path)?;
            let r = arrow::ipc::reader::FileReader::try_new(BufReader::new(f), None).map_err(|e| {
                SourceError::Format { path: input.display(), kind: "Arrow IPC", message: e.to_string() }
            })?;
            Ok(r.schema())
        }
        SourceKind::IpcStream => Err(SourceError::Io {
            path: input.display(),
            message: "the schema of a stream is read when the stream is".into(),
        }),
    }
}

/// Column types of the inputs for the columns the model uses, checking that
/// every input has them with compatible types.
pub fn check_columns(
    schemas: &[(String, SchemaRef)],
    needed: &[String],
) -> Result<Vec<(String, SourceType)>, SourceError> {
    let Some((first_path, first)) = schemas.first() else {
        return Ok(Vec::new());
    };
    let out: Vec<(String, SourceType)> =
        first.fields().iter().map(|f| (f.name().clone(), source_type(f.data_type()))).collect();
    for (path, s) in &schemas[1..] {
        for col in needed {
            let Some((_, t0)) = out.iter().find(|(n, _)| n == col) else {
                continue;
            };
            match s.field_with_name(col) {
                Err(_) => return Err(SourceError::MissingColumn { path: path.clone(), column: col.clone() }),
                Ok(f) => {
                    let t = source_type(f.data_type());
                    if t != *t0 {
                        return Err(SourceError::TypeConflict {
                            path: path.clone(),
                            column: col.clone(),
                            found: format!("{} ({})", type_name(t), f.data_type()),
                            expected: type_name(*t0).to_string(),
                            first: first_path.clone(),
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A reader over a Parquet row group, projected to `columns`.
///
/// Columns named in `binary` (the caller's: columns the model reads only as
/// numbers) whose chunk holds 0/1 integers in a dictionary of 0 and 1 are
/// decoded to bits and come as `Boolean` arrays (see `binary_pages`); with
/// `floats`, dictionary-encoded DOUBLE chunks are decoded from their pages
/// (see `float_pages`; the same `Float64` arrays arrow-rs makes); the
/// others as arrow-rs decodes them.
pub fn parquet_row_group(
    input: &Input,
    meta: &ArrowReaderMetadata,
    row_group: usize,
    columns: &[String],
    binary: &[String],
    floats: bool,
    batch_size: usize,
) -> Result<RowGroupBatches, SourceError> {
    let format_err = |message: String| SourceError::Format {
        path: input.display(),
        kind: "Parquet",
        message: format!("row group {row_group}: {message}"),
    };
    let schema = meta.schema();
    let mut roots: Vec<usize> = columns.iter().filter_map(|c| schema.index_of(c).ok()).collect();
    roots.sort_unstable();
    roots.dedup();
    let chunks = meta.metadata().row_group(row_group);
    let leaves = meta.parquet_schema();
    let mut direct: Vec<(usize, PageColumn)> = Vec::new();
    let mut shared = None;
    for (at, &root) in roots.iter().enumerate() {
        let field = schema.field(root);
        let as_bits = field.data_type() == &DataType::Int64 && binary.iter().any(|b| b == field.name());
        let as_float = floats && field.data_type() == &DataType::Float64;
        if !as_bits && !as_float {
            continue;
        }
        let Some(leaf) = leaves.columns().iter().position(|c| c.path().parts() == [field.name().as_str()]) else {
            continue;
        };
        let file = match &shared {
            Some(f) => Arc::clone(f),
            None => Arc::clone(shared.insert(Arc::new(PositionalFile::new(open(&input.path)?)))),
        };
        let rows = usize::try_from(chunks.num_rows()).unwrap_or(0);
        let opened = if as_bits {
            BinaryColumn::open(file, chunks.column(leaf), rows).map(|c| c.map(PageColumn::Bits))
        } else {
            FloatColumn::open(file, chunks.column(leaf), rows).map(|c| c.map(PageColumn::Float))
        };
        if let Some(c) = opened.map_err(|e| format_err(format!("column '{}': {e}", field.name())))? {
            direct.push((at, c));
        }
    }
    let decoded: Vec<usize> =
        roots.iter().enumerate().filter(|(at, _)| !direct.iter().any(|b| b.0 == *at)).map(|(_, &r)| r).collect();
    let out_schema = Arc::new(Schema::new(
        roots
            .iter()
            .enumerate()
            .map(|(at, &r)| {
                let f = schema.field(r);
                if direct.iter().any(|b| b.0 == at && matches!(b.1, PageColumn::Bits(_))) {
                    Arc::new(Field::new(f.name(), DataType::Boolean, f.is_nullable()))
                } else {
                    Arc::clone(&schema.fields()[r])
                }
            })
            .collect::<Vec<_>>(),
    ));
    // Columns left to arrow-rs set the batches' rows; with none, batches of
    // `batch_size` rows are cut from the row group's count.
    let arrow = if decoded.is_empty() && !direct.is_empty() {
        None
    } else {
        let f = PositionalFile::new(open(&input.path)?);
        let mask = ProjectionMask::roots(meta.parquet_schema(), decoded);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(f, meta.clone())
            .with_row_groups(vec![row_group])
            .with_projection(mask)
            .with_batch_size(batch_size)
            .build()
            .map_err(|e| format_err(e.to_string()))?;
        Some(reader)
    };
    let names = roots.iter().map(|&r| schema.field(r).name().clone()).collect();
    let rows_left = usize::try_from(chunks.num_rows()).unwrap_or(0);
    Ok(RowGroupBatches { arrow, direct, schema: out_schema, names, rows_left, batch_size: batch_size.max(1) })
}

/// A column chunk decoded from its pages rather than by arrow-rs.
enum PageColumn {
    Bits(BinaryColumn),
    Float(FloatColumn),
}

impl PageColumn {
    fn read(&mut self, n: usize) -> Result<ArrayRef, String> {
        Ok(match self {
            PageColumn::Bits(c) => Arc::new(c.read(n)?),
            PageColumn::Float(c) => Arc::new(c.read(n)?),
        })
    }
}

/// The batches of one Parquet row group (see [`parquet_row_group`]).
pub struct RowGroupBatches {
    /// arrow-rs's reader of the other columns (`None`: every column is
    /// decoded from its pages).
    arrow: Option<ParquetRecordBatchReader>,
    /// Rows not yet handed out, and the batch size (without arrow-rs).
    rows_left: usize,
    batch_size: usize,
    /// Columns decoded from their pages, by position in the output
    /// (ascending).
    direct: Vec<(usize, PageColumn)>,
    schema: SchemaRef,
    names: Vec<String>,
}

impl RowGroupBatches {
    /// The columns decoded from their pages (as bits or as floats), not by
    /// arrow-rs.
    pub fn page_decoded(&self) -> Vec<&str> {
        self.direct.iter().map(|(at, _)| self.names[*at].as_str()).collect()
    }
}

impl Iterator for RowGroupBatches {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (n, mut columns) = match &mut self.arrow {
            Some(reader) => {
                let batch = match reader.next()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e)),
                };
                if self.direct.is_empty() {
                    return Some(Ok(batch));
                }
                (batch.num_rows(), batch.columns().to_vec())
            }
            None => {
                let n = self.rows_left.min(self.batch_size);
                if n == 0 {
                    return None;
                }
                self.rows_left -= n;
                (n, Vec::with_capacity(self.direct.len()))
            }
        };
        for (at, c) in &mut self.direct {
            match c.read(n) {
                Ok(a) => columns.insert(*at, a),
                Err(e) => {
                    return Some(Err(ArrowError::ParquetError(format!("column '{}': {e}", self.names[*at]))));
                }
            }
        }
        Some(RecordBatch::try_new(Arc::clone(&self.schema), columns))
    }
}

/// Batches of a sequential input (CSV, IPC file or stream).
pub fn sequential_batches(
    input: &Input,
    schema: Option<SchemaRef>,
    batch_size: usize,
) -> Result<Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>> + Send>, SourceError> {
    let fmt_err = |kind: &'static str, e: arrow::error::ArrowError| SourceError::Format {
        path: input.display(),
        kind,
        message: e.to_string(),
    };
    match input.kind {
        SourceKind::Csv => {
            let schema = match schema {
                Some(s) => s,
                None => Arc::new(csv_schema(input)?),
            };
            let r = arrow::csv::ReaderBuilder::new(schema)
                .with_header(true)
                .with_batch_size(batch_size)
                .build_buffered(csv_text(&input.path)?)
                .map_err(|e| fmt_err("CSV", e))?;
            Ok(Box::new(r))
        }
        SourceKind::IpcFile => {
            let f = open(&input.path)?;
            let r = arrow::ipc::reader::FileReader::try_new(BufReader::new(f), None)
                .map_err(|e| fmt_err("Arrow IPC", e))?;
            Ok(Box::new(r))
        }
        SourceKind::IpcStream => {
            let r: Box<dyn Read + Send> =
                if input.is_stdin() { Box::new(std::io::stdin()) } else { Box::new(open(&input.path)?) };
            let r = arrow::ipc::reader::StreamReader::try_new(BufReader::new(r), None)
                .map_err(|e| fmt_err("Arrow IPC stream", e))?;
            Ok(Box::new(r))
        }
        SourceKind::Parquet => unreachable!("Parquet is read by row group"),
    }
}
