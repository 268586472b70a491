//! DOUBLE columns decoded from their Parquet pages — dictionary-encoded,
//! PLAIN, BYTE_STREAM_SPLIT, and a dictionary that overflows into PLAIN
//! pages part-way through a chunk — hold exactly what arrow-rs decodes:
//! every value's bits (NaN, −0.0 and infinities included) and every null,
//! across data page versions, codecs, page and row group sizes, batch cuts
//! and dictionary sizes (looked up by register permutation up to 16
//! values, by gather beyond); beside a column arrow-rs reads, batches are
//! cut as it cuts them, and with every column from its pages as arrow-rs
//! would.

use crate::common::tempdir;
use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use gramfit::elementary::Function;
use gramfit::source::{self, Input, SourceKind};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// Columns: (name, distinct values, share of nulls in 1/16ths). `plain`
/// has no dictionary (PLAIN pages), `split` is BYTE_STREAM_SPLIT, and
/// `overflow`'s dictionary outgrows its 512-byte limit (then PLAIN pages).
const COLUMNS: [(&str, u64, u64); 7] = [
    ("few", 5, 0),
    ("mid", 40, 2),
    ("many", 3000, 1),
    ("odd", 6, 3),
    ("plain", 1000, 0),
    ("split", 1000, 2),
    ("overflow", 3000, 1),
];

fn column(distinct: u64, nulls: u64, odd: bool, n: usize, seed: u64) -> ArrayRef {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let special = [f64::NAN, -0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY, 1e-310];
    // Runs of one value (RLE runs) beside random stretches (bit-packed).
    let (mut run, mut v) = (0u64, 0u64);
    let values: Vec<Option<f64>> = (0..n)
        .map(|_| {
            if run == 0 {
                run = if next() % 4 == 0 { 1 + next() % 100 } else { 1 };
                v = next() % distinct;
            }
            run -= 1;
            let x = if odd { special[v as usize % special.len()] } else { v as f64 * 0.013 - 7.0 };
            (next() % 16 >= nulls).then_some(x)
        })
        .collect();
    Arc::new(Float64Array::from(values))
}

