//! 0/1 integer columns read from their Parquet pages as bits hold exactly
//! what arrow-rs decodes — values and nulls — across data page versions,
//! codecs, page and row group sizes, batch cuts, dictionaries [0, 1],
//! [1, 0], [0] and [1]; columns that do not qualify stay with arrow-rs; and
//! fits over such files equal those of the reference path.

use crate::common::tempdir;
use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use gramfit::source::{self, Input, SourceKind};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{WriterProperties, WriterVersion};
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// Kinds of integer column: which qualify for bits, and how.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// 0/1, no nulls.
    Flags,
    /// 0/1 with nulls.
    NullableFlags,
    /// Only 1 (a dictionary of one value).
    Ones,
    /// Only 0, with nulls.
    ZerosAndNulls,
    /// 0, 1 and 2: arrow-rs reads it.
    Wider,
}

fn column(kind: Kind, n: usize, seed: u64) -> ArrayRef {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    // Runs of equal values (RLE runs) beside random stretches (bit-packed).
    let mut run = 0u64;
    let mut v = 0i64;
    let values: Vec<Option<i64>> = (0..n)
        .map(|_| {
            if run == 0 {
                run = if next() % 3 == 0 { 1 + next() % 200 } else { 1 };
                v = (next() % 2) as i64;
            }
            run -= 1;
            let null = next() % 7 == 0;
            match kind {
                Kind::Flags => Some(v),
                Kind::NullableFlags => (!null).then_some(v),
                Kind::Ones => Some(1),
                Kind::ZerosAndNulls => (!null).then_some(0),
                Kind::Wider => Some((next() % 3) as i64),
            }
        })
        .collect();
    Arc::new(Int64Array::from(values))
}

const KINDS: [Kind; 5] = [Kind::Flags, Kind::NullableFlags, Kind::Ones, Kind::ZerosAndNulls, Kind::Wider];

