//! A CSV file in parallel: one thread reads (and decompresses) the text
//! and cuts it into blocks of whole records ([`csv::Splitter`]), each
//! block one work unit of [`CHUNKS_PER_UNIT`] chunks; the workers parse
//! their blocks ([`csv::BlockParser`]) and fold the chunks; the results
//! are merged in block order. The blocks fall on the same row grid as any
//! other sequential source's units, so the bits do not depend on the
//! thread count.
//!
//! Memory: one block waits in the channel and one more is being cut,
//! besides the blocks being parsed (one per thread) and at most `threads`
//! results waiting to be merged — a block holds the text of
//! [`BLOCK_RECORDS`] records (~3 MiB of listings).

use super::ordered::{merge_in_order, spawn_workers};
use super::spill::{encode, Spill, SpillWriter};
use super::{finish_unit, fold_chunks, read_err, EngineError, EngineOptions, Progress, CHUNKS_PER_UNIT, CHUNK_ROWS};
use crate::accumulator::ChunkSink;
use crate::design::DesignBuilder;
use crate::source::csv::{self, BlockParser, BlockSource, EndCell};
use crate::source::Input;
use std::sync::atomic::{AtomicU64, Ordering};

/// Records per block: one work unit.
pub const BLOCK_RECORDS: usize = CHUNK_ROWS * CHUNKS_PER_UNIT;

/// Parse and fold the blocks of `source` (a CSV input opened by
/// [`csv::blocks`] with [`BLOCK_RECORDS`] records per block), handing
/// each block's result to `consume` in order; where the read ended goes
/// to `end`. With `keep`, the parsed columns are also written to it, for
/// `spill`. Returns the records read.
#[allow(clippy::too_many_arguments)]
pub(super) fn csv_input<A: ChunkSink>(
    builder: &DesignBuilder,
    make: &(dyn Fn() -> A + Sync),
    input: &Input,
    source: BlockSource,
    opts: &EngineOptions,
    progress: &Progress,
    end: &EndCell,
    keep: Option<(&Spill, SpillWriter)>,
    consume: &mut dyn FnMut(A),
) -> Result<u64, EngineError> {
    let BlockSource { projection, mut splitter } = source;
    let (spill, mut writer) = match keep {
        Some((s, w)) => (Some(s), Some(w)),
        None => (None, None),
    };
    let encoding = writer.is_some();
    let mut kept_ok = true;
    let projection = &projection;
    let records = AtomicU64::new(0);
    let records_ref = &records;
    let threads = opts.threads.max(1);
    // One block waiting is enough to keep the workers busy: cutting is
    // cheaper than parsing.
    let (work_tx, work_rx) = crossbeam_channel::bounded::<(usize, csv::Block)>(1);
    // Bounded: when the kept columns are written more slowly than blocks
    // are parsed (a disk throttling writes), the workers wait rather than
    // the results piling up.
    let (res_tx, res_rx) = crossbeam_channel::bounded::<(usize, Result<(A, Vec<u8>), EngineError>)>(threads);
    let run = move |block| block_unit(builder, make, input, projection, block, encoding, progress);
    let what = move |block: &csv::Block| format!("{}, the block from line {}", input.display(), block.first_line);
    std::thread::scope(|s| {
        let reader_res_tx = res_tx.clone();
        s.spawn(move || {
            for seq in 0.. {
                if progress.stopped() {
                    let _ = reader_res_tx.send((usize::MAX, Err(EngineError::Interrupted)));
                    return;
                }
                match splitter.next_block() {
                    Ok(Some(block)) => {
                        records_ref.fetch_add(block.records as u64, Ordering::Relaxed);
                        if work_tx.send((seq, block)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = reader_res_tx.send((usize::MAX, Err(read_err(input, e))));
                        return;
                    }
                }
            }
            if let Ok(mut e) = end.lock() {
                *e = splitter.end();
            }
        });
        spawn_workers(s, threads, &work_rx, &res_tx, &run, &what);
        drop(res_tx);
        drop(work_rx);
        merge_in_order(res_rx, progress, |(a, messages)| {
            if let Some(w) = writer.as_mut().filter(|_| kept_ok) {
                if let Err(e) = w.append(&messages) {
                    kept_ok = false;
                    spill.expect("a spill with its writer").fail(input, &e);
                }
            }
            consume(a)
        })
    })
    .map(|()| {
        let records = records.load(Ordering::Relaxed);
        if let (Some(s), Some(w)) = (spill, writer.take()) {
            s.finish(input, w, records, kept_ok);
        }
        records
    })
}

/// One block → accumulator, chunk by chunk as it is parsed (memory: the
/// block's text and one chunk).
/// With `encoding`, the chunks also come back as IPC messages.
fn block_unit<A: ChunkSink>(
    builder: &DesignBuilder,
    make: &(dyn Fn() -> A + Sync),
    input: &Input,
    projection: &csv::Projection,
    block: csv::Block,
    encoding: bool,
    progress: &Progress,
) -> Result<(A, Vec<u8>), EngineError> {
    let mut messages = Vec::new();
    let mut parser = BlockParser::new(block, projection.delimiter());
    // Rows are counted from where this read started.
    let base = parser.first_record() - input.from.records_before;
    let mut acc = make();
    let mut row = base;
    while let Some(chunk) = parser.next_batch(projection, CHUNK_ROWS).map_err(|m| read_err(input, m))? {
        let n = chunk.num_rows() as u64;
        if encoding {
            encode(&chunk, &mut messages).map_err(|e| read_err(input, e))?;
        }
        let parser = &parser;
        let locate = move |r: u64| format!("line {}", parser.line_of((r - base) as usize));
        fold_chunks(builder, &mut acc, &[chunk], row, input, &locate, progress)?;
        row += n;
    }
    finish_unit(&mut acc, progress);
    Ok((acc, messages))
}
