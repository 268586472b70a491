//! The parallel engine: inputs → work units → per-unit accumulators →
//! ordered merge.
//!
//! **Determinism.** Rows are accumulated in *chunks* of [`CHUNK_ROWS`]
//! consecutive rows of a work unit, whatever the read batch size (batches
//! are re-cut at chunk boundaries), and each unit's accumulator is the left
//! fold of its chunks in order. Units are Parquet row groups (handed to
//! worker threads in order, at most two per thread started and not yet
//! merged, results merged in unit order as they come) or, for sequential
//! sources (CSV, IPC), runs of [`CHUNKS_PER_UNIT`] chunks that a reader
//! thread sends to workers through a bounded crossbeam channel (so memory is
//! bounded by back-pressure) and whose results are folded in sequence order.
//! Inputs are folded in the order given. The result is therefore bit-identical
//! for any thread count and batch size.

use crate::accumulator::{ChunkSink, EmptySink};
use crate::design::{DesignBuilder, DesignError};
use crate::elementary::Function;
use crate::report::InputInfo;
use crate::source::csv::EndCell;
use crate::source::{self, Batches, Input, OpenedInputs, SequentialRead, SourceError, SourceKind};
use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

mod csv;
mod ordered;
mod spill;

use ordered::{merge_in_order, ordered_units, spawn_workers};
pub use spill::Spill;

/// Rows per accumulation chunk (a fixed part of the arithmetic, not a
/// tuning knob: it decides where the compensated sums are merged). 8192,
/// the read batch size: 2% faster end to end than 4096 on the benchmark
/// file (fewer per-chunk fixed costs, half the pattern-table collapses in
/// the robust second pass), ~0.5 MiB more per thread.
pub const CHUNK_ROWS: usize = 8192;
/// Chunks per work unit of a sequential source (CSV, Arrow IPC): a part
/// of the arithmetic too (units are merged in order). 4: a CSV block of
/// 32,768 records is ~3 MiB of text on the listings file, so the blocks
/// in flight (threads + 2) stay small; 16 measured no faster.
pub const CHUNKS_PER_UNIT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{path}: {source}")]
    Design { path: String, source: Box<DesignError> },
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("interrupted")]
    Interrupted,
    /// A worker panicked: a bug, reported as an error (nothing of the pass
    /// is kept) rather than left to stop or hang the process.
    #[error("internal error while reading {0} (a bug in gramfit; please report it)")]
    Internal(String),
}

/// How to run a pass.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub threads: usize,
    pub batch_size: usize,
    /// Read Parquet 0/1 integer columns that the model uses only as numbers
    /// straight from their pages as bits (`source::parquet_row_group`);
    /// off: arrow-rs decodes them (the same results, bit for bit).
    pub binary_pages: bool,
    /// Decode dictionary-encoded Parquet DOUBLE columns from their pages
    /// (`source::float_pages`); off: arrow-rs decodes them (the same
    /// arrays).
    pub float_pages: bool,
    /// Keep the columns parsed from CSV files for a second pass (the
    /// first pass writes them, the second reads them).
    pub spill: Option<Arc<Spill>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_size: 8192,
            // The reference path (GRAMFIT_NO_DIRECT=1, see `DesignBuilder`)
            // reads every column as arrow-rs decodes it.
            binary_pages: std::env::var_os("GRAMFIT_NO_DIRECT").is_none_or(|v| v == "0"),
            float_pages: std::env::var_os("GRAMFIT_NO_DIRECT").is_none_or(|v| v == "0"),
            spill: None,
        }
    }
}

/// Keep freed memory in the process instead of returning it to the system
/// at once. The Parquet decoder allocates fresh buffers for every batch
/// (~64 KiB per column); with glibc's default thresholds those pages are
/// unmapped and faulted in again batch after batch, which measured ~25% of
/// the decode time. Memory stays bounded: it is reused, not accumulated.
/// Call once, before any threads start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other
    // threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Set by the Ctrl-C (SIGINT/SIGTERM) handler: every pass stops at the next
/// chunk and nothing is saved.
pub use crate::interrupt::INTERRUPTED;