#[allow(clippy::too_many_arguments)]
fn write(path: &Path, n: usize, seed: u64, v2: bool, codec: u8, page_rows: usize, group_rows: usize) {
    let mut fields: Vec<Field> =
        COLUMNS.iter().map(|(name, _, nulls)| Field::new(*name, DataType::Float64, *nulls > 0)).collect();
    let mut arrays: Vec<ArrayRef> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (name, distinct, nulls))| {
            column(*distinct, *nulls, *name == "odd", n, seed.wrapping_add(i as u64 * 0x9E37))
        })
        .collect();
    // An integer column arrow-rs reads (not 0/1, not asked for as bits).
    fields.push(Field::new("count", DataType::Int64, false));
    arrays.push(Arc::new(Int64Array::from_iter_values((0..n as i64).map(|r| r % 1000))));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let path_of = parquet::schema::types::ColumnPath::from;
    let props = crate::common::page_test_builder(v2, codec, page_rows, group_rows, &["plain", "split"])
        .set_column_encoding(path_of("split"), parquet::basic::Encoding::BYTE_STREAM_SPLIT)
        .set_column_dictionary_page_size_limit(path_of("overflow"), 512)
        .build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn same_bits(a: &ArrayRef, b: &ArrayRef) -> bool {
    let (a, b) =
        (a.as_any().downcast_ref::<Float64Array>().unwrap(), b.as_any().downcast_ref::<Float64Array>().unwrap());
    a.len() == b.len()
        && a.nulls() == b.nulls()
        && (0..a.len()).all(|r| a.is_null(r) || a.value(r).to_bits() == b.value(r).to_bits())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn floats_equal_arrow_rs_decoding(
        n in 1usize..6_000,
        seed in any::<u64>(),
        v2 in any::<bool>(),
        codec in 0u8..3,
        page_rows in 1usize..3_000,
        group_rows in 100usize..5_000,
        batch in 1usize..5_000,
    ) {
        let tmp = tempdir();
        let path = tmp.path().join("floats.parquet");
        write(&path, n, seed, v2, codec, page_rows, group_rows);
        let input = Input::new(path.clone(), SourceKind::Parquet);
        let meta = source::parquet_metadata(&input).unwrap();
        let floats: Vec<String> = COLUMNS.iter().map(|c| c.0.to_string()).collect();
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
        let mut cols = floats.clone();
        cols.push("count".into());
        for rg in 0..meta.metadata().num_row_groups() {
            // Every float column from its pages, beside an integer column
            // that arrow-rs reads and whose batches set the rows.
            let mut pages = source::parquet_row_group(&input, &meta, rg, &cols, &[], true, batch).unwrap();
            let plain = source::parquet_row_group(&input, &meta, rg, &cols, &[], false, batch).unwrap();
            prop_assert_eq!(&pages.page_decoded(), &names, "row group {}", rg);
            prop_assert!(plain.page_decoded().is_empty());
            let mut rows = 0;
            for (a, b) in (&mut pages).zip(plain) {
                let (a, b) = (a.unwrap(), b.unwrap());
                prop_assert_eq!(a.num_rows(), b.num_rows());
                rows += a.num_rows();
                for (i, c) in COLUMNS.iter().enumerate() {
                    prop_assert!(same_bits(a.column(i), b.column(i)), "row group {}, column {}", rg, c.0);
                }
            }
            prop_assert_eq!(rows as i64, meta.metadata().row_group(rg).num_rows());
            // No reader stepped aside on the way (every page decoded).
            prop_assert_eq!(&pages.page_decoded(), &names, "row group {} after reading", rg);
            // Every column from its pages: no arrow-rs reader, the batches
            // cut from the row group's count as arrow-rs cuts them.
            let all = source::parquet_row_group(&input, &meta, rg, &floats, &[], true, batch).unwrap();
            prop_assert_eq!(all.page_decoded().len(), COLUMNS.len());
            let plain = source::parquet_row_group(&input, &meta, rg, &floats, &[], false, batch).unwrap();
            let (mut got, mut want) = (0, 0);
            for (a, b) in all.zip(plain) {
                let (a, b) = (a.unwrap(), b.unwrap());
                prop_assert_eq!(a.num_rows(), b.num_rows());
                got += a.num_rows();
                for i in 0..COLUMNS.len() {
                    prop_assert!(same_bits(a.column(i), b.column(i)), "row group {}, column {} (all from pages)", rg, i);
                }
            }
            want += meta.metadata().row_group(rg).num_rows() as usize;
            prop_assert_eq!(got, want);
            // Functions read beside the columns (dictionary pages: of the
            // dictionary; PLAIN, BYTE_STREAM_SPLIT and the rows after an
            // overflow: of the values): `Function::map`'s of each value,
            // NaN at a null, as the design evaluates them.
            let functions: Vec<(String, Function)> = COLUMNS
                .iter()
                .zip(FUNCTIONS.iter().cycle().skip((seed % 7) as usize))
                .map(|(c, &f)| (c.0.to_string(), f))
                .collect();
            let mapped =
                source::parquet_row_group(&input, &meta, rg, &cols, &[], true, batch).unwrap().with_functions(&functions);
            let plain = source::parquet_row_group(&input, &meta, rg, &cols, &[], false, batch).unwrap();
            for (a, b) in mapped.zip(plain) {
                let (a, b) = (a.unwrap(), b.unwrap());
                prop_assert_eq!(a.num_columns(), cols.len() + functions.len());
                for (j, (c, f)) in functions.iter().enumerate() {
                    let got = a.column(cols.len() + j).as_any().downcast_ref::<Float64Array>().unwrap();
                    let schema = a.schema();
                    prop_assert_eq!(schema.field(cols.len() + j).name(), &f.column_name(c));
                    let raw = b.column_by_name(c).unwrap().as_any().downcast_ref::<Float64Array>().unwrap();
                    prop_assert_eq!(got.nulls(), raw.nulls(), "column {}", c);
                    for r in 0..raw.len() {
                        if raw.is_null(r) {
                            prop_assert!(got.value(r).is_nan(), "{:?} of {}: row {} null, value {}", f, c, r, got.value(r));
                        } else {
                            prop_assert_eq!(got.value(r).to_bits(), f.of(raw.value(r)).to_bits(), "{:?} of {}: row {}", f, c, r);
                        }
                    }
                }
            }
        }
    }
}

/// The functions a reader may read beside a column.
const FUNCTIONS: [Function; 7] =
    [Function::Ln, Function::Sqrt, Function::Exp, Function::Pow(1.5), Function::Ln1p, Function::Log10, Function::Log2];

/// A file of two non-null float columns, `x` and `y = row mod 17`, in one
/// row group.
fn write_xy(path: &Path, x: &[f64], props: WriterProperties) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
    ]));
    let y = Float64Array::from_iter_values((0..x.len()).map(|r| (r % 17) as f64));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Float64Array::from(x.to_vec())), Arc::new(y)]).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// A float page whose index points past its dictionary is an error naming
