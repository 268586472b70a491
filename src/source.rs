//! Inputs: paths, directories and globs of Parquet, Arrow IPC and CSV files
//! (and `-`, an Arrow IPC stream on stdin), their column types, and readers
//! that yield Arrow record batches.
//!
//! Parquet files are read row group by row group (the unit of parallel
//! work; `parquet`), CSV files by [`csv`], Arrow IPC files and streams
//! (uncompressed, lz4 frames or zstd) by arrow-rs. CSV and IPC are
//! sequential: one reader thread parses them (see [`crate::engine`]).

mod binary_pages;
pub mod csv;
mod dict_unpack;
mod float_pages;
mod float_values;
pub mod memory;
mod page_format;
mod parquet;

pub use self::parquet::{parquet_metadata, parquet_row_group, RowGroupBatches};
use crate::formula::SourceType;
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use csv::{CsvOptions, EndCell, ReadFrom};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// A table lent by an embedding program ([`memory`]).
    Memory,
}

/// One input file (or stdin for `-`).
#[derive(Clone, Debug)]
pub struct Input {
    pub path: PathBuf,
    pub kind: SourceKind,
    /// Where to start reading (a file that grew since it was folded in);
    /// the default is the whole file.
    pub from: ReadFrom,
    /// A Parquet file's row groups to read (a part of a distributed fit);
    /// all of them when `None`.
    pub row_groups: Option<std::ops::Range<usize>>,
}

