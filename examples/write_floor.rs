//! The floor of writing predictions: arrow-rs writing Float64 columns to
//! Parquet from memory, timed alone, with the settings `gramfit predict`
//! uses for its computed columns (PLAIN, uncompressed, no dictionary).
//!
//! cargo run --release --example write_floor -- OUT ROWS COLS
//!     COLS synthetic columns of ROWS rows without nulls (row groups of
//!     256k rows, batches of 8192 rows).
//! cargo run --release --example write_floor -- OUT --from FILE [--sync]
//!     the columns of FILE (a `gramfit predict` output: the same values,
//!     nulls and row groups), read into memory first (not timed); with
//!     `--sync`, the file is synced to disk before the clock stops, as
//!     `gramfit predict` syncs its output before renaming it into place.

use arrow::array::{ArrayRef, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: write_floor OUT ROWS COLS | write_floor OUT --from FILE [--sync]".into());
    }
    let (schema, batches, row_group, sync) = if args[2] == "--from" {
        let (schema, batches, row_group) = read(&args[3])?;
        (schema, batches, row_group, args.get(4).is_some_and(|a| a == "--sync"))
    } else {
        let (schema, batches) = synthetic(args[2].parse()?, args[3].parse()?)?;
        (schema, batches, 1 << 18, false)
    };
    let t = Instant::now();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(row_group))
        .build();
    let file = std::fs::File::create(&args[1])?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file.try_clone()?, schema, Some(props))?;
    for b in &batches {
        w.write(b)?;
    }
    w.close()?;
    if sync {
        file.sync_all()?;
    }
    println!("{:.3}", t.elapsed().as_secs_f64());
    Ok(())
}

/// `cols` columns of `rows` rows, in batches of 8192 rows.
fn synthetic(rows: usize, cols: usize) -> Result<(SchemaRef, Vec<RecordBatch>), Box<dyn std::error::Error>> {
    let schema = Arc::new(Schema::new(
        (0..cols).map(|c| Field::new(format!("c{c}"), DataType::Float64, true)).collect::<Vec<_>>(),
    ));
    let mut batches = Vec::new();
    for start in (0..rows).step_by(8192) {
        let n = 8192.min(rows - start);
        let arrays: Vec<ArrayRef> = (0..cols)
            .map(|c| {
                Arc::new(Float64Array::from_iter_values(
                    (start..start + n).map(|r| 3000.0 + 1000.0 * ((r as f64) * 0.37 + c as f64).sin()),
                )) as ArrayRef
            })
            .collect();
        batches.push(RecordBatch::try_new(schema.clone(), arrays)?);
    }
    Ok((schema, batches))
}

/// The batches of a Parquet file (8192 rows each, as gramfit's chunks)
/// and its first row group's row count.
fn read(path: &str) -> Result<(SchemaRef, Vec<RecordBatch>, usize), Box<dyn std::error::Error>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?.with_batch_size(8192);
    let row_group = builder.metadata().row_groups().first().map_or(1 << 18, |g| g.num_rows() as usize);
    let schema = builder.schema().clone();
    let batches = builder.build()?.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches, row_group))
}