/// Progress counters shared with a progress display, and a stop flag.
#[derive(Default, Debug)]
pub struct Progress {
    /// Rows read in the current pass.
    pub rows: AtomicU64,
    pub stop: AtomicBool,
    /// Nanoseconds spent in the accumulators, summed over threads: the
    /// pass's own arithmetic, apart from reading and decoding (for
    /// benchmarks; two clock reads per chunk).
    pub sink_nanos: AtomicU64,
    /// Rows of Parquet row groups done, and bytes read from the other
    /// inputs, in the current pass.
    pub parquet_rows: AtomicU64,
    pub bytes: Arc<AtomicU64>,
    /// The current pass: its name and size, set when it starts.
    pass: std::sync::Mutex<Option<PassPlan>>,
}

/// What a pass will read: Parquet rows (and those files' bytes), the other
/// inputs' bytes; 0 where unknown (a stream on stdin).
#[derive(Clone, Debug)]
pub struct PassPlan {
    pub label: String,
    pub parquet_rows: u64,
    pub parquet_bytes: u64,
    pub other_bytes: u64,
    pub started: std::time::Instant,
}

impl Progress {
    /// Stop requested: by an error elsewhere in the pass, or by Ctrl-C.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || INTERRUPTED.load(Ordering::Relaxed)
    }

    /// Name the passes that follow (e.g. `pass 1/2`).
    pub fn set_label(&self, label: &str) {
        if let Ok(mut p) = self.pass.lock() {
            match p.as_mut() {
                Some(plan) => plan.label = label.to_string(),
                None => {
                    *p = Some(PassPlan {
                        label: label.to_string(),
                        parquet_rows: 0,
                        parquet_bytes: 0,
                        other_bytes: 0,
                        started: std::time::Instant::now(),
                    })
                }
            }
        }
    }

    /// A pass starts: its size, and the counters from zero.
    fn begin(&self, parquet_rows: u64, parquet_bytes: u64, other_bytes: u64) {
        self.rows.store(0, Ordering::Relaxed);
        self.parquet_rows.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        if let Ok(mut p) = self.pass.lock() {
            let label = p.as_ref().map_or_else(String::new, |p| p.label.clone());
            *p = Some(PassPlan { label, parquet_rows, parquet_bytes, other_bytes, started: std::time::Instant::now() });
        }
    }

    /// The current pass's plan.
    pub fn plan(&self) -> Option<PassPlan> {
        self.pass.lock().ok().and_then(|p| p.clone())
    }

    /// The share of the current pass done (by bytes of input, Parquet
    /// row groups counted by their rows), when its size is known.
    pub fn fraction(&self) -> Option<f64> {
        let p = self.plan()?;
        let total = p.parquet_bytes + p.other_bytes;
        if total == 0 {
            return None;
        }
        let pq = if p.parquet_rows > 0 {
            self.parquet_rows.load(Ordering::Relaxed) as f64 / p.parquet_rows as f64 * p.parquet_bytes as f64
        } else {
            0.0
        };
        Some(((pq + self.bytes.load(Ordering::Relaxed) as f64) / total as f64).min(1.0))
    }
}

/// Re-cuts a stream of batches into chunks of exactly `CHUNK_ROWS` rows
/// (the last one shorter).
struct Rechunker {
    schema: Option<SchemaRef>,
    pending: Vec<RecordBatch>,
    rows: usize,
}

impl Rechunker {
    fn new() -> Self {
        Rechunker { schema: None, pending: Vec::new(), rows: 0 }
    }

    fn push(&mut self, batch: RecordBatch, out: &mut Vec<RecordBatch>) -> Result<(), arrow::error::ArrowError> {
        self.schema.get_or_insert_with(|| batch.schema());
        let mut batch = batch;
        loop {
            let need = CHUNK_ROWS - self.rows;
            if batch.num_rows() < need {
                if batch.num_rows() > 0 {
                    self.rows += batch.num_rows();
                    self.pending.push(batch);
                }
                return Ok(());
            }
            let head = batch.slice(0, need);
            batch = batch.slice(need, batch.num_rows() - need);
            self.pending.push(head);
            out.push(self.take()?);
        }
    }

