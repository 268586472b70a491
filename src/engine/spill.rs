//! The columns a first pass parsed from CSV text, kept for the second
//! pass in a temporary Arrow IPC stream per file, so that the text is
//! parsed (and decompressed) once.
//!
//! The workers encode their chunks as IPC messages while they fold them;
//! the merging thread appends them to the file in block order, so the
//! stream holds the chunks in row order and the second pass folds them
//! on the same row grid (the same bits as parsing the text again). The
//! files live in a temporary directory (`TMPDIR`) that is removed when
//! the fit ends, whether it succeeds, fails or is interrupted; a file
//! that cannot be written (a full disk) is given up, said in
//! [`Spill::failure`], and the second pass parses the text again.

use crate::source::{Input, SourceKind};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::writer::{
    write_message, DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, StreamWriter,
};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;

/// Where a fit keeps the CSV columns of its first pass.
#[derive(Debug)]
pub struct Spill {
    /// Removes `dir` on a forced exit (see `interrupt`).
    _registered: crate::interrupt::TempDirGuard,
    dir: tempfile::TempDir,
    kept: Mutex<Vec<Kept>>,
    failure: Mutex<Option<String>>,
    /// Columns kept besides those the first pass reads (a cluster column
    /// only the second pass uses).
    extra_columns: Vec<String>,
}

/// One CSV file's kept columns.
#[derive(Debug)]
struct Kept {
    source: PathBuf,
    records: u64,
    path: PathBuf,
    columns: Vec<String>,
}

impl Spill {
    /// A new, empty temporary directory.
    pub fn new(extra_columns: Vec<String>) -> std::io::Result<Spill> {
        let dir = tempfile::Builder::new().prefix("gramfit-spill-").tempdir()?;
        Ok(Spill {
            _registered: crate::interrupt::TempDirGuard::new(dir.path()),
            dir,
            kept: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            extra_columns,
        })
    }

    /// Why a file could not be kept (its second pass parsed the text
    /// again), if one could not.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// The columns a first pass reading `columns` keeps, of those in the
    /// file's `schema`.
    pub(super) fn columns(&self, columns: &[String], schema: &arrow::datatypes::Schema) -> Vec<String> {
        let mut out = columns.to_vec();
        for c in &self.extra_columns {
            if !out.contains(c) && schema.index_of(c).is_ok() {
                out.push(c.clone());
            }
        }
        out
    }

    /// A kept file of `input` holding `columns`, read as far as `input`
    /// is to be read now — or `None` (the text is parsed).
    pub(super) fn kept_for(&self, input: &Input, columns: &[String]) -> Option<PathBuf> {
        if input.kind != SourceKind::Csv || input.from.offset != 0 {
            return None;
        }
        let kept = self.kept.lock().ok()?;
        kept.iter()
            .find(|k| {
                k.source == input.path
                    && input.from.limit == Some(k.records)
                    && columns.iter().all(|c| k.columns.contains(c))
            })
            .map(|k| k.path.clone())
    }

    /// A writer keeping the columns of input `index`, whose batches have
    /// `schema` — `None` when this input is kept already (a second pass)
    /// or the file cannot be made (said in [`failure`](Self::failure)).
    pub(super) fn writer(&self, index: usize, input: &Input, schema: &SchemaRef) -> Option<SpillWriter> {
        if input.kind != SourceKind::Csv || input.from.offset != 0 {
            return None;
        }
        if self.kept.lock().ok()?.iter().any(|k| k.source == input.path) {
            return None;
        }
        let path = self.dir.path().join(format!("{index}.arrows"));
        let made = File::create(&path).map_err(ArrowError::from).and_then(|f| {
            StreamWriter::try_new_with_options(BufWriter::with_capacity(1 << 20, f), schema, spill_options()?)
        });
        match made {
            Ok(writer) => {
                Some(SpillWriter { writer, path, source: input.path.clone(), schema: SchemaRef::clone(schema) })
            }
            Err(e) => {
                self.fail(input, &e);
                None
            }
        }
    }

    pub(super) fn fail(&self, input: &Input, e: &dyn std::fmt::Display) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert_with(|| format!("{}: the parsed columns could not be kept ({e})", input.display()));
        }
    }

    /// Record a finished file, or give it up after an error.
    pub(super) fn finish(&self, input: &Input, writer: SpillWriter, records: u64, ok: bool) {
        let path = writer.path.clone();
        if !ok {
            drop(writer);
            let _ = std::fs::remove_file(path);
            return;
        }
        match writer.finish(records) {
            Ok(kept) => {
                if let Ok(mut k) = self.kept.lock() {
                    k.push(kept);
                }
            }
            Err(e) => {
                self.fail(input, &e);
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// An IPC stream being written, in row order.
pub(super) struct SpillWriter {
    writer: StreamWriter<BufWriter<File>>,
    path: PathBuf,
    source: PathBuf,
    schema: SchemaRef,
}

impl SpillWriter {
    /// Append encoded messages ([`encode`]) of the next rows.
    pub(super) fn append(&mut self, messages: &[u8]) -> std::io::Result<()> {
        self.writer.get_mut().write_all(messages)
    }

    fn finish(mut self, records: u64) -> Result<Kept, ArrowError> {
        self.writer.finish()?;
        self.writer.get_mut().flush()?;
        let columns = self.schema.fields().iter().map(|f| f.name().clone()).collect();
        Ok(Kept { source: self.source, records, path: self.path, columns })
    }
}

/// `batch` as an IPC record-batch message appended to `out` (done by the
/// workers, in parallel).
pub(super) fn encode(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    let options = spill_options()?;
    let mut tracker = DictionaryTracker::new(false);
    let mut context = IpcWriteContext::default();
    let (dictionaries, message) = IpcDataGenerator::default().encode(batch, &mut tracker, &options, &mut context)?;
    debug_assert!(dictionaries.is_empty(), "CSV columns have no dictionaries");
    write_message(out, message, &options)?;
    Ok(())
}

fn spill_options() -> Result<IpcWriteOptions, ArrowError> {
    IpcWriteOptions::default().try_with_compression(Some(arrow::ipc::CompressionType::LZ4_FRAME))
}
