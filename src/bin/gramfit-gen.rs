//! Generate synthetic StreetEasy-shaped listings (see `gramfit::generate`).
//!
//! gramfit-gen OUT.{csv,parquet,arrow,arrows} --rows N [--seed S] [--first K] [--row-group R]
//!     [--shape whole|real] [--float-pages dictionary|plain|byte-stream-split]

use clap::{Parser, ValueEnum};
use gramfit::generate::{FloatPages, Shape};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "gramfit-gen", about = "Deterministic synthetic rental listings (CSV, Parquet, Arrow IPC)")]
struct Args {
    /// Output file; the format follows the extension (.csv, .parquet, .arrow, .arrows).
    out: PathBuf,
    /// Number of listings.
    #[arg(long)]
    rows: u64,
    /// Seed of the stream.
    #[arg(long, default_value_t = 2016)]
    seed: u64,
    /// Index of the first listing (to write consecutive parts of one stream).
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Rows per Parquet row group.
    #[arg(long, default_value_t = 1_000_000)]
    row_group: usize,
    /// Whole: whole dollars, whole numbers and halves (every value a short
    /// binary fraction). Real: rent in cents, plus latitude, longitude (six
    /// decimals, 1% missing) and rent_per_sqft.
    #[arg(long, value_enum, default_value_t = ShapeArg::Whole)]
    shape: ShapeArg,
    /// How Parquet float columns are encoded: the writer's dictionary (with
    /// its fallback to PLAIN pages), PLAIN, or BYTE_STREAM_SPLIT.
    #[arg(long, value_enum, default_value_t = PagesArg::Dictionary)]
    float_pages: PagesArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum ShapeArg {
    Whole,
    Real,
}

#[derive(Clone, Copy, ValueEnum)]
enum PagesArg {
    Dictionary,
    Plain,
    ByteStreamSplit,
}

fn main() {
    let a = Args::parse();
    let shape = match a.shape {
        ShapeArg::Whole => Shape::Whole,
        ShapeArg::Real => Shape::Real,
    };
    let pages = match a.float_pages {
        PagesArg::Dictionary => FloatPages::Dictionary,
        PagesArg::Plain => FloatPages::Plain,
        PagesArg::ByteStreamSplit => FloatPages::ByteStreamSplit,
    };
    let ext = a.out.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase();
    let r = match ext.as_str() {
        "csv" => gramfit::generate::write_csv_of(&a.out, shape, a.seed, a.first, a.rows),
        "parquet" => gramfit::generate::write_parquet_with(&a.out, shape, pages, a.seed, a.first, a.rows, a.row_group),
        "arrow" | "ipc" => gramfit::generate::write_ipc_of(&a.out, shape, a.seed, a.first, a.rows, false),
        "arrows" => gramfit::generate::write_ipc_of(&a.out, shape, a.seed, a.first, a.rows, true),
        _ => {
            eprintln!("gramfit-gen: error: unknown output format '{ext}' (use .csv, .parquet, .arrow or .arrows)");
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("gramfit-gen: error: {}: {e}", a.out.display());
        std::process::exit(1);
    }
}