#[allow(clippy::too_many_arguments)]
fn write(path: &Path, n: usize, seed: u64, v2: bool, codec: u8, page_rows: usize, group_rows: usize) {
    let mut fields: Vec<Field> = KINDS
        .iter()
        .enumerate()
        .map(|(i, k)| Field::new(format!("i{i}"), DataType::Int64, *k != Kind::Flags))
        .collect();
    fields.push(Field::new("x", DataType::Float64, false));
    let mut arrays: Vec<ArrayRef> =
        KINDS.iter().enumerate().map(|(i, &k)| column(k, n, seed.wrapping_add(i as u64 * 0x9E37))).collect();
    arrays.push(Arc::new(Float64Array::from_iter_values((0..n).map(|r| r as f64 / 4.0))));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let props = crate::common::page_test_props(v2, codec, page_rows, group_rows, &[]);
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Read every row group both ways and compare; returns how many batch
/// columns of the kinds that always qualify came as bits, and how many
/// were left to arrow-rs because their row group holds no value in that
/// column (a chunk of nulls only has no dictionary to read).
fn compare_readers(path: &Path, batch: usize) -> (usize, usize) {
    let input = Input::new(path.into(), SourceKind::Parquet);
    let meta = source::parquet_metadata(&input).unwrap();
    let cols: Vec<String> = (0..KINDS.len()).map(|i| format!("i{i}")).chain(["x".to_string()]).collect();
    let (mut as_bits, mut all_null) = (0, 0);
    for rg in 0..meta.metadata().num_row_groups() {
        // Per column: left to arrow-rs in some batch; holds a value.
        let mut left = [false; KINDS.len()];
        let mut valued = [false; KINDS.len()];
        let bits = source::parquet_row_group(&input, &meta, rg, &cols, &cols, false, batch).unwrap();
        let plain = source::parquet_row_group(&input, &meta, rg, &cols, &[], false, batch).unwrap();
        let (mut rows_a, mut rows_b) = (0, 0);
        for (a, b) in bits.zip(plain) {
            let (a, b) = (a.unwrap(), b.unwrap());
            rows_a += a.num_rows();
            rows_b += b.num_rows();
            assert_eq!(a.num_columns(), b.num_columns());
            for (i, k) in KINDS.iter().enumerate() {
                let (x, y) = (a.column(i), b.column(i));
                assert_eq!(y.data_type(), &DataType::Int64);
                valued[i] |= y.null_count() < y.len();
                if x.data_type() == &DataType::Boolean {
                    // The column of 0, 1 and 2 only where this row group
                    // happens to hold no 2 (a row group of a few rows).
                    let y64 = y.as_any().downcast_ref::<Int64Array>().unwrap();
                    assert!(y64.iter().flatten().all(|v| v == 0 || v == 1), "values other than 0 and 1 read as bits");
                    as_bits += usize::from(*k != Kind::Wider);
                    let x = arrow::compute::cast(x, &DataType::Int64).unwrap();
                    assert_eq!(&x, y, "row group {rg}, column i{i} ({k:?})");
                } else {
                    // A 0/1 column is left to arrow-rs only where it holds
                    // no value at all (no dictionary to read).
                    assert!(*k == Kind::Wider || y.null_count() == y.len(), "a 0/1 column left to arrow-rs");
                    left[i] = true;
                    all_null += usize::from(*k != Kind::Wider);
                    assert_eq!(x, y);
                }
            }
            assert_eq!(a.column(KINDS.len()), b.column(KINDS.len()));
        }
        assert_eq!(rows_a, rows_b);
        assert_eq!(rows_a as i64, meta.metadata().row_group(rg).num_rows());
        for (i, k) in KINDS.iter().enumerate() {
            // Not a fallback part-way through a chunk that holds values.
            assert!(*k == Kind::Wider || !(left[i] && valued[i]), "row group {rg}: i{i} ({k:?}) left to arrow-rs");
        }
    }
    (as_bits, all_null)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn bits_equal_arrow_rs_decoding(
        n in 1usize..6_000,
        seed in any::<u64>(),
        v2 in any::<bool>(),
        codec in 0u8..3,
        page_rows in 1usize..3_000,
        group_rows in 100usize..5_000,
        batch in 1usize..5_000,
    ) {
        let tmp = tempdir();
        let path = tmp.path().join("flags.parquet");
        write(&path, n, seed, v2, codec, page_rows, group_rows);
        let (as_bits, all_null) = compare_readers(&path, batch);
        // Four of the five integer columns qualify in every batch of a row
        // group where they hold a value.
        let batches: usize = {
            let input = Input::new(path.clone(), SourceKind::Parquet);
            let meta = source::parquet_metadata(&input).unwrap();
            (0..meta.metadata().num_row_groups())
                .map(|rg| (meta.metadata().row_group(rg).num_rows() as usize).div_ceil(batch))
                .sum()
        };
        prop_assert_eq!(as_bits + all_null, 4 * batches);
    }
}

/// Fits over nullable flags read as bits (v1 and v2 pages) equal the
/// reference path's (every column decoded by arrow-rs, designs built row
/// by row), for every covariance type.
/// A file of a float response `y`, a float `x`, 0/1 columns `a`, `b`
/// (with nulls) and `c`, and a string `g` of 40 levels; dictionary pages
/// of 3,000 rows in row groups of 7,000.
fn flags_file(path: &Path, v2: bool) {
    let n = 20_000;
    let flags: Vec<ArrayRef> = [Kind::Flags, Kind::NullableFlags, Kind::Flags]
        .iter()
        .enumerate()
        .map(|(i, &k)| column(k, n, 77 + i as u64))
        .collect();
    let f = |a: &ArrayRef, r: usize| {
        let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
        if a.is_null(r) {
            0.0
        } else {
            a.value(r) as f64
        }
    };
    let x: Vec<f64> = (0..n).map(|r| ((r * 7919) % 1000) as f64 / 8.0).collect();
    let y: Vec<f64> = (0..n)
        .map(|r| 2.0 + 0.5 * x[r] + 3.0 * f(&flags[0], r) - f(&flags[1], r) + ((r * 104_729) % 997) as f64 / 100.0)
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("y", DataType::Float64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Int64, true),
        Field::new("c", DataType::Int64, false),
        Field::new("g", DataType::Utf8, false),
    ]));
    let g: Vec<String> = (0..n).map(|r| format!("g{}", (r * 31) % 40)).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Float64Array::from(y)),
            Arc::new(Float64Array::from(x)),
            flags[0].clone(),
            flags[1].clone(),
            flags[2].clone(),
            Arc::new(arrow::array::StringArray::from(g)),
        ],
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_writer_version(if v2 { WriterVersion::PARQUET_2_0 } else { WriterVersion::PARQUET_1_0 })
        .set_data_page_row_count_limit(3_000)
        .set_write_batch_size(1_000)
        .set_max_row_group_row_count(Some(7_000))
        .build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn fits_over_bits_equal_the_reference_path() {
    let tmp = tempdir();
    for v2 in [false, true] {
        let path = tmp.path().join(format!("fit-{v2}.parquet"));
        flags_file(&path, v2);
        assert!(compare_readers_named(&path, &["a", "b", "c"]) > 0, "no column read as bits");
        crate::engine::compare_direct_and_reference(&path, "y ~ x + a + b + c", &["g"]);
        // The response a 0/1 column (a linear probability model), and a flag
        // inside an expression (read by the general path from bits).
        crate::engine::compare_direct_and_reference(&path, "a ~ x + b", &["g"]);
        crate::engine::compare_direct_and_reference(&path, "y ~ x + I(2 * b) + c", &[]);
    }
}

