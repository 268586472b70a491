//! BOOLEAN columns (pandas' `bool`, DuckDB's and polars' booleans) read
//! from their Parquet pages hold exactly what arrow-rs decodes — values and
//! nulls — across data page versions (PLAIN values in v1 pages, RLE in
//! v2), codecs, page and row group sizes and batch cuts; and fits of
//! yes/no columns, which patsy codes as categories, and of several factors
//! of few levels (read as indicator bits) equal the reference path's.

use crate::common::tempdir;
use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use gramfit::source::{self, Input, SourceKind};
use parquet::arrow::ArrowWriter;
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// Booleans with runs (RLE runs) beside random stretches (bit-packed);
/// `nulls`: one row in `nulls` null (0: none).
fn booleans(n: usize, seed: u64, nulls: u64) -> ArrayRef {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (mut run, mut v) = (0u64, false);
    let values: Vec<Option<bool>> = (0..n)
        .map(|_| {
            if run == 0 {
                run = if next() % 3 == 0 { 1 + next() % 300 } else { 1 };
                v = next() % 2 == 0;
            }
            run -= 1;
            (nulls == 0 || next() % nulls != 0).then_some(v)
        })
        .collect();
    Arc::new(BooleanArray::from(values))
}

/// Columns `b0` (no nulls), `b1` (a null in 5), `b2` (a null in 2) and a
/// float `x`.
fn write(path: &Path, n: usize, seed: u64, v2: bool, codec: u8, page_rows: usize, group_rows: usize) {
    let mut fields: Vec<Field> = (0..3).map(|i| Field::new(format!("b{i}"), DataType::Boolean, i > 0)).collect();
    fields.push(Field::new("x", DataType::Float64, false));
    let mut arrays: Vec<ArrayRef> =
        [0, 5, 2].iter().enumerate().map(|(i, &k)| booleans(n, seed + i as u64, k)).collect();
    arrays.push(Arc::new(Float64Array::from_iter_values((0..n).map(|r| r as f64 * 0.37))));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let props = crate::common::page_test_props(v2, codec, page_rows, group_rows, &[]);
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Equal arrays, ignoring the values of null slots.
fn same(a: &dyn Array, b: &dyn Array) -> bool {
    let (a, b) =
        (a.as_any().downcast_ref::<BooleanArray>().unwrap(), b.as_any().downcast_ref::<BooleanArray>().unwrap());
    a.len() == b.len()
        && a.null_count() == b.null_count()
        && (0..a.len()).all(|r| a.is_null(r) == b.is_null(r) && (a.is_null(r) || a.value(r) == b.value(r)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn booleans_equal_arrow_rs_decoding(
        n in 1usize..6_000,
        seed in any::<u64>(),
        v2 in any::<bool>(),
        codec in 0u8..3,
        page_rows in 1usize..3_000,
        group_rows in 100usize..5_000,
        batch in 1usize..5_000,
    ) {
        let tmp = tempdir();
        let path = tmp.path().join("booleans.parquet");
        write(&path, n, seed, v2, codec, page_rows, group_rows);
        let input = Input::new(path.clone(), SourceKind::Parquet);
        let meta = source::parquet_metadata(&input).unwrap();
        let cols: Vec<String> = ["b0", "b1", "b2", "x"].iter().map(|c| c.to_string()).collect();
        for rg in 0..meta.metadata().num_row_groups() {
            let pages = source::parquet_row_group(&input, &meta, rg, &cols, &[], true, batch).unwrap();
            let plain = source::parquet_row_group(&input, &meta, rg, &cols, &[], false, batch).unwrap();
            let decoded = pages.page_decoded();
            for b in ["b0", "b1", "b2"] {
                prop_assert!(decoded.contains(&b), "row group {}: {} left to arrow-rs ({:?})", rg, b, decoded);
            }
            let mut rows = 0;
            for (a, b) in pages.zip(plain) {
                let (a, b) = (a.unwrap(), b.unwrap());
                for c in 0..3 {
                    prop_assert!(same(a.column(c).as_ref(), b.column(c).as_ref()), "row group {}, b{}, rows from {}", rg, c, rows);
                }
                prop_assert_eq!(a.column(3), b.column(3));
                rows += a.num_rows();
            }
            prop_assert_eq!(rows as i64, meta.metadata().row_group(rg).num_rows());
        }
    }
}

/// A file of a response `y` in cents (with nulls), a float `x`, yes/no
/// columns `a`, `b` (with nulls) and `c` (true only in the last rows), and
/// strings `g` (5 levels), `h` (3) and `k` (30); pages of 3,000 rows in row groups of
/// 7,000.
fn yes_no_file(path: &Path, v2: bool) {
    let n = 20_000;
    let a = booleans(n, 11, 0);
    let b = booleans(n, 12, 6);
    let c: ArrayRef = Arc::new(BooleanArray::from_iter((0..n).map(|r| Some(r >= 19_000))));
    let bit = |x: &ArrayRef, r: usize| {
        let x = x.as_any().downcast_ref::<BooleanArray>().unwrap();
        f64::from(u8::from(x.is_valid(r) && x.value(r)))
    };
    let x: Vec<f64> = (0..n).map(|r| ((r * 7919) % 1000) as f64 / 7.0).collect();
    let y: Vec<Option<f64>> = (0..n)
        .map(|r| {
            let v = 2.0 + 0.5 * x[r] + 3.0 * bit(&a, r) - bit(&b, r)
                + (r % 5) as f64
                + ((r * 104_729) % 997) as f64 / 100.0;
            (r % 97 != 0).then_some((v * 100.0).round() / 100.0)
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("y", DataType::Float64, true),
        Field::new("x", DataType::Float64, false),
        Field::new("a", DataType::Boolean, false),
        Field::new("b", DataType::Boolean, true),
        Field::new("c", DataType::Boolean, false),
        Field::new("g", DataType::Utf8, false),
        Field::new("h", DataType::Utf8, false),
        Field::new("k", DataType::Utf8, false),
    ]));
    let g: Vec<String> = (0..n).map(|r| format!("g{}", (r * 31) % 5)).collect();
    let h: Vec<String> = (0..n).map(|r| format!("h{}", (r * 17 / 3) % 3)).collect();
    let k: Vec<String> = (0..n).map(|r| format!("k{}", (r * 13) % 30)).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Float64Array::from(y)),
            Arc::new(Float64Array::from(x)),
            a,
            b,
            c,
            Arc::new(StringArray::from(g)),
            Arc::new(StringArray::from(h)),
            Arc::new(StringArray::from(k)),
        ],
    )
    .unwrap();
    let props = crate::common::page_test_props(v2, 1, 3_000, 7_000, &[]);
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn fits_of_yes_no_columns_and_few_level_factors_equal_the_reference_path() {
    let tmp = tempdir();
    for v2 in [false, true] {
        let path = tmp.path().join(format!("yes-no-{v2}.parquet"));
        yes_no_file(&path, v2);
        for f in [
            // Yes/no columns as patsy codes them: a[T.True], ...
            "y ~ x + a + b",
            // One yes/no column (with nulls), and one beside a factor of
            // many levels (then coded).
            "y ~ x + b",
            "y ~ x + b + C(k)",
            // ... beside factors of few levels: all cells from indicator bits.
            "y ~ x + a + b + c + C(g) + C(h)",
            // Without an intercept the first factor keeps both levels.
            "y ~ 0 + a + b + x",
            // Two string factors, no yes/no column.
            "y ~ x + C(g) + C(h)",
            // A factor of few levels beside a response that is a transform.
            "np.log(y) ~ x + b + C(g)",
        ] {
            crate::engine::compare_direct_and_reference(&path, f, &["g", "h"]);
        }
    }
}
