//! Parquet files: the footer, and the batches of one row group projected
//! to the columns a model uses.
//!
//! Column chunks that gramfit decodes from their pages itself (0/1
//! integers as bits, `binary_pages`; dictionary-encoded doubles,
//! `float_pages`) are opened beside arrow-rs's reader of the others. A
//! page reader that meets a page it does not decode — a legal page of
//! another encoding (a dictionary that fell back to PLAIN mid-chunk), v1
//! definition levels in the deprecated BIT_PACKED encoding — steps aside:
//! the column's remaining rows come from arrow-rs from that row on
//! ([`ColumnFallback`]). Only damaged data is an error: page checksums
//! (CRC-32, when the writer stored them) are verified on both paths, and
//! an error names the file, row group and column.

use super::binary_pages::BinaryColumn;
use super::float_pages::FloatColumn;
use super::page_format::{parquet_message, PageError};
use super::{open, Input, SourceError};
use crate::elementary::Function;
use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
use arrow::compute::concat;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::ProjectionMask;
use parquet::column::page::PageReader;
use parquet::file::serialized_reader::SerializedPageReader;
use std::fs::File;
use std::io::{BufReader, Read};
use std::sync::Arc;

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

    /// Reads into the buffer's spare capacity: zeroing a page's buffer
    /// before the kernel overwrites it took ~2% of a first pass of real
    /// values (`Read` can only fill initialised bytes).
    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        use std::os::fd::AsRawFd;
        let mut buf = Vec::<u8>::with_capacity(length);
        let mut read = 0;
        while read < length {
            let at = libc::off_t::try_from(start + read as u64)
                .map_err(|_| parquet::errors::ParquetError::EOF(format!("offset {start} past this system's files")))?;
            // SAFETY: the kernel writes at most `length - read` bytes from
            // `read` on, inside the vector's capacity of `length`.
            let n = unsafe { libc::pread(self.file.as_raw_fd(), buf.as_mut_ptr().add(read).cast(), length - read, at) };
            match n {
                0 => break,
                n if n > 0 => read += n as usize,
                _ => match std::io::Error::last_os_error() {
                    e if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    e => return Err(e.into()),
                },
            }
        }
        // SAFETY: pread wrote the first `read` bytes.
        unsafe { buf.set_len(read) };
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
        message: parquet_message(&e),
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