    fn take(&mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let parts = std::mem::take(&mut self.pending);
        self.rows = 0;
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        let schema = self.schema.clone().expect("schema of a pushed batch");
        if parts.iter().all(|p| p.schema() == schema) {
            return concat_batches(&schema, &parts);
        }
        // A Parquet column read as bits whose page reader stepped aside
        // mid-row-group comes as integers from then on: the chunk takes
        // the integers (the same 0/1 values).
        let fields: Vec<arrow::datatypes::FieldRef> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(j, f)| match parts.iter().find(|p| p.schema().field(j).data_type() != f.data_type()) {
                Some(p) if f.data_type() == &arrow::datatypes::DataType::Boolean => Arc::clone(&p.schema().fields()[j]),
                _ => Arc::clone(f),
            })
            .collect();
        let unified = Arc::new(arrow::datatypes::Schema::new(fields));
        let cast_parts = parts
            .iter()
            .map(|p| {
                let cols = p
                    .columns()
                    .iter()
                    .zip(unified.fields())
                    .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
                    .collect::<Result<Vec<_>, _>>()?;
                RecordBatch::try_new(Arc::clone(&unified), cols)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.schema = Some(Arc::clone(&unified));
        concat_batches(&unified, &cast_parts)
    }

    fn finish(&mut self) -> Result<Option<RecordBatch>, arrow::error::ArrowError> {
        if self.rows == 0 {
            return Ok(None);
        }
        self.take().map(Some)
    }
}

/// Fold chunks (in order) into an accumulator; `first_row` is the first
/// row of the first chunk within its input, for error locations.
fn fold_chunks<A: ChunkSink>(
    builder: &DesignBuilder,
    acc: &mut A,
    chunks: &[RecordBatch],
    first_row: u64,
    input: &Input,
    locate: &(dyn Fn(u64) -> String + Sync),
    progress: &Progress,
) -> Result<(), EngineError> {
    let mut row = first_row;
    for chunk in chunks {
        if progress.stopped() {
            return Err(EngineError::Interrupted);
        }
        let base = row;
        let start = std::time::Instant::now();
        let design_err = |e| EngineError::Design { path: input.display(), source: Box::new(e) };
        match builder.select_group(chunk).map_err(design_err)? {
            None => acc.add_chunk(builder, chunk, &|r| locate(base + r as u64)),
            // A chunk without a row of the group has nothing to fold.
            Some((group, _)) if group.num_rows() == 0 => Ok(()),
            Some((group, rows)) => acc.add_chunk(builder, &group, &|r| locate(base + rows[r] as u64)),
        }
        .map_err(design_err)?;
        progress.sink_nanos.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        row += chunk.num_rows() as u64;
        progress.rows.fetch_add(chunk.num_rows() as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// End of a work unit (see [`ChunkSink::finish`]), timed as the chunks are.
fn finish_unit<A: ChunkSink>(acc: &mut A, progress: &Progress) {
    let start = std::time::Instant::now();
    acc.finish();
    progress.sink_nanos.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

fn read_err(input: &Input, e: impl std::fmt::Display) -> EngineError {
    EngineError::Read { path: input.display(), message: e.to_string() }
}

/// A read error of an input, its message without arrow's prefixes.
fn arrow_err(input: &Input, context: &str, e: &arrow::error::ArrowError) -> EngineError {
    read_err(input, format!("{context}{}", source::arrow_message(e)))
}

/// One Parquet row group → accumulator, chunk by chunk as it is decoded
/// (memory: one read batch plus one chunk, not the row group); `columns`
/// are read, those of them in `binary` as bits where they qualify.
#[allow(clippy::too_many_arguments)]
fn parquet_unit<A: ChunkSink>(
    builder: &DesignBuilder,
    make: &(dyn Fn() -> A + Sync),
    input: &Input,
    meta: &parquet::arrow::arrow_reader::ArrowReaderMetadata,
    rg: usize,
    (columns, binary, functions): (&[String], &[String], &[(String, Function)]),
    opts: &EngineOptions,
    progress: &Progress,
) -> Result<A, EngineError> {
    let reader = source::parquet_row_group(input, meta, rg, columns, binary, opts.float_pages, opts.batch_size)?
        .with_functions(functions);
    let locate = move |r: u64| format!("row group {rg}, row {r}");
    let mut acc = make();
    let mut chunker = Rechunker::new();
    let mut chunks = Vec::new();
    let mut row = 0u64;
    for b in reader {
        let b = b.map_err(|e| arrow_err(input, &format!("row group {rg}: "), &e))?;
        chunker.push(b, &mut chunks).map_err(|e| arrow_err(input, "", &e))?;
        fold_chunks(builder, &mut acc, &chunks, row, input, &locate, progress)?;
        let done = chunks.iter().map(|c| c.num_rows() as u64).sum::<u64>();
        progress.parquet_rows.fetch_add(done, Ordering::Relaxed);
        row += done;
        chunks.clear();
    }
    if let Some(last) = chunker.finish().map_err(|e| arrow_err(input, "", &e))? {
        let done = last.num_rows() as u64;
        fold_chunks(builder, &mut acc, &[last], row, input, &locate, progress)?;
        progress.parquet_rows.fetch_add(done, Ordering::Relaxed);
    }
    finish_unit(&mut acc, progress);
    Ok(acc)
}

/// A sequential input: reader thread → bounded channel → workers → ordered fold.
/// Each work unit's result goes to `consume`, in order; returns the rows
/// read from the input (before any selection of a group's rows).
fn sequential_input<A: ChunkSink>(
    builder: &DesignBuilder,
    make: &(dyn Fn() -> A + Sync),
    input: &Input,
    batches: Batches,
    opts: &EngineOptions,
    progress: &Progress,
    consume: &mut dyn FnMut(A),
) -> Result<u64, EngineError> {
    let rows_in = AtomicU64::new(0);
    let rows_in_ref = &rows_in;
    let csv = input.kind == SourceKind::Csv;
    let locate = move |r: u64| if csv { format!("line {}", r + 2) } else { format!("row {r}") };
    let threads = opts.threads.max(1);
    let (work_tx, work_rx) = crossbeam_channel::bounded::<(usize, (u64, Vec<RecordBatch>))>(threads * 2);
    let (res_tx, res_rx) = crossbeam_channel::unbounded::<(usize, Result<A, EngineError>)>();
    let locate = &locate;
    let run = move |(first, unit): (u64, Vec<RecordBatch>)| {
        let mut acc = make();
        fold_chunks(builder, &mut acc, &unit, first, input, locate, progress).map(|()| {
            finish_unit(&mut acc, progress);
            acc
        })
    };
    let what =
        move |(first, _): &(u64, Vec<RecordBatch>)| format!("{}, the rows from {}", input.display(), locate(*first));
    std::thread::scope(|s| {
        let reader_res_tx = res_tx.clone();
        s.spawn(move || {
            let mut chunker = Rechunker::new();
            let mut unit: Vec<RecordBatch> = Vec::new();
            let mut seq = 0usize;
            let mut first_row = 0u64;
            let mut unit_rows = 0u64;
            let send = |unit: Vec<RecordBatch>, seq: &mut usize, first: u64| -> bool {
                let ok = work_tx.send((*seq, (first, unit))).is_ok();
                *seq += 1;
                ok
            };
            for b in batches {
                if let Ok(b) = &b {
                    rows_in_ref.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                }
                if progress.stopped() {
                    let _ = reader_res_tx.send((usize::MAX, Err(EngineError::Interrupted)));
                    return;
                }
                let b = match b {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = reader_res_tx.send((usize::MAX, Err(arrow_err(input, "", &e))));
                        return;
                    }
                };
                let mut chunks = Vec::new();
                if let Err(e) = chunker.push(b, &mut chunks) {
                    let _ = reader_res_tx.send((usize::MAX, Err(arrow_err(input, "", &e))));
                    return;
                }
                for c in chunks {
                    unit_rows += c.num_rows() as u64;
                    unit.push(c);
                    if unit.len() == CHUNKS_PER_UNIT {
                        if !send(std::mem::take(&mut unit), &mut seq, first_row) {
                            return;
                        }
                        first_row += unit_rows;
                        unit_rows = 0;
                    }
                }
            }
            match chunker.finish() {
                Ok(Some(c)) => unit.push(c),
                Ok(None) => {}
                Err(e) => {
                    let _ = reader_res_tx.send((usize::MAX, Err(arrow_err(input, "", &e))));
                    return;
                }
            }
            if !unit.is_empty() {
                send(unit, &mut seq, first_row);
            }
        });
        spawn_workers(s, threads, &work_rx, &res_tx, &run, &what);
        drop(res_tx);
        drop(work_rx);
        merge_in_order(res_rx, progress, consume)
    })
    .map(|()| rows_in.load(Ordering::Relaxed))
}

/// What a pass read of one input, besides its results: where a CSV read
/// ended, and the rows of the file read (before any group's selection).
pub struct InputRead {
    pub end: Option<crate::source::csv::ReadEnd>,
    pub file_rows: u64,
}

/// Run a pass over all inputs, handing each work unit's result to
/// `consume(input, result)` in input order and, within an input, in unit
/// order — whatever the thread count — as soon as it is next (memory: the
/// units in flight, not the data). `stdin`: the already-opened stream of an
/// input `-`.
pub fn stream<A: ChunkSink>(
    opened: OpenedInputs,
    builder: &DesignBuilder,
    make: &(dyn Fn() -> A + Sync),
    opts: &EngineOptions,
    progress: &Progress,
    consume: &mut dyn FnMut(usize, A),
) -> Result<Vec<InputRead>, EngineError> {
    let OpenedInputs { inputs, csv, schemas, stdin: mut stdin_stream } = opened;
    let columns = builder.source_columns();
    let binary = if opts.binary_pages { builder.numeric_only_columns() } else { Vec::new() };
    let functions = if opts.float_pages { builder.functions_of_columns() } else { Vec::new() };
    let mut metas = Vec::new();
    for input in &inputs {
        metas.push(if input.kind == SourceKind::Parquet { Some(source::parquet_metadata(input)?) } else { None });
    }
    // The pass's size, for the progress display.
    let size = |i: &Input| if i.is_stdin() { 0 } else { std::fs::metadata(&i.path).map_or(0, |m| m.len()) };
    let (mut pq_rows, mut pq_bytes, mut other) = (0u64, 0u64, 0u64);
    for (input, meta) in inputs.iter().zip(&metas) {
        match meta {
            Some(m) => {
                pq_rows += u64::try_from(m.metadata().file_metadata().num_rows()).unwrap_or(0);
                pq_bytes += size(input);
            }
            None => other += size(input).saturating_sub(input.from.offset),
        }
    }
    progress.begin(pq_rows, pq_bytes, other);
    let ends: Vec<EndCell> = inputs.iter().map(|_| EndCell::default()).collect();
    let mut file_rows: Vec<u64> = metas
        .iter()
        .map(|m| m.as_ref().map_or(0, |m| u64::try_from(m.metadata().file_metadata().num_rows()).unwrap_or(0)))
        .collect();
    let mut i = 0;
    while i < inputs.len() {
        if inputs[i].kind == SourceKind::Parquet {
            // A run of Parquet inputs: their row groups in one parallel pass.
            let mut units: Vec<(usize, usize)> = Vec::new();
            while i < inputs.len() && inputs[i].kind == SourceKind::Parquet {
                let meta = metas[i].as_ref().expect("parquet metadata");
                let all = 0..meta.metadata().num_row_groups();
                let groups = inputs[i].row_groups.clone().unwrap_or(all.clone());
                if groups.end > all.end {
                    let why =
                        format!("row groups {}..{} asked for, the file has {}", groups.start, groups.end, all.end);
                    return Err(read_err(&inputs[i], why));
                }
                units.extend(groups.map(|rg| (i, rg)));
                i += 1;
            }
            let run = |i: usize, rg: usize| {
                let meta = metas[i].as_ref().expect("parquet metadata");
                parquet_unit(builder, make, &inputs[i], meta, rg, (&columns, &binary, &functions), opts, progress)
            };
            ordered_units(&units, opts.threads.max(1), progress, run, |u, a| consume(units[u].0, a))?;
            continue;
        }
        let input = &inputs[i];
        if input.kind == SourceKind::Csv {
            let spill = opts.spill.as_deref();
            if let Some(kept) = spill.and_then(|s| s.kept_for(input, &columns)) {
                // The columns the first pass parsed, not the text again.
                let f = std::fs::File::open(&kept).map_err(|e| read_err(input, e))?;
                let r = arrow::ipc::reader::StreamReader::try_new(std::io::BufReader::with_capacity(1 << 20, f), None)
                    .map_err(|e| arrow_err(input, "the kept columns: ", &e))?;
                file_rows[i] =
                    sequential_input(builder, make, input, Box::new(r), opts, progress, &mut |a| consume(i, a))?;
                i += 1;
                continue;
            }
            let schema = match schemas.get(i).cloned().flatten() {
                Some(s) => s,
                None => source::schema_of(input, &csv)?,
            };
            let read = spill.map_or_else(|| columns.clone(), |s| s.columns(&columns, &schema));
            let blocks = source::csv::blocks(
                &input.path,
                &csv,
                &schema,
                &read,
                csv::BLOCK_RECORDS,
                input.from,
                Some(Arc::clone(&progress.bytes)),
            )
            .map_err(|message| SourceError::Format { path: input.display(), kind: "CSV", message })?;
            let keep = spill.and_then(|s| s.writer(i, input, &blocks.projection.schema()).map(|w| (s, w)));
            file_rows[i] =
                csv::csv_input(builder, make, input, blocks, opts, progress, &ends[i], keep, &mut |a| consume(i, a))?;
            i += 1;
            continue;
        }
        let batches = if input.is_stdin() {
            stdin_stream.take().ok_or_else(|| read_err(input, "stdin can be read only once"))?
        } else {
            let read = SequentialRead {
                csv: &csv,
                columns: &columns,
                batch_size: opts.batch_size,
                from: input.from,
                end: Some(ends[i].clone()),
                bytes: Some(Arc::clone(&progress.bytes)),
            };
            source::sequential_batches(input, schemas.get(i).cloned().flatten(), &read)?
        };
        file_rows[i] = sequential_input(builder, make, input, batches, opts, progress, &mut |a| consume(i, a))?;
        i += 1;
    }
    Ok(ends
        .iter()
        .zip(file_rows)
        .map(|(end, file_rows)| InputRead { end: end.lock().ok().and_then(|e| *e), file_rows })
        .collect())
}

/// Accumulate all inputs; returns the merged accumulator and per-input rows.
/// Each input's units are merged in order, then the inputs in order: the
/// same bits for any thread count.
pub fn accumulate<A: EmptySink>(
    opened: OpenedInputs,
    builder: &DesignBuilder,
    opts: &EngineOptions,
    progress: &Progress,
) -> Result<(A, Vec<InputInfo>), EngineError> {
    accumulate_with(opened, builder, &|| A::empty(builder), opts, progress)
}

/// [`accumulate`] into sinks whose empty value `empty` makes (a sink that
/// carries what the builder does not know: an absorbed fit's factors, its
/// slopes in a second pass).
pub fn accumulate_with<A: ChunkSink>(
    opened: OpenedInputs,
    builder: &DesignBuilder,
    empty: &(dyn Fn() -> A + Sync),
    opts: &EngineOptions,
    progress: &Progress,
) -> Result<(A, Vec<InputInfo>), EngineError> {
    let displays: Vec<String> = opened.inputs.iter().map(Input::display).collect();
    let mut per_input: Vec<A> = displays.iter().map(|_| empty()).collect();
    let reads = stream(opened, builder, empty, opts, progress, &mut |i, a: A| per_input[i].merge(&a))?;
    let mut total = empty();
    let mut infos = Vec::with_capacity(per_input.len());
    for ((path, acc), read) in displays.into_iter().zip(&per_input).zip(reads) {
        total.merge(acc);
        let (rows_read, rows_dropped) = acc.rows();
        let groups = acc.rows_by_group();
        infos.push(InputInfo { path, rows_read, rows_dropped, end: read.end, file_rows: read.file_rows, groups });
    }
    Ok((total, infos))
}
