//! The decode floor for the benchmarks: read the same projected columns of a
//! Parquet file, one row group per task on a rayon pool (gramfit hands row
//! groups to its worker threads the same way), and do no arithmetic beyond
//! touching each batch.
//!
//! cargo run --release --example decode_only -- FILE.parquet COL,COL,... [THREADS] [BATCH_ROWS]

use gramfit::source::{self, Input, SourceKind};
use rayon::prelude::*;

fn main() {
    // The same allocator settings as the gramfit binary.
    gramfit::engine::tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    let input = Input::new(args[1].clone().into(), SourceKind::Parquet);
    let cols: Vec<String> = args[2].split(',').map(String::from).collect();
    let threads: usize = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(2);
    let batch: usize = args.get(4).and_then(|b| b.parse().ok()).unwrap_or(8192);
    let meta = source::parquet_metadata(&input).expect("metadata");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let t0 = std::time::Instant::now();
    let rows: usize = pool.install(|| {
        (0..meta.metadata().num_row_groups())
            .into_par_iter()
            .map(|rg| {
                let r = source::parquet_row_group(&input, &meta, rg, &cols, &[], false, batch).expect("reader");
                r.map(|b| b.expect("batch").num_rows()).sum::<usize>()
            })
            .sum()
    });
    eprintln!("decoded {rows} rows in {:.3} s on {threads} threads", t0.elapsed().as_secs_f64());
}