/// A reader over a Parquet row group, projected to `columns`.
///
/// Columns named in `binary` (the caller's: columns the model reads only as
/// numbers) whose chunk holds 0/1 integers in a dictionary of 0 and 1 are
/// decoded to bits and come as `Boolean` arrays (see `binary_pages`); with
/// `floats`, DOUBLE chunks (see `float_pages`) and BOOLEAN chunks (see
/// `binary_pages`) are decoded from their pages, into the same arrays
/// arrow-rs makes; the others as arrow-rs decodes them.
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
    let mut direct: Vec<DirectColumn> = Vec::new();
    let mut shared = None;
    for (at, &root) in roots.iter().enumerate() {
        let field = schema.field(root);
        let as_bits = field.data_type() == &DataType::Int64 && binary.iter().any(|b| b == field.name());
        let as_float = floats && field.data_type() == &DataType::Float64;
        let as_boolean = floats && field.data_type() == &DataType::Boolean;
        if !as_bits && !as_float && !as_boolean {
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
        } else if as_boolean {
            BinaryColumn::open_boolean(file, chunks.column(leaf), rows).map(|c| c.map(PageColumn::Bits))
        } else {
            FloatColumn::open(file, chunks.column(leaf), rows).map(|c| c.map(PageColumn::Float))
        };
        let damaged = |e: String| SourceError::Io {
            path: input.display(),
            message: format!("row group {row_group}: column '{}': {e}", field.name()),
        };
        if let Some(c) = opened.map_err(damaged)? {
            direct.push(DirectColumn { at, root, column: c, functions: Vec::new() });
        }
    }
    let decoded: Vec<usize> =
        roots.iter().enumerate().filter(|(at, _)| !direct.iter().any(|d| d.at == *at)).map(|(_, &r)| r).collect();
    let out_schema = Arc::new(Schema::new(
        roots
            .iter()
            .enumerate()
            .map(|(at, &r)| {
                let f = schema.field(r);
                if direct.iter().any(|d| d.at == at && matches!(d.column, PageColumn::Bits(_))) {
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
        Some(arrow_reader(input, meta, row_group, decoded.clone(), 0, batch_size).map_err(format_err)?)
    };
    let names = roots.iter().map(|&r| schema.field(r).name().clone()).collect();
    let rows_left = usize::try_from(chunks.num_rows()).unwrap_or(0);
    Ok(RowGroupBatches {
        input: input.clone(),
        meta: meta.clone(),
        row_group,
        arrow,
        decoded,
        direct,
        schema: out_schema,
        names,
        rows_left,
        rows_done: 0,
        batch_size: batch_size.max(1),
    })
}

/// arrow-rs's reader of the `roots` of a row group, from row `skip` on.
fn arrow_reader(
    input: &Input,
    meta: &ArrowReaderMetadata,
    row_group: usize,
    roots: Vec<usize>,
    skip: usize,
    batch_size: usize,
) -> Result<ParquetRecordBatchReader, String> {
    let f = PositionalFile::new(open(&input.path).map_err(|e| e.to_string())?);
    let mask = ProjectionMask::roots(meta.parquet_schema(), roots);
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(f, meta.clone())
        .with_row_groups(vec![row_group])
        .with_projection(mask)
        .with_batch_size(batch_size);
    if skip > 0 {
        let rows = usize::try_from(meta.metadata().row_group(row_group).num_rows()).unwrap_or(0);
        builder = builder.with_row_selection(RowSelection::from(vec![
            RowSelector::skip(skip),
            RowSelector::select(rows.saturating_sub(skip)),
        ]));
    }
    builder.build().map_err(|e| e.to_string())
}

/// The first of `roots` (schema fields) whose column chunk in `row_group`
/// fails to read page by page, and why: where arrow-rs reports damage
/// (a checksum, a codec's stream) without naming the column.
fn damaged_column(input: &Input, meta: &ArrowReaderMetadata, row_group: usize, roots: &[usize]) -> Option<String> {
    let schema = meta.schema();
    let chunks = meta.metadata().row_group(row_group);
    let rows = usize::try_from(chunks.num_rows()).unwrap_or(0);
    let file = Arc::new(PositionalFile::new(open(&input.path).ok()?));
    for &root in roots {
        let name = schema.field(root).name();
        for (leaf, c) in meta.parquet_schema().columns().iter().enumerate() {
            if c.path().parts().first() != Some(name) {
                continue;
            }
            let pages = SerializedPageReader::new(Arc::clone(&file), chunks.column(leaf), rows, None);
            let failure = match pages {
                Err(e) => Some(e),
                Ok(mut p) => loop {
                    match p.get_next_page() {
                        Ok(Some(_)) => {}
                        Ok(None) => break None,
                        Err(e) => break Some(e),
                    }
                },
            };
            if let Some(e) = failure {
                return Some(format!("column '{name}': {}", parquet_message(&e)));
            }
        }
    }
    None
}

/// A column chunk decoded from its pages rather than by arrow-rs — or, once
/// its page reader stepped aside, by an arrow-rs reader of its own.
enum PageColumn {
    Bits(BinaryColumn),
    Float(FloatColumn),
    Fallback(ColumnFallback),
}

impl PageColumn {
    /// The next `n` rows, and the values of the functions the column was
    /// opened with when it reads them (a float column's pages; others give
    /// none).
    fn read(&mut self, n: usize) -> Result<(ArrayRef, Vec<Float64Array>), PageError> {
        Ok(match self {
            PageColumn::Bits(c) => (Arc::new(c.read(n)?), Vec::new()),
            PageColumn::Float(c) => {
                let (values, mapped) = c.read(n)?;
                (Arc::new(values), mapped)
            }
            PageColumn::Fallback(c) => (c.read(n).map_err(PageError::Damaged)?, Vec::new()),
        })
    }
}

/// One column of a row group read by arrow-rs from a given row on, in
/// batches of exactly the rows asked for.
struct ColumnFallback {
    reader: ParquetRecordBatchReader,
    pending: Option<ArrayRef>,
}

impl ColumnFallback {
    fn read(&mut self, n: usize) -> Result<ArrayRef, String> {
        let mut parts: Vec<ArrayRef> = Vec::new();
        let mut have = 0;
        while have < n {
            let a = match self.pending.take() {
                Some(a) => a,
                None => match self.reader.next() {
                    Some(Ok(b)) => Arc::clone(b.column(0)),
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err(format!("the column chunk ended {} rows early", n - have)),
                },
            };
            let take = a.len().min(n - have);
            if take < a.len() {
                self.pending = Some(a.slice(take, a.len() - take));
            }
            parts.push(a.slice(0, take));
            have += take;
        }
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part"));
        }
        let refs: Vec<&dyn arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
        concat(&refs).map_err(|e| e.to_string())
    }
}

/// A column read from its pages, at position `at` of the output (root
/// `root` of the file's schema).
struct DirectColumn {
    at: usize,
    root: usize,
    column: PageColumn,
    /// Functions of the column read beside it (see
    /// [`RowGroupBatches::with_functions`]).
    functions: Vec<Function>,
}

/// A function's values of a `Float64` array: [`Function::map`]'s of each
/// value, its value of NaN at a null (`None` for an array of another type).
fn map_array(f: Function, a: &ArrayRef) -> Option<Float64Array> {
    let a = a.as_primitive_opt::<arrow::datatypes::Float64Type>()?;
    let mut out = vec![0.0; a.len()];
    f.map(a.values(), &mut out);
    if let Some(nulls) = a.nulls() {
        let of_null = f.of(f64::NAN);
        for r in nulls.iter().enumerate().filter(|(_, valid)| !valid).map(|(r, _)| r) {
            out[r] = of_null;
        }
    }
    Some(Float64Array::new(out.into(), a.nulls().cloned()))
}

/// The batches of one Parquet row group (see [`parquet_row_group`]).
pub struct RowGroupBatches {
    input: Input,
    meta: ArrowReaderMetadata,
    row_group: usize,
    /// arrow-rs's reader of the other columns (`None`: every column is
    /// decoded from its pages), and their roots.
    arrow: Option<ParquetRecordBatchReader>,
    decoded: Vec<usize>,
    /// Rows not yet handed out, handed out, and the batch size.
    rows_left: usize,
    rows_done: usize,
    batch_size: usize,
    /// Columns decoded from their pages, by position in the output
    /// (ascending).
    direct: Vec<DirectColumn>,
    schema: SchemaRef,
    names: Vec<String>,
}

impl RowGroupBatches {
    /// The columns decoded from their pages (as bits or as floats), not by
    /// arrow-rs (nor handed to it since).
    pub fn page_decoded(&self) -> Vec<&str> {
        self.direct
            .iter()
            .filter(|d| !matches!(d.column, PageColumn::Fallback(_)))
            .map(|d| self.names[d.at].as_str())
            .collect()
    }

    /// Read `functions` (column, function) of the DOUBLE columns decoded
    /// from their pages beside them: each a `Float64` column named
    /// [`Function::column_name`], after the columns asked for, with the
    /// column's nulls; a function's value of each row is
    /// [`Function::map`]'s of the column's value (of NaN at a null). Where
    /// a column is left to arrow-rs, no such column: the caller evaluates
    /// the function itself.
    pub fn with_functions(mut self, functions: &[(String, Function)]) -> RowGroupBatches {
        let mut fields: Vec<Arc<Field>> = self.schema.fields().iter().cloned().collect();
        for d in &mut self.direct {
            let name = &self.names[d.at];
            let fs: Vec<Function> = functions.iter().filter(|(c, _)| c == name).map(|&(_, f)| f).collect();
            let PageColumn::Float(c) = &mut d.column else { continue };
            if fs.is_empty() {
                continue;
            }
            c.set_functions(&fs);
            fields.extend(fs.iter().map(|f| Arc::new(Field::new(f.column_name(name), DataType::Float64, true))));
            d.functions = fs;
        }
        self.schema = Arc::new(Schema::new(fields));
        self
    }

    /// Column `d` of `direct` read by arrow-rs from the current row on.
    fn fall_back(&mut self, d: usize) -> Result<(), String> {
        let root = self.direct[d].root;
        let reader =
            arrow_reader(&self.input, &self.meta, self.row_group, vec![root], self.rows_done, self.batch_size)?;
        let at = self.direct[d].at;
        if matches!(self.direct[d].column, PageColumn::Bits(_)) {
            // arrow-rs gives the integers; the batches say so from now on.
            let mut fields: Vec<Arc<Field>> = self.schema.fields().iter().cloned().collect();
            fields[at] = Arc::clone(&self.meta.schema().fields()[root]);
            self.schema = Arc::new(Schema::new(fields));
        }
        self.direct[d].column = PageColumn::Fallback(ColumnFallback { reader, pending: None });
        Ok(())
    }

    fn located(&self, e: impl std::fmt::Display) -> ArrowError {
        let place = damaged_column(&self.input, &self.meta, self.row_group, &self.decoded);
        ArrowError::ParquetError(match place {
            Some(p) => p,
            None => e.to_string(),
        })
    }
}

impl Iterator for RowGroupBatches {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (n, mut columns) = match &mut self.arrow {
            Some(reader) => {
                let batch = match reader.next()? {
                    Ok(b) => b,
                    Err(e) => return Some(Err(self.located(e))),
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
                (n, Vec::with_capacity(self.direct.len()))
            }
        };
        let mut mapped = Vec::new();
        for d in 0..self.direct.len() {
            let mut read = self.direct[d].column.read(n);
            if let Err(PageError::Unsupported(_)) = read {
                if let Err(e) = self.fall_back(d) {
                    return Some(Err(ArrowError::ParquetError(format!(
                        "column '{}': {e}",
                        self.names[self.direct[d].at]
                    ))));
                }
                read = self.direct[d].column.read(n);
            }
            match read {
                Ok((a, mut values)) => {
                    let functions = &self.direct[d].functions;
                    if values.len() < functions.len() {
                        // Rows arrow-rs decoded (a page of another
                        // encoding on): the functions taken of them here.
                        match functions.iter().map(|&f| map_array(f, &a)).collect() {
                            Some(v) => values = v,
                            None => {
                                return Some(Err(ArrowError::ParquetError(format!(
                                    "column '{}': arrow-rs decoded a DOUBLE column as {}",
                                    self.names[self.direct[d].at],
                                    a.data_type()
                                ))))
                            }
                        }
                    }
                    mapped.extend(values.into_iter().map(|v| Arc::new(v) as ArrayRef));
                    columns.insert(self.direct[d].at, a)
                }
                Err(PageError::Damaged(e) | PageError::Unsupported(e)) => {
                    return Some(Err(ArrowError::ParquetError(format!(
                        "column '{}': {e}",
                        self.names[self.direct[d].at]
                    ))));
                }
            }
        }
        columns.extend(mapped);
        self.rows_left = self.rows_left.saturating_sub(n);
        self.rows_done += n;
        Some(RecordBatch::try_new(Arc::clone(&self.schema), columns))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::PositionalFile;
    use parquet::file::reader::ChunkReader;

    /// Pages are read into uninitialised buffers: every byte comes from
    /// the file, and a range past its end (a file cut short after its
    /// footer was read) is an error, not a short or stale page.
    #[test]
    fn pages_are_the_files_bytes_and_a_short_read_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pages");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let file = PositionalFile::new(std::fs::File::open(&path).unwrap());
        for (start, len) in [(0, 0), (0, 1), (7, 4096), (100_000, 100_000), (199_999, 1)] {
            let got = file.get_bytes(start, len).unwrap();
            assert_eq!(&got[..], &bytes[start as usize..start as usize + len], "{start}+{len}");
        }
        let err = file.get_bytes(199_990, 20).unwrap_err().to_string();
        assert!(err.contains("expected to read 20 bytes at offset 199990, read only 10"), "{err}");
    }
}