/// the file, row group and column, with a non-zero exit; no panic.
#[test]
fn a_corrupt_float_page_is_a_clear_error() {
    let tmp = tempdir();
    let path = tmp.path().join("corrupt-floats.parquet");
    // x cycles through 5 values: one bit-packed run of 3-bit indices,
    // whose last byte holds the last rows' indices.
    let x: Vec<f64> = (0..1000).map(|r| (r % 5) as f64).collect();
    write_xy(&path, &x, WriterProperties::builder().set_compression(Compression::UNCOMPRESSED).build());
    let input = Input::new(path.clone(), SourceKind::Parquet);
    let meta = source::parquet_metadata(&input).unwrap();
    let (start, len) = meta.metadata().row_group(0).column(0).byte_range();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(start + len - 1) as usize] = 0xff;
    std::fs::write(&path, &bytes).unwrap();
    crate::common::fails_with(
        &["fit", path.to_str().unwrap(), "-f", "y ~ x"],
        &["corrupt-floats.parquet", "row group 0", "column 'x'", "past a dictionary of 5 values"],
    );
}

/// Snappy pages are decompressed by gramfit's page reader (into a reused
/// buffer): a page whose stream does not decompress — its length header
/// made one byte longer than its data — is an error naming the file, row
/// group and column, as arrow-rs's decompression would refuse it; no
/// panic, no short page read as values.
#[test]
fn a_snappy_page_that_does_not_decompress_is_a_clear_error() {
    let tmp = tempdir();
    let path = tmp.path().join("bad-snappy.parquet");
    let x: Vec<f64> = (0..1000).map(|r| r as f64 * 0.37 + 0.001).collect();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_column_dictionary_enabled("x".into(), false)
        .build();
    write_xy(&path, &x, props);
    // x's one data page (v1, no levels) is its values, PLAIN, compressed
    // by the same Snappy encoder: found in the file by its bytes.
    let plain: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let stored = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(stored.len()).position(|w| w == &stored[..]).expect("x's page in the file");
    // The length varint 8000 = [0xc0, 0x3e]: 8001 promises a byte the
    // stream does not hold.
    assert_eq!(&bytes[at..at + 2], [0xc0, 0x3e]);
    bytes[at] = 0xc1;
    std::fs::write(&path, &bytes).unwrap();
    crate::common::fails_with(
        &["fit", path.to_str().unwrap(), "-f", "y ~ x"],
        &["bad-snappy.parquet", "row group 0", "column 'x'", "a Snappy page that does not decompress"],
    );
}

/// A zstd page (polars' default codec) that does not decompress is an
/// error naming the file, row group and column; no panic.
#[test]
fn a_zstd_page_that_does_not_decompress_is_a_clear_error() {
    use parquet::basic::ZstdLevel;
    let tmp = tempdir();
    let path = tmp.path().join("bad-zstd.parquet");
    let x: Vec<f64> = (0..1000).map(|r| r as f64 * 0.37 + 0.001).collect();
    let level = ZstdLevel::try_new(3).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_column_dictionary_enabled("x".into(), false)
        .build();
    write_xy(&path, &x, props);
    // x's one data page (v1, no levels) is its values, PLAIN, compressed
    // by the same zstd at the same level: found in the file by its bytes.
    let plain: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let stored = zstd::bulk::compress(&plain, 3).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(stored.len()).position(|w| w == &stored[..]).expect("x's page in the file");
    // Not a zstd frame's magic number any more.
    assert_eq!(&bytes[at..at + 4], [0x28, 0xb5, 0x2f, 0xfd]);
    bytes[at] = 0x29;
    std::fs::write(&path, &bytes).unwrap();
    crate::common::fails_with(
        &["fit", path.to_str().unwrap(), "-f", "y ~ x"],
        &[
            "bad-zstd.parquet",
            "row group 0",
            "column 'x'",
            "a zstd page that does not decompress: Unknown frame descriptor",
        ],
    );
}

/// A chunk whose rows are all null has a dictionary of no values and pages
/// of nulls only: read from its pages, as arrow-rs reads it (a regression:
/// the empty dictionary was taken for none, an error).
#[test]
fn an_all_null_chunk_with_an_empty_dictionary_reads_as_nulls() {
    let tmp = tempdir();
    let path = tmp.path().join("nulls.parquet");
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Float64Array::from(vec![None::<f64>; 5]))]).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let input = Input::new(path.clone(), SourceKind::Parquet);
    let meta = source::parquet_metadata(&input).unwrap();
    let cols = ["x".to_string()];
    let mut pages = source::parquet_row_group(&input, &meta, 0, &cols, &[], true, 1024).unwrap();
    assert_eq!(pages.page_decoded(), ["x"]);
    let got = pages.next().unwrap().unwrap();
    assert_eq!(got.column(0).null_count(), 5);
    assert_eq!(pages.page_decoded(), ["x"], "no step aside");
}