impl Input {
    /// The whole of a file of a known kind.
    pub fn new(path: PathBuf, kind: SourceKind) -> Input {
        Input { path, kind, from: ReadFrom::default(), row_groups: None }
    }
    pub fn display(&self) -> String {
        if self.is_stdin() {
            "<stdin>".into()
        } else if self.kind == SourceKind::Memory {
            let name = self.path.to_string_lossy();
            memory::lent(&name).map_or_else(|| name.to_string(), |t| t.label.clone())
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

fn kind_of(path: &Path) -> Option<SourceKind> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    // `listings.csv.gz` is a CSV file.
    let name = csv::COMPRESSED_SUFFIXES.iter().find_map(|s| name.strip_suffix(s)).map_or(name.clone(), str::to_string);
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
            out.push(Input::new(PathBuf::from("-"), SourceKind::IpcStream));
            continue;
        }
        if memory::is_memory_name(a) {
            if memory::lent(a).is_none() {
                return Err(SourceError::Io { path: a.clone(), message: "no table is lent under this name".into() });
            }
            out.push(Input::new(PathBuf::from(a), SourceKind::Memory));
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
                out.push(Input::new(f, kind));
            }
        } else if p.exists() {
            out.push(Input::new(p.to_path_buf(), kind_of(p).unwrap_or_else(|| sniff(p))));
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
                out.push(Input::new(f, kind));
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

/// Inputs expanded and their schemas read (opening stdin's stream if `-`
/// is among them).
pub struct OpenedInputs {
    pub inputs: Vec<Input>,
    /// How their CSV files are read.
    pub csv: CsvOptions,
    pub schemas: Vec<Option<SchemaRef>>,
    pub stdin: Option<Batches>,
}

/// Expand `args` (see [`expand`]) and read each input's schema.
pub fn open_inputs(args: &[String], csv: &CsvOptions) -> Result<OpenedInputs, SourceError> {
    let inputs = expand(args)?;
    let mut schemas = Vec::with_capacity(inputs.len());
    let mut stdin = None;
    let ipc_err =
        |path: String, e: ArrowError| SourceError::Format { path, kind: "Arrow IPC stream", message: e.to_string() };
    for input in &inputs {
        if input.kind == SourceKind::IpcStream && input.is_stdin() {
            let r = arrow::ipc::reader::StreamReader::try_new(BufReader::new(std::io::stdin()), None)
                .map_err(|e| ipc_err("<stdin>".into(), e))?;
            schemas.push(Some(r.schema()));
            stdin = Some(Box::new(r) as Batches);
        } else if input.kind == SourceKind::IpcStream {
            let f = open(&input.path)?;
            let r = arrow::ipc::reader::StreamReader::try_new(BufReader::new(f), None)
                .map_err(|e| ipc_err(input.display(), e))?;
            schemas.push(Some(r.schema()));
        } else {
            schemas.push(Some(schema_of(input, csv)?));
        }
    }
    Ok(OpenedInputs { inputs, csv: csv.clone(), schemas, stdin })
}

/// The schema of any input.
pub fn schema_of(input: &Input, csv: &CsvOptions) -> Result<SchemaRef, SourceError> {
    match input.kind {
        SourceKind::Parquet => Ok(parquet_metadata(input)?.schema().clone()),
        SourceKind::Csv => {
            open(&input.path)?;
            let schema = csv::infer_schema(&input.path, csv).map_err(|message| SourceError::Format {
                path: input.display(),
                kind: "CSV",
                message,
            })?;
            Ok(Arc::new(schema))
        }
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
        SourceKind::Memory => Ok(lent_table(input)?.schema.clone()),
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

/// An Arrow error's message without the variant's prefix ("Parquet
/// argument error: ", "External error: "): what went wrong, for a message
/// that already names the file.
pub fn arrow_message(e: &ArrowError) -> String {
    match e {
        ArrowError::ParquetError(m)
        | ArrowError::ParseError(m)
        | ArrowError::CsvError(m)
        | ArrowError::IpcError(m)
        | ArrowError::ComputeError(m)
        | ArrowError::InvalidArgumentError(m)
        | ArrowError::IoError(m, _) => m.clone(),
        ArrowError::ExternalError(x) => x.to_string(),
        other => other.to_string(),
    }
}

/// How to read a sequential input (CSV, IPC file or stream).
#[derive(Clone)]
pub struct SequentialRead<'a> {
    /// The CSV reading options.
    pub csv: &'a CsvOptions,
    /// The columns to read (all when empty; only CSV reads fewer).
    pub columns: &'a [String],
    pub batch_size: usize,
    /// Where to start: a CSV text offset and the records before it; for an
    /// IPC stream the rows to pass over.
    pub from: ReadFrom,
    /// Where a CSV file's read ended is written here.
    pub end: Option<EndCell>,
    /// Bytes read from the file are added here (progress).
    pub bytes: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// A stream of record batches.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// Batches of a sequential input (CSV, IPC file or stream).
pub fn sequential_batches(
    input: &Input,
    schema: Option<SchemaRef>,
    read: &SequentialRead<'_>,
) -> Result<Batches, SourceError> {
    let fmt_err =
        |kind: &'static str, e: ArrowError| SourceError::Format { path: input.display(), kind, message: e.to_string() };
    match input.kind {
        SourceKind::Csv => {
            let schema = match schema {
                Some(s) => s,
                None => schema_of(input, read.csv)?,
            };
            open(&input.path)?;
            let end = read.end.clone().unwrap_or_default();
            let r = csv::batches(
                &input.path,
                read.csv,
                &schema,
                read.columns,
                read.batch_size,
                read.from,
                end,
                read.bytes.clone(),
            )
            .map_err(|message| SourceError::Format { path: input.display(), kind: "CSV", message })?;
            Ok(Box::new(r))
        }
        SourceKind::IpcFile => {
            let f = csv::Counted::new(open(&input.path)?, read.bytes.clone());
            let r = arrow::ipc::reader::FileReader::try_new(BufReader::new(SeekCounted(f)), None)
                .map_err(|e| fmt_err("Arrow IPC", e))?;
            Ok(Box::new(r))
        }
        SourceKind::IpcStream => {
            let r: Box<dyn Read + Send> = if input.is_stdin() {
                Box::new(std::io::stdin())
            } else {
                Box::new(csv::Counted::new(open(&input.path)?, read.bytes.clone()))
            };
            let r = arrow::ipc::reader::StreamReader::try_new(BufReader::new(r), None)
                .map_err(|e| fmt_err("Arrow IPC stream", e))?;
            Ok(window(Box::new(r), read.from.records_before, read.from.limit))
        }
        SourceKind::Memory => {
            let table = lent_table(input)?;
            let batches: Vec<_> = table.batches.iter().cloned().map(Ok).collect();
            Ok(window(Box::new(batches.into_iter()), read.from.records_before, read.from.limit))
        }
        SourceKind::Parquet => unreachable!("Parquet is read by row group"),
    }
}

/// The table a memory input names (withdrawn only if its lender let go
/// during the call, which the lender does not do).
fn lent_table(input: &Input) -> Result<Arc<memory::MemoryTable>, SourceError> {
    memory::lent(&input.path.to_string_lossy())
        .ok_or_else(|| SourceError::Io { path: input.display(), message: "the lent table was withdrawn".into() })
}

/// A counted file that still seeks (the IPC file reader seeks to its
/// footer and blocks).
struct SeekCounted(csv::Counted<File>);

impl Read for SeekCounted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::io::Seek for SeekCounted {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.0.inner_mut().seek(pos)
    }
}

/// The rows of `batches` from row `skip` (an IPC stream that grew: the rows
/// already folded in are passed over) up to row `limit` (read again only as
/// far as it was folded in).
pub fn window(batches: Batches, skip: u64, limit: Option<u64>) -> Batches {
    if skip == 0 && limit.is_none() {
        return batches;
    }
    let mut at = 0u64;
    let end = limit.unwrap_or(u64::MAX);
    Box::new(
        batches
            .map_while(move |b| {
                let b = match b {
                    Ok(b) => b,
                    Err(e) => return Some(Some(Err(e))),
                };
                let (lo, hi) = (at, at + b.num_rows() as u64);
                at = hi;
                if lo >= end {
                    return None;
                }
                let (from, to) = (skip.clamp(lo, hi) - lo, end.clamp(lo, hi) - lo);
                Some((to > from).then(|| Ok(b.slice(from as usize, (to - from) as usize))))
            })
            .flatten(),
    )
}
