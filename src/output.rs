//! Tables written batch by batch (predictions): Parquet, CSV, Arrow IPC or
//! JSON Lines, to a file — written under a temporary name beside it,
//! synced and renamed into place when complete, removed if the run fails
//! or is interrupted, so a reader never sees half a file — or CSV to
//! standard output.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An output table format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    Parquet,
    Csv,
    /// Arrow IPC file (Feather v2).
    Arrow,
    /// JSON Lines: one object per row, nulls as `null`.
    Json,
}

impl TableFormat {
    /// The format a file name implies, if any.
    pub fn of_path(path: &Path) -> Option<TableFormat> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        [
            (".parquet", TableFormat::Parquet),
            (".pq", TableFormat::Parquet),
            (".csv", TableFormat::Csv),
            (".arrow", TableFormat::Arrow),
            (".feather", TableFormat::Arrow),
            (".ipc", TableFormat::Arrow),
            (".json", TableFormat::Json),
            (".jsonl", TableFormat::Json),
            (".ndjson", TableFormat::Json),
        ]
        .into_iter()
        .find_map(|(s, f)| name.ends_with(s).then_some(f))
    }
}

enum Sink {
    /// Row groups encoded by the caller (in parallel, see
    /// [`TableWriter::encoder`]) and appended here in order.
    Parquet(parquet::file::writer::SerializedFileWriter<File>),
    Csv(arrow::csv::Writer<BufWriter<Box<dyn Write>>>),
    Arrow(arrow::ipc::writer::FileWriter<BufWriter<File>>),
    Json(BufWriter<Box<dyn Write>>),
}

/// Encodes row groups of a Parquet output on any thread: the expensive
/// part of writing (encoding, compression) runs where the rows were
/// computed, and only the encoded chunks are appended in order.
#[derive(Clone)]
pub struct ParquetEncoder {
    factory: Arc<parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory>,
    schema: SchemaRef,
}

/// A row group's encoded column chunks, and its rows.
pub struct EncodedRowGroup {
    chunks: Vec<parquet::arrow::arrow_writer::ArrowColumnChunk>,
    pub rows: u64,
}

impl ParquetEncoder {
    /// A row group to encode batch by batch (only encoded pages are kept).
    pub fn begin(&self) -> Result<RowGroupEncoder, String> {
        let writers = self.factory.create_column_writers(0).map_err(|e| e.to_string())?;
        Ok(RowGroupEncoder { writers, schema: self.schema.clone(), rows: 0 })
    }

    /// Encode `batches` (of the table's schema) as one row group.
    pub fn encode(&self, batches: &[RecordBatch]) -> Result<EncodedRowGroup, String> {
        let mut g = self.begin()?;
        for b in batches {
            g.write(b)?;
        }
        g.finish()
    }
}

/// A row group being encoded.
pub struct RowGroupEncoder {
    writers: Vec<parquet::arrow::arrow_writer::ArrowColumnWriter>,
    schema: SchemaRef,
    rows: u64,
}