/// A function of a column read beside it (`np.log(y)` from the logarithms
/// of the dictionary) means what the design's own evaluation means: a
/// null `y` drops its row, a `y` of 0 is an error naming the row and the
/// cause — in dictionary pages, PLAIN pages and BYTE_STREAM_SPLIT pages,
/// the same fit and the same message as the reference path
/// (`GRAMFIT_NO_DIRECT=1`, every column decoded by arrow-rs and every
/// function evaluated row by row), on the in-place path (which reads the
/// nulls from the bitmap) and on the design blocks' (an interaction:
/// which finds them by a null slot's non-finite value).
#[test]
fn functions_read_beside_a_column_keep_missing_rows_and_errors() {
    let tmp = tempdir();
    let n = 3000;
    let schema = Arc::new(Schema::new(vec![
        Field::new("x", DataType::Float64, true),
        Field::new("z", DataType::Float64, true),
        Field::new("y", DataType::Float64, true),
    ]));
    let x: Float64Array = (0..n).map(|r| Some(1.0 + (r % 23) as f64 * 0.25)).collect();
    let z: Float64Array = (0..n).map(|r| Some(1.0 + (r * 7919 % 101) as f64 / 10.0)).collect();
    let write = |name: &str, y: &Float64Array, props: WriterProperties| {
        let path = tmp.path().join(name);
        let columns: Vec<ArrayRef> = vec![Arc::new(x.clone()), Arc::new(z.clone()), Arc::new(y.clone())];
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        path
    };
    let layouts = |name: &str, y: &Float64Array| {
        let small = || WriterProperties::builder().set_data_page_row_count_limit(500).set_write_batch_size(500);
        vec![
            write(&format!("dict-{name}.parquet"), y, small().build()),
            write(&format!("plain-{name}.parquet"), y, small().set_dictionary_enabled(false).build()),
            write(
                &format!("split-{name}.parquet"),
                y,
                small().set_dictionary_enabled(false).set_encoding(parquet::basic::Encoding::BYTE_STREAM_SPLIT).build(),
            ),
        ]
    };
    let run = |path: &Path, formula: &str, reference: bool| {
        let mut cmd = std::process::Command::new(crate::common::bin());
        cmd.args(["fit", path.to_str().unwrap(), "-f", formula, "--format", "json", "--threads", "2"]);
        if reference {
            cmd.env("GRAMFIT_NO_DIRECT", "1");
        }
        cmd.output().unwrap()
    };
    // Nulls every 97th row of `y`: dropped; the fit the reference path's
    // (first-pass figures to the bit, the second pass's to rounding,
    // every covariance type).
    let y: Float64Array = (0..n).map(|r| (r % 97 != 5).then_some(2.0 + (r % 31) as f64 * 0.5)).collect();
    for path in layouts("nulls", &y) {
        for formula in [
            "np.log(y) ~ np.sqrt(x) + np.log(z)",
            "np.sqrt(y) ~ np.log(x) + z",
            "np.sqrt(y) ~ np.log(x):z + x",
            "y ~ np.log(x) + I(z ** 1.5) + np.exp(x / 4)",
            // Sums, products and powers of a column with nulls: read in
            // place where they are doubles.
            "I(2 * y - 3) ~ I((2 * y - 4) ** 2) + np.abs(2 * y - 9) + x",
        ] {
            crate::engine::compare_direct_and_reference(&path, formula, &[]);
            let out = run(&path, formula, false);
            let fit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(fit["nobs"], (n - (0..n).filter(|r| r % 97 == 5).count()) as f64, "{}", path.display());
        }
    }
    // A zero at row 1,234: the logarithm is not finite there, an error.
    let y: Float64Array = (0..n).map(|r| Some(if r == 1234 { 0.0 } else { 2.0 + (r % 31) as f64 * 0.5 })).collect();
    for path in layouts("zero", &y) {
        let (direct, reference) = (run(&path, "np.log(y) ~ x", false), run(&path, "np.log(y) ~ x", true));
        assert_eq!(direct.status.code(), Some(1), "{}", path.display());
        let msg = String::from_utf8_lossy(&direct.stderr);
        assert!(msg.contains("'np.log(y)' is -inf at row group 0, row 1234"), "{msg}");
        assert!(msg.contains("a log or sqrt of a non-positive number"), "{msg}");
        assert_eq!(msg, String::from_utf8_lossy(&reference.stderr), "{}", path.display());
    }
}
