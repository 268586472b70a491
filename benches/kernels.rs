//! Criterion benchmarks of the hot kernels: the raw-moment block kernel on
//! a 4096-row chunk of 15 columns (exact fast path on integer data, the
//! compensated loop on arbitrary floats, the double-double path on derived
//! columns), the in-place kernel on Arrow-like float and integer columns
//! with dropped rows masked out (flags as integers or as bits), folding a
//! block into the state, and reading 0/1 Parquet columns as bits against
//! arrow-rs's decoding of them, and each kernel of an HC3 second pass
//! beside the first pass's on the same chunk.
//!
//! cargo bench --bench kernels

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gramfit::generate::Rng;
use gramfit::level::ColumnKey;
use gramfit::stats::columns::{ColumnRef, SourceColumn};
use gramfit::stats::kernel::{raw_moments, raw_moments_masked};
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
        cols.iter().zip(&lo).map(|(h, l)| ColumnRef { hi: h, lo: Some(l), integral: false, decimals: true }).collect();
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
    // The same flags as bits, as `source::parquet_row_group` hands them over.
    let bits: Vec<Vec<u8>> = flags
        .iter()
        .map(|f| (0..ROWS / 8).map(|c| (0..8).fold(0u8, |b, r| b | (f[8 * c + r] as u8) << r)).collect())
        .collect();
    let cols: Vec<SourceColumn<'_>> =
        floats.iter().map(|c| SourceColumn::F64(c)).chain(bits.iter().map(|c| SourceColumn::Bits(c))).collect();
    g.bench_function("in place, masked (7 float + 8 bits)", |b| {
        b.iter(|| raw_moments_masked(black_box(&cols), ROWS, Some(&mask)))
    });
    g.finish();
}

/// One row group of 1M rows × 8 flags (rates as the generator's) and a
/// float column, written by arrow-rs with its defaults (dictionary-encoded,
/// snappy), read whole: the flags as bits from the pages, and as arrow-rs
/// decodes `Int64` columns.
fn bench_flags(c: &mut Criterion) {
    use arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use gramfit::source::{self, Input, SourceKind};
    use std::sync::Arc;
    const N: usize = 1 << 20;
    let rates = [0.42, 0.13, 0.13, 0.23, 0.23, 0.16, 0.04, 0.15];
    let mut rng = Rng::new(3);
    let names: Vec<String> = (0..rates.len()).map(|i| format!("f{i}")).collect();
    let mut fields: Vec<Field> = names.iter().map(|n| Field::new(n, DataType::Int64, false)).collect();
    let mut arrays: Vec<ArrayRef> = rates
        .iter()
        .map(|&p| Arc::new(Int64Array::from_iter_values((0..N).map(|_| i64::from(rng.uniform() < p)))) as ArrayRef)
        .collect();
    // A float column last, read by arrow-rs in both cases (one column stays
    // with arrow-rs: its batches set the row counts).
    fields.push(Field::new("x", DataType::Float64, false));
    arrays.push(Arc::new(arrow::array::Float64Array::from_iter_values((0..N).map(|i| (i % 1000) as f64))));
    let columns: Vec<String> = names.iter().cloned().chain(["x".to_string()]).collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).expect("a batch");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("flags.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).expect("file"), schema, None)
        .expect("a writer");
    w.write(&batch).expect("written");
    w.close().expect("closed");
    let input = Input::new(path, SourceKind::Parquet);
    let meta = source::parquet_metadata(&input).expect("metadata");
    let mut g = c.benchmark_group("read_8_flags_1m_rows");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);
    for (label, binary) in [("arrow-rs Int64", &[][..]), ("bits from pages", &names[..])] {
        g.bench_function(label, |b| {
            b.iter(|| {
                let reader =
                    source::parquet_row_group(&input, &meta, 0, &columns, binary, false, 8192).expect("reader");
                reader.map(|b| b.expect("batch").num_rows()).sum::<usize>()
            })
        });
    }
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