impl RowGroupEncoder {
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        use parquet::arrow::arrow_writer::compute_leaves;
        let mut w = self.writers.iter_mut();
        for (field, array) in self.schema.fields().iter().zip(batch.columns()) {
            for leaf in compute_leaves(field, array).map_err(|e| e.to_string())? {
                let Some(writer) = w.next() else { return Err("more leaves than column writers".into()) };
                writer.write(&leaf).map_err(|e| e.to_string())?;
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    pub fn finish(self) -> Result<EncodedRowGroup, String> {
        let chunks =
            self.writers.into_iter().map(|w| w.close().map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
        Ok(EncodedRowGroup { chunks, rows: self.rows })
    }
}

/// A table being written.
pub struct TableWriter {
    sink: Option<Sink>,
    encoder: Option<ParquetEncoder>,
    /// The temporary file and the final path (`None`: standard output).
    paths: Option<(PathBuf, PathBuf)>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

impl TableWriter {
    /// A writer of `schema` in `format` to `path` (atomically), or CSV to
    /// standard output without a path. `computed` names the columns of
    /// distinct floats (predictions), which a Parquet table stores PLAIN
    /// and uncompressed.
    pub fn create(
        path: Option<&Path>,
        format: TableFormat,
        schema: &SchemaRef,
        computed: &[&str],
    ) -> Result<TableWriter, String> {
        let Some(path) = path else {
            let out: Box<dyn Write> = Box::new(std::io::stdout());
            let sink = match format {
                TableFormat::Json => Sink::Json(BufWriter::new(out)),
                _ => Sink::Csv(arrow::csv::WriterBuilder::new().with_header(true).build(BufWriter::new(out))),
            };
            return Ok(TableWriter { sink: Some(sink), encoder: None, paths: None });
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        let mut encoder = None;
        let sink = match format {
            TableFormat::Parquet => {
                // Predictions are distinct floats: a dictionary would be
                // built and abandoned page after page, and their mantissas
                // do not compress (snappy saved 0.03% of the benchmark's
                // predictions and took ~40% of the time of writing them).
                // Kept columns (ids, neighborhoods) keep the defaults:
                // dictionary and snappy. Row groups of 256k rows keep the
                // writer's buffer small.
                let mut props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(1 << 18));
                for c in computed {
                    let c = parquet::schema::types::ColumnPath::from(*c);
                    props = props
                        .set_column_dictionary_enabled(c.clone(), false)
                        .set_column_compression(c, parquet::basic::Compression::UNCOMPRESSED);
                }
                let props = props.build();
                let w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))
                    .map_err(|e| io_err(path, e))?;
                let (file_writer, factory) = w.into_serialized_writer().map_err(|e| io_err(path, e))?;
                encoder = Some(ParquetEncoder { factory: Arc::new(factory), schema: schema.clone() });
                Sink::Parquet(file_writer)
            }
            TableFormat::Csv => {
                let out: Box<dyn Write> = Box::new(file);
                Sink::Csv(arrow::csv::WriterBuilder::new().with_header(true).build(BufWriter::new(out)))
            }
            TableFormat::Arrow => Sink::Arrow(
                arrow::ipc::writer::FileWriter::try_new(BufWriter::new(file), schema).map_err(|e| io_err(path, e))?,
            ),
            TableFormat::Json => {
                let out: Box<dyn Write> = Box::new(file);
                Sink::Json(BufWriter::new(out))
            }
        };
        Ok(TableWriter { sink: Some(sink), encoder, paths: Some((tmp, path.to_path_buf())) })
    }

    /// For a Parquet table: the encoder whose row groups [`append`](Self::append)
    /// takes (batches given to [`write`](Self::write) are encoded here).
    pub fn encoder(&self) -> Option<ParquetEncoder> {
        self.encoder.clone()
    }

    /// Append a row group encoded by [`encoder`](Self::encoder).
    pub fn append(&mut self, group: EncodedRowGroup) -> Result<(), String> {
        let name = self.name();
        let Some(Sink::Parquet(w)) = self.sink.as_mut() else {
            return Err(format!("{name}: encoded row groups go to a Parquet table only"));
        };
        if group.rows == 0 {
            return Ok(());
        }
        let mut rg = w.next_row_group().map_err(|e| format!("{name}: {e}"))?;
        for c in group.chunks {
            c.append_to_row_group(&mut rg).map_err(|e| format!("{name}: {e}"))?;
        }
        rg.close().map_err(|e| format!("{name}: {e}"))?;
        // The row group goes to disk while the next ones are computed:
        // the sync that completes the table then waits for little (it
        // took ~0.45 s of a 1.5 s prediction of 10M rows).
        w.flush().map_err(|e| format!("{name}: {e}"))?;
        start_writeback(w.inner());
        Ok(())
    }

    fn name(&self) -> String {
        self.paths.as_ref().map_or_else(|| "<stdout>".into(), |(_, p)| p.display().to_string())
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let name = self.name();
        let e = |e: &dyn std::fmt::Display| format!("{name}: {e}");
        if let Some(enc) = &self.encoder {
            let group = enc.encode(std::slice::from_ref(batch)).map_err(|x| e(&x))?;
            return self.append(group);
        }
        match self.sink.as_mut().expect("a writer not finished") {
            Sink::Parquet(_) => Err(e(&"a Parquet table without its encoder")),
            Sink::Csv(w) => w.write(batch).map_err(|x| e(&x)),
            Sink::Arrow(w) => w.write(batch).map_err(|x| e(&x)),
            Sink::Json(w) => write_json_lines(w, batch).map_err(|x| e(&x)),
        }
    }

    /// Complete the table: flush, sync and rename it into place.
    pub fn finish(mut self) -> Result<(), String> {
        let name = self.name();
        let e = |e: &dyn std::fmt::Display| format!("{name}: {e}");
        let file = match self.sink.take().expect("a writer not finished") {
            // Writes the footer, then hands the file back.
            Sink::Parquet(w) => Some(w.into_inner().map_err(|x| e(&x))?),
            Sink::Csv(w) => {
                w.into_inner().flush().map_err(|x| e(&x))?;
                None
            }
            Sink::Arrow(mut w) => {
                w.finish().map_err(|x| e(&x))?;
                w.into_inner().map_err(|x| e(&x))?.into_inner().map_err(|x| e(&x.error()))?.into()
            }
            Sink::Json(mut w) => {
                w.flush().map_err(|x| e(&x))?;
                None
            }
        };
        let Some((tmp, path)) = self.paths.take() else { return Ok(()) };
        if let Some(f) = file {
            f.sync_all().map_err(|x| e(&x))?;
        } else {
            File::open(&tmp).and_then(|f| f.sync_all()).map_err(|x| e(&x))?;
        }
        std::fs::rename(&tmp, &path).map_err(|x| e(&x))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// Ask the kernel to start writing `f`'s dirty pages to disk, without
/// waiting for them (the final `sync_all` waits). Best effort: an error
/// here leaves the work to that sync.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn start_writeback(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain system call on an open descriptor, no memory passed.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn start_writeback(_: &File) {}

impl Drop for TableWriter {
    fn drop(&mut self) {
        // Not finished: a failure or an interruption. Nothing half-written
        // stays behind.
        drop(self.sink.take());
        if let Some((tmp, _)) = self.paths.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// One JSON object per row: numbers (null where not finite or null),
/// strings, booleans.
fn write_json_lines(w: &mut impl Write, batch: &RecordBatch) -> std::io::Result<()> {
    use serde_json::Value;
    let schema = batch.schema();
    let cols: Vec<arrow::array::ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Float64 | DataType::Int64 | DataType::Boolean | DataType::Utf8 => Ok(c.clone()),
            t if t.is_integer() => arrow::compute::cast(c, &DataType::Int64),
            t if t.is_numeric() => arrow::compute::cast(c, &DataType::Float64),
            _ => arrow::compute::cast(c, &DataType::Utf8),
        })
        .collect::<Result<_, _>>()
        .map_err(std::io::Error::other)?;
    for r in 0..batch.num_rows() {
        let mut obj = serde_json::Map::with_capacity(cols.len());
        for (f, c) in schema.fields().iter().zip(&cols) {
            let v = if c.is_null(r) {
                Value::Null
            } else {
                match c.data_type() {
                    DataType::Float64 => {
                        serde_json::Number::from_f64(c.as_primitive::<arrow::datatypes::Float64Type>().value(r))
                            .map_or(Value::Null, Value::Number)
                    }
                    DataType::Int64 => Value::from(c.as_primitive::<arrow::datatypes::Int64Type>().value(r)),
                    DataType::Boolean => Value::Bool(c.as_boolean().value(r)),
                    _ => Value::String(c.as_string::<i32>().value(r).to_string()),
                }
            };
            obj.insert(f.name().clone(), v);
        }
        serde_json::to_writer(&mut *w, &Value::Object(obj))?;
        w.write_all(b"\n")?;
    }
    Ok(())
}
