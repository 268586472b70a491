//! The floor of writing predictions: arrow-rs writing `COLS` Float64
//! columns of `ROWS` rows to Parquet from memory, timed alone, with the
//! settings `gramfit predict` uses for its computed columns (PLAIN,
//! uncompressed, row groups of 256k rows, batches of 8192 rows).
//!
//! cargo run --release --example write_floor -- OUT ROWS COLS

use arrow::array::{ArrayRef, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: write_floor OUT ROWS COLS".into());
    }
    let (rows, cols): (usize, usize) = (args[2].parse()?, args[3].parse()?);
    let schema = Arc::new(Schema::new(
        (0..cols).map(|c| Field::new(format!("c{c}"), DataType::Float64, true)).collect::<Vec<_>>(),
    ));
    // The batches first (not timed), as the predictions would be.
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
    let t = Instant::now();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(1 << 18))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&args[1])?, schema, Some(props))?;
    for b in &batches {
        w.write(b)?;
    }
    w.close()?;
    println!("{:.3}", t.elapsed().as_secs_f64());
    Ok(())
}