/// One 8192-row chunk of the benchmark model's shape (6 float predictors,
/// 8 flags as bits, the response; 0.4% of rows dropped): the first pass's
/// in-place kernel against each kernel of an HC3 second pass, so that the
/// two passes' arithmetic can be compared piece by piece.
#[cfg(gramfit_x86)]
fn bench_second_pass(c: &mut Criterion) {
    use gramfit::stats::patterns;
    use gramfit::stats::x86::avx512 as simd;
    const N: usize = 8192;
    if gramfit::isa::Avx512::get().is_none() {
        eprintln!("second_pass_8192: skipped, the CPU has no AVX-512");
        return;
    }
    let mut rng = Rng::new(4);
    let floats: Vec<Vec<f64>> =
        (0..7).map(|_| (0..N).map(|_| (rng.uniform() * 5000.0).round() * 0.5).collect()).collect();
    let rates = [0.42, 0.13, 0.13, 0.23, 0.23, 0.16, 0.04, 0.15];
    let mask: Vec<u8> = (0..N / 8).map(|c| if c % 32 == 5 { 0xfe } else { 0xff }).collect();
    let bits: Vec<Vec<u8>> = rates
        .iter()
        .map(|&p| (0..N / 8).map(|c| (0..8).fold(0u8, |b, r| b | u8::from(rng.uniform() < p) << r) & mask[c]).collect())
        .collect();
    let first: Vec<SourceColumn<'_>> =
        floats.iter().map(|c| SourceColumn::F64(c)).chain(bits.iter().map(|c| SourceColumn::Bits(c))).collect();
    let xs: Vec<&[f64]> = floats[..6].iter().map(Vec::as_slice).collect();
    let y = &floats[6];
    let flags: Vec<&[u8]> = bits.iter().map(Vec::as_slice).collect();
    let (beta, gamma) = (vec![0.25; 6], vec![3.0; 8]);
    // (XᵀX)⁻¹ of 15 columns, kernel order: small enough for h < 1.
    let m = 15;
    let bk: Vec<f64> = (0..m * m).map(|i| if i / m == i % m { 1e-7 } else { 1e-9 }).collect();
    let table = patterns::leverage_table(&bk, 6, 8, true);
    let (mut full, mut kept, mut h, mut w) = (vec![0.0; N], vec![0.0; N], vec![0.0; N], vec![0.0; N]);
    let mut g = c.benchmark_group("second_pass_8192");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("first pass, in place (7 float + 8 bits)", |b| {
        b.iter(|| raw_moments_masked(black_box(&first), N, Some(&mask)))
    });
    // SAFETY (every call below): the CPU has AVX-512F and DQ (checked
    // above); every column holds N rows, every bit column N / 8 bytes.
    g.bench_function("row patterns", |b| {
        b.iter(|| gramfit::stats::x86::avx512::patterns::row_patterns(black_box(&flags), N))
    });
    let pats = gramfit::stats::x86::avx512::patterns::row_patterns(&flags, N);
    let terms = gramfit::stats::portable::rows::FlagTerms::new(&gamma);
    g.bench_function("residuals", |b| {
        b.iter(|| unsafe {
            simd::residuals_masked_avx512(
                y,
                None,
                &xs,
                &beta,
                Some((&pats, &terms)),
                1.0,
                N,
                Some(&mask),
                &mut full,
                &mut kept,
            )
        })
    });
    g.bench_function("residual sums", |b| b.iter(|| unsafe { simd::residual_sums_avx512(black_box(&kept)) }));
    g.bench_function("leverages", |b| {
        b.iter(|| unsafe {
            gramfit::stats::x86::avx512::patterns::leverage_by_patterns(
                &xs,
                &bk,
                m,
                &pats,
                table.as_slice(),
                N,
                Some(&mask),
                &mut h,
            )
        })
    });
    g.bench_function("HC3 weights", |b| b.iter(|| unsafe { simd::robust_weights_avx512(&full, &h, true, &mut w) }));
    let mut cc = vec![0.0; 36];
    g.bench_function("weighted gram (6 columns)", |b| {
        b.iter(|| unsafe { simd::gram_lower_cols_avx512(&xs, N, Some(&mask), Some(&w), &mut cc) })
    });
    let mut sums = vec![0.0; patterns::SPREAD * 256 * 8];
    g.bench_function("weighted pattern sums", |b| {
        b.iter(|| unsafe {
            gramfit::stats::x86::avx512::patterns::spread_pattern_sums(&xs, &pats, N, Some(&mask), Some(&w), &mut sums)
        })
    });
    g.bench_function("meat sums (pattern sums and weighted gram)", |b| {
        b.iter(|| unsafe {
            gramfit::stats::x86::avx512::patterns::meat_sums(&xs, &pats, N, Some(&mask), &w, &mut sums, &mut cc)
        })
    });
    // The same columns 64-byte aligned and 16 bytes past that (a plain
    // `Vec`'s alignment from malloc): vector loads split cache lines.
    let aligned: Vec<arrow::buffer::ScalarBuffer<f64>> = floats[..6]
        .iter()
        .map(|c| arrow::buffer::ScalarBuffer::from(arrow::buffer::Buffer::from_slice_ref(c)))
        .collect();
    let padded: Vec<arrow::buffer::ScalarBuffer<f64>> = floats[..6]
        .iter()
        .map(|c| {
            let mut v = vec![0.0, 0.0];
            v.extend_from_slice(c);
            arrow::buffer::ScalarBuffer::new(arrow::buffer::Buffer::from_slice_ref(&v), 2, N)
        })
        .collect();
    for (label, cols) in [("64-byte aligned", &aligned), ("16 bytes off", &padded)] {
        let xs: Vec<&[f64]> = cols.iter().map(|c| &c[..]).collect();
        assert!(xs.iter().all(|x| x.as_ptr() as usize % 64 == if label == "16 bytes off" { 16 } else { 0 }));
        g.bench_function(format!("meat sums, columns {label}"), |b| {
            b.iter(|| unsafe {
                gramfit::stats::x86::avx512::patterns::meat_sums(&xs, &pats, N, Some(&mask), &w, &mut sums, &mut cc)
            })
        });
        g.bench_function(format!("leverages, columns {label}"), |b| {
            b.iter(|| unsafe {
                gramfit::stats::x86::avx512::patterns::leverage_by_patterns(
                    &xs,
                    &bk,
                    m,
                    &pats,
                    table.as_slice(),
                    N,
                    Some(&mask),
                    &mut h,
                )
            })
        });
    }
    g.finish();
}

