//! Criterion benchmarks of the hot kernels: the raw-moment block kernel on
//! a 4096-row chunk of 15 columns (exact fast path on integer data, the
//! compensated loop on arbitrary floats, the double-double path on derived
//! columns), the in-place kernel on Arrow-like float and integer columns
//! with dropped rows masked out, and folding a block into the state.
//!
//! cargo bench --bench kernels

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gramfit::generate::Rng;
use gramfit::level::ColumnKey;
use gramfit::stats::kernel::{raw_moments, raw_moments_masked, ColumnRef, SourceColumn};
use gramfit::stats::SufficientStats;
use std::hint::black_box;

const ROWS: usize = 4096;
const COLS: usize = 15;

fn columns(kind: &str) -> Vec<Vec<f64>> {
    let mut rng = Rng::new(1);
    (0..COLS)
        .map(|_| {
            (0..ROWS)
                .map(|_| match kind {
                    "integer" => (rng.uniform() * 5000.0).round(),
                    _ => rng.normal() * 300.0 + 900.0,
                })
                .collect()
        })
        .collect()
}

fn bench_kernel(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw_moments_4096x15");
    g.throughput(Throughput::Elements(ROWS as u64));
    for kind in ["integer", "float"] {
        let cols = columns(kind);
        let refs: Vec<ColumnRef<'_>> = cols.iter().map(|c| ColumnRef::plain(c)).collect();
        g.bench_with_input(BenchmarkId::new("unweighted", kind), &refs, |b, refs| {
            b.iter(|| raw_moments(black_box(refs), None))
        });
    }
    let cols = columns("float");
    let lo: Vec<Vec<f64>> = cols.iter().map(|c| c.iter().map(|x| x * 1e-17).collect()).collect();
    let refs: Vec<ColumnRef<'_>> =
        cols.iter().zip(&lo).map(|(h, l)| ColumnRef { hi: h, lo: Some(l), integral: false }).collect();
    g.bench_function("double-double columns", |b| b.iter(|| raw_moments(black_box(&refs), None)));
    let w: Vec<f64> = (0..ROWS).map(|i| 0.5 + (i % 7) as f64).collect();
    let plain: Vec<ColumnRef<'_>> = cols.iter().map(|c| ColumnRef::plain(c)).collect();
    g.bench_function("weighted", |b| b.iter(|| raw_moments(black_box(&plain), Some(&w))));
    // The benchmark file's shape: 7 float columns (halves and whole
    // numbers), 8 integer 0/1 flags, 0.4% of rows dropped.
    let floats: Vec<Vec<f64>> =
        columns("integer").into_iter().take(7).map(|c| c.iter().map(|x| x * 0.5).collect()).collect();
    let mut rng = Rng::new(2);
    let flags: Vec<Vec<i64>> = (0..8).map(|_| (0..ROWS).map(|_| i64::from(rng.uniform() < 0.3)).collect()).collect();
    let mask: Vec<u8> = (0..ROWS / 8).map(|c| if c % 32 == 5 { 0xfe } else { 0xff }).collect();
    let cols: Vec<SourceColumn<'_>> =
        floats.iter().map(|c| SourceColumn::F64(c)).chain(flags.iter().map(|c| SourceColumn::I64(c))).collect();
    g.bench_function("in place, masked (7 float + 8 int)", |b| {
        b.iter(|| raw_moments_masked(black_box(&cols), ROWS, Some(&mask)))
    });
    g.finish();
}

fn bench_merge(c: &mut Criterion) {
    let cols = columns("integer");
    let refs: Vec<ColumnRef<'_>> = cols.iter().map(|c| ColumnRef::plain(c)).collect();
    let keys: Vec<ColumnKey> = (0..COLS).map(|i| ColumnKey::Cell { term: i as u32, levels: vec![] }).collect();
    let block = SufficientStats::from_block(&keys, &refs, None);
    let mut g = c.benchmark_group("state");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("from_block_4096x15", |b| b.iter(|| SufficientStats::from_block(black_box(&keys), &refs, None)));
    g.bench_function("merge_15_columns", |b| {
        let mut acc = block.clone();
        b.iter(|| acc.merge(black_box(&block)))
    });
    g.finish();
}

criterion_group!(benches, bench_kernel, bench_merge);
criterion_main!(benches);
