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
    Parquet(parquet::arrow::ArrowWriter<File>),
    Csv(arrow::csv::Writer<BufWriter<Box<dyn Write>>>),
    Arrow(arrow::ipc::writer::FileWriter<BufWriter<File>>),
    Json(BufWriter<Box<dyn Write>>),
}

/// A table being written.
pub struct TableWriter {
    sink: Option<Sink>,
    /// The temporary file and the final path (`None`: standard output).
    paths: Option<(PathBuf, PathBuf)>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

impl TableWriter {
    /// A writer of `schema` in `format` to `path` (atomically), or CSV to
    /// standard output without a path.
    pub fn create(path: Option<&Path>, format: TableFormat, schema: &SchemaRef) -> Result<TableWriter, String> {
        let Some(path) = path else {
            let out: Box<dyn Write> = Box::new(std::io::stdout());
            let sink = match format {
                TableFormat::Json => Sink::Json(BufWriter::new(out)),
                _ => Sink::Csv(arrow::csv::WriterBuilder::new().with_header(true).build(BufWriter::new(out))),
            };
            return Ok(TableWriter { sink: Some(sink), paths: None });
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        let sink = match format {
            TableFormat::Parquet => {
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .build();
                Sink::Parquet(
                    parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))
                        .map_err(|e| io_err(path, e))?,
                )
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
        Ok(TableWriter { sink: Some(sink), paths: Some((tmp, path.to_path_buf())) })
    }

    fn name(&self) -> String {
        self.paths.as_ref().map_or_else(|| "<stdout>".into(), |(_, p)| p.display().to_string())
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let name = self.name();
        let e = |e: &dyn std::fmt::Display| format!("{name}: {e}");
        match self.sink.as_mut().expect("a writer not finished") {
            Sink::Parquet(w) => w.write(batch).map_err(|x| e(&x)),
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