/// `gramfit predict` reads a model's 0/1 columns as bits: the same output
/// bytes as the reference path (arrow-rs decoding every column), nulls
/// (`b`'s) predicted as null; a kept flag comes out as the integers it is
/// in the file, and a flag used as a factor or a group is read for its
/// levels.
#[test]
fn predictions_over_bits_equal_the_reference_path() {
    use crate::common::{bin, gramfit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let tmp = tempdir();
    let data = tmp.path().join("flags.parquet");
    flags_file(&data, true);
    assert!(compare_readers_named(&data, &["a", "b", "c"]) > 0, "no column read as bits");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let read = |p: &Path| -> RecordBatch {
        let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(p).unwrap()).unwrap().build().unwrap();
        let batches: Vec<RecordBatch> = r.map(|b| b.unwrap()).collect();
        arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
    };
    let input = read(&data);
    // (formula, grouped)
    for (formula, by) in [("y ~ x + a + b + c", None), ("y ~ x + a + C(c)", None), ("y ~ x + b + c", Some("a"))] {
        let st = tmp.path().join("s.gramfit");
        let mut fit = vec!["fit".to_string(), s(&data), "-f".into(), formula.into(), "-q".into()];
        match by {
            Some(g) => {
                fit.extend(["--by".into(), g.into(), "--save".into(), format!("{}/", s(&tmp.path().join("by")))])
            }
            None => fit.extend(["--save".into(), s(&st)]),
        }
        let out = gramfit(&fit);
        assert!(out.status.success(), "{formula}: {}", String::from_utf8_lossy(&out.stderr));
        let state = if by.is_some() { s(&tmp.path().join("by")) } else { s(&st) };
        let mut outputs = Vec::new();
        for reference in ["0", "1"] {
            let o = tmp.path().join(format!("p{reference}.parquet"));
            let out = std::process::Command::new(bin())
                .env("GRAMFIT_NO_DIRECT", reference)
                .args(["predict", &state, &s(&data), "-o", &s(&o), "--keep", "a,b", "--threads", "2", "-q"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{formula}: {}", String::from_utf8_lossy(&out.stderr));
            outputs.push(std::fs::read(&o).unwrap());
            let p = read(&o);
            for k in ["a", "b"] {
                assert_eq!(p.column_by_name(k).unwrap(), input.column_by_name(k).unwrap(), "{formula}: kept {k}");
            }
            let mean = p.column_by_name("mean").unwrap();
            let b = input.column_by_name("b").unwrap();
            assert!(b.null_count() > 0);
            for r in 0..p.num_rows() {
                assert_eq!(mean.is_null(r), b.is_null(r) && formula.contains('b'), "{formula}: row {r}");
            }
        }
        assert!(outputs[0] == outputs[1], "{formula}: bits and the reference path write the same bytes");
    }
}

/// How many batch columns among `names` come as bits.
fn compare_readers_named(path: &Path, names: &[&str]) -> usize {
    let input = Input::new(path.into(), SourceKind::Parquet);
    let meta = source::parquet_metadata(&input).unwrap();
    let cols: Vec<String> = names.iter().map(|s| s.to_string()).chain(["y".to_string()]).collect();
    let mut n = 0;
    for rg in 0..meta.metadata().num_row_groups() {
        for b in source::parquet_row_group(&input, &meta, rg, &cols, &cols, false, 4096).unwrap() {
            n += b.unwrap().columns().iter().filter(|c| c.data_type() == &DataType::Boolean).count();
        }
    }
    n
}

/// A corrupt page of a column read as bits is an error naming the file,
/// the row group and the column, with exit code 1 — not a panic, not a
/// number.
#[test]
fn a_corrupt_bit_page_is_a_clear_error() {
    let tmp = tempdir();
    let path = tmp.path().join("corrupt-bits.parquet");
    let n = 1000;
    // 500 zeros then 500 ones: the flag's data page holds two repeated runs,
    // its last byte the value of the second (index 1).
    let b: Vec<i64> = (0..n).map(|r| i64::from(r >= 500)).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("y", DataType::Float64, false),
        Field::new("x", DataType::Float64, false),
        Field::new("b", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Float64Array::from_iter_values((0..n).map(|r| (r % 17) as f64))),
            Arc::new(Float64Array::from_iter_values((0..n).map(|r| (r % 5) as f64))),
            Arc::new(Int64Array::from(b)),
        ],
    )
    .unwrap();
    let props = WriterProperties::builder().set_compression(Compression::UNCOMPRESSED).build();
    let mut w = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let input = Input::new(path.clone(), SourceKind::Parquet);
    let meta = source::parquet_metadata(&input).unwrap();
    let chunk = meta.metadata().row_group(0).column(2);
    let (start, len) = chunk.byte_range();
    let last = (start + len - 1) as usize;
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[last], 1, "the second run's value ends the page");
    bytes[last] = 5;
    std::fs::write(&path, &bytes).unwrap();
    crate::common::fails_with(
        &["fit", path.to_str().unwrap(), "-f", "y ~ x + b"],
        &["corrupt-bits.parquet", "row group 0", "column 'b'", "dictionary index 5 past a dictionary of 2 values"],
    );
}

/// A case proptest found: the last row group holds one row, null in the
/// nullable columns; their chunks there have no dictionary page (nothing
/// to read as bits), every other chunk is read as bits to its end.
#[test]
fn a_row_group_of_one_null_row_is_left_to_arrow_rs() {
    let tmp = tempdir();
    let path = tmp.path().join("flags.parquet");
    write(&path, 4966, 2000138566528000193, false, 0, 1, 1655);
    let (as_bits, all_null) = compare_readers(&path, 1);
    assert_eq!((as_bits, all_null), (4 * 4966 - 1, 1));
}