#[cfg(not(gramfit_x86))]
fn bench_second_pass(_c: &mut Criterion) {}

/// The formula functions over an 8,192-row chunk of rents in cents: the
/// vector loop of the CPU's level, against `f64::ln`/`exp` of the
/// platform's libm and the double-double logarithm they replaced.
fn bench_elementary(c: &mut Criterion) {
    use gramfit::elementary::Function;
    let mut rng = Rng::new(3);
    let xs: Vec<f64> = (0..8192).map(|_| (rng.uniform() * 800_000.0 + 50_000.0).round() / 100.0).collect();
    let mut out = vec![0.0; xs.len()];
    let mut g = c.benchmark_group("elementary_8192");
    g.throughput(Throughput::Elements(xs.len() as u64));
    for f in [Function::Ln, Function::Ln1p, Function::Log10, Function::Exp, Function::Sqrt, Function::Pow(0.3)] {
        let arg: Vec<f64> = if f == Function::Exp { xs.iter().map(|x| x / 1000.0).collect() } else { xs.clone() };
        g.bench_function(format!("{f:?}"), |b| b.iter(|| f.map(black_box(&arg), &mut out)));
    }
    g.bench_function("libm_ln", |b| {
        b.iter(|| {
            for (o, x) in out.iter_mut().zip(black_box(&xs)) {
                *o = x.ln();
            }
        })
    });
    g.bench_function("dd_ln", |b| {
        b.iter(|| {
            for (o, x) in out.iter_mut().zip(black_box(&xs)) {
                *o = gramfit::dd::Dd::from(*x).ln().hi;
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_kernel, bench_merge, bench_flags, bench_second_pass, bench_elementary);
criterion_main!(benches);
