//! Real values (prices in cents, coordinates, ratios) on the exact path,
//! split into slices of short binary fractions (`stats::slices`): every
//! split is exact, the sums land within the double-double unit of the exact
//! sums (checked against big-integer arithmetic), the in-place kernels and
//! the general path give the same bits, and so do fits read in place and by
//! the reference path.

use crate::common::tempdir;
use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use gramfit::dd::Dd;
use gramfit::stats::columns::{ColumnRef, DirectColumn, RawMoments, SourceColumn};
use gramfit::stats::dyadic::DyadicProfile;
use gramfit::stats::kernel::{raw_moments, raw_moments_compensated, raw_moments_masked_columns};
use gramfit::stats::portable::scans::{split_masked, Split};
use gramfit::stats::reals::{places_of, too_long};
use gramfit::stats::slices::{SlicePlan, MAX_SLICES};
use num_bigint::BigInt;
use proptest::prelude::*;
use std::sync::Arc;

/// Every finite `f64` is an integer times `2^-1074`; products of two, times
/// `2^-2148`: `x · 2^shift` as an integer.
fn scaled(x: f64, shift: i32) -> BigInt {
    if x == 0.0 {
        return BigInt::from(0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (m, e) = if exp == 0 { (frac, -1074) } else { (frac | 1 << 52, exp - 1075) };
    let v = BigInt::from(m) << usize::try_from(e + shift).expect("a shift past the smallest exponent");
    if bits >> 63 == 1 {
        -v
    } else {
        v
    }
}

const SHIFT: i32 = 1100;

/// `Σ a_r b_r` exactly, times `2^(2·SHIFT)`, and `Σ |a_r b_r|` likewise.
fn exact_dot(a: &[f64], b: &[f64]) -> (BigInt, BigInt) {
    let (mut s, mut abs) = (BigInt::from(0), BigInt::from(0));
    for (&x, &y) in a.iter().zip(b) {
        let p = scaled(x, SHIFT) * scaled(y, SHIFT);
        abs += BigInt::from(p.magnitude().clone());
        s += p;
    }
    (s, abs)
}

/// A column's values as exact rationals: numerators times `2^SHIFT`, over
/// `10^places`.
struct Reading {
    nums: Vec<BigInt>,
    places: u32,
}

/// The ways a column can be read: its doubles, and — when every value is
/// a short decimal (`stats::reals::places_of`) — the decimals `k·10⁻ᵈ`
/// with `d` the largest places.
fn readings(col: &[f64]) -> Vec<Reading> {
    let mut out = vec![Reading { nums: col.iter().map(|&x| scaled(x, SHIFT)).collect(), places: 0 }];
    let places: Option<Vec<u32>> = col.iter().map(|&x| places_of(x)).collect();
    if let Some(d) = places.and_then(|p| p.into_iter().max()) {
        let nums =
            col.iter().map(|&x| BigInt::from((x * 10f64.powi(d as i32)).round() as i64) << SHIFT as usize).collect();
        out.push(Reading { nums, places: d });
    }
    out
}

/// Whether `d` is within `2^-bits · abs` of `Σ a_r b_r` (`abs` times
/// `2^(2·SHIFT)`).
fn within_reading(d: Dd, a: &Reading, b: &Reading, abs: &BigInt, bits: usize) -> bool {
    let exact = a.nums.iter().zip(&b.nums).fold(BigInt::from(0), |s, (x, y)| s + x * y);
    let tens = BigInt::from(10).pow(a.places + b.places);
    let got = (scaled(d.hi, 2 * SHIFT) + scaled(d.lo, 2 * SHIFT)) * &tens;
    let err = BigInt::from((got - exact).magnitude().clone());
    (err << bits) <= abs * tens
}

/// Checks every sum of `raw` (over `cols`) against the exact sums of the
/// values, or of their decimals where a column is read as decimals
/// (`stats::reals`): within `2^-bits` of `Σ|z_i z_j|`.
fn assert_near_exact(raw: &RawMoments, cols: &[Vec<f64>], bits: usize) {
    let m = cols.len();
    let ones = vec![1.0; cols[0].len()];
    let one = readings(&ones).swap_remove(0);
    let read: Vec<Vec<Reading>> = cols.iter().map(|c| readings(c)).collect();
    let near = |d: Dd, i: usize, j: Option<usize>| {
        let b_col = j.map_or(&ones, |j| &cols[j]);
        let abs = exact_dot(&cols[i], b_col).1;
        let bs: Vec<&Reading> = j.map_or(vec![&one], |j| read[j].iter().collect());
        read[i].iter().any(|a| bs.iter().any(|b| within_reading(d, a, b, &abs, bits)))
    };
    for i in 0..m {
        assert!(near(raw.s1[i], i, None), "Σ z_{i}: {:?}", raw.s1[i]);
        for j in 0..m {
            assert!(near(raw.s2[i * m + j], i, Some(j)), "Σ z_{i} z_{j}: {:?}", raw.s2[i * m + j]);
        }
    }
}

/// Real-valued columns of several kinds, `n` rows: prices in cents,
/// coordinates with six decimals, a ratio, a log, values spanning many
/// binades, negatives (kinds 0–5); whole numbers and halves (6, 7); and
/// whole numbers and halves too long for the exact kernels as they are
/// over thousands of rows (`stats::reals::too_long`: timestamps, ids,
/// squares of areas, halves in the millions; 8–11; whole numbers past
/// 2⁵², 12); binary fractions finer than halves (quarters, steps of 2⁻⁸
/// and of 2⁻¹⁶; 13–15).
fn real_columns(n: usize, seed: u64, kinds: &[u8]) -> Vec<Vec<f64>> {
    let mut rng = gramfit::generate::Rng::new(seed);
    kinds
        .iter()
        .map(|&kind| {
            (0..n)
                .map(|r| {
                    // A real kind's first value is no binary fraction, so
                    // that a short column is real whatever its draws (a
                    // ratio of kind 3 is 1/2 or 3/4 for one draw in four).
                    if r == 0 {
                        match kind {
                            0 => return 1500.01,
                            1 => return 40.500001,
                            2 => return -74.200001,
                            3 => return 1.0 / 3.0,
                            4 => return 2f64.ln(),
                            _ => {}
                        }
                    }
                    let u = rng.uniform();
                    match kind {
                        0 => (150_000.0 + u * 2_000_000.0).round() / 100.0,
                        1 => ((40.5 + u * 0.4) * 1e6).round() / 1e6,
                        2 => ((-74.2 + u * 0.5) * 1e6).round() / 1e6,
                        3 => (1.0 + (u * 4.0).floor()) / (1.0 + (u * 97.0).floor() % 5.0),
                        4 => (1.0 + u * 1e4).ln(),
                        5 => (u - 0.5) * 10f64.powi((u * 1e6) as i32 % 12 - 6),
                        6 => (u * 1000.0).round() - 500.0,
                        7 => (u * 8.0).round() / 2.0,
                        8 => 1_700_000_000.0 + (u * 3e7).round(),
                        9 => 3_000_000.0 + (u * 1e5).round(),
                        10 => (u * 1e4).round().powi(2),
                        11 => (1e7 + (u * 2e6).round()) / 2.0,
                        12 => 5e15 + (u * 1e6).round(),
                        13 => (u * 40.0).round() / 4.0 - 3.0,
                        14 => (u * 1000.0).round() / 256.0,
                        _ => (u * 30000.0).round() / 65536.0,
                    }
                })
                .collect()
        })
        .collect()
}

#[test]
fn splits_are_exact_and_decline_what_they_cannot_hold() {
    let n = 1000;
    let stride = 1000usize.div_ceil(8) * 8;
    for kinds in [[0u8], [1], [2], [3], [4], [5]] {
        let col = &real_columns(n, 7 + u64::from(kinds[0]), &kinds)[0];
        let max_abs = col.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let plan = SlicePlan::new(max_abs, n).unwrap();
        let mut out = vec![f64::NAN; MAX_SLICES * stride];
        let mut sums = [0.0; MAX_SLICES];
        let Split::Slices(count) = split_masked(col, None, &plan, &mut out, stride, &mut sums) else {
            // Only values spanning twelve decimal orders may need more.
            assert_eq!(kinds[0], 5, "kind {kinds:?} declined");
            continue;
        };
        assert!((2..=MAX_SLICES).contains(&count), "kind {kinds:?}: {count} slices");
        for (r, &x) in col.iter().enumerate() {
            let parts: Vec<f64> = (0..count).map(|k| out[k * stride + r]).collect();
            // Exact: the slices' big-integer sum is the value.
            let total = parts.iter().fold(BigInt::from(0), |a, &t| a + scaled(t, SHIFT));
            assert_eq!(total, scaled(x, SHIFT), "kind {kinds:?}, row {r}: {x} as {parts:?}");
            for (k, &t) in parts.iter().enumerate() {
                let p = plan.profile(k);
                assert!(t.abs() <= p.max_abs, "slice {k} of {x}: {t} past {}", p.max_abs);
                assert_eq!((t * 2f64.powi(p.q)).fract(), 0.0, "slice {k} of {x}: {t} not a multiple of 2^{}", -p.q);
            }
        }
        for k in 0..count {
            let sum: f64 = (0..n).map(|r| out[k * stride + r]).sum();
            assert_eq!(sums[k], sum, "slice {k}'s sum");
        }
        // Rows past n are zero.
        assert!((0..count).all(|k| out[k * stride + n..(k + 1) * stride].iter().all(|&t| t == 0.0)));
    }
    // NaN, ±∞ and a span of more binades than five slices hold: declined;
    // binary fractions (multiples of 2^-16) are left to the exact path.
    let plan = SlicePlan::new(1000.0, 4).unwrap();
    let mut out = vec![0.0; MAX_SLICES * 8];
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e-30] {
        let col = [999.5, 0.1, bad, -3.25];
        assert_eq!(split_masked(&col, None, &plan, &mut out, 8, &mut [0.0; MAX_SLICES]), Split::Declined, "{bad}");
    }
    let sixteenths = [999.5, 0.0625, 1.0 / 65536.0, -3.25];
    assert_eq!(split_masked(&sixteenths, None, &plan, &mut out, 8, &mut [0.0; MAX_SLICES]), Split::Dyadic);
    // Dropped rows are zero slices, whatever they hold.
    let col = [0.1, f64::NAN, 0.3, f64::INFINITY];
    let mask = [0b0101u8];
    let split = split_masked(&col, Some(&mask), &SlicePlan::new(0.3, 2).unwrap(), &mut out, 8, &mut [0.0; MAX_SLICES]);
    let Split::Slices(count) = split else { panic!("{split:?}") };
    assert!((0..count).all(|k| out[k * 8 + 1] == 0.0 && out[k * 8 + 3] == 0.0));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The general path's sums of blocks with real values are within
    /// 2⁻¹⁰⁰ of the exact sums (relative to Σ|z_i z_j|) — of the values,
    /// or of their decimals for a column read as decimals — sliced or not
    /// (a block past the slices' bounds keeps the compensated loop, whose
    /// double-double result is as close on such data); blocks of binary
    /// fractions only stay exact, unless one is too long for the exact
    /// kernels as it is (then it is read as a real column is).
    #[test]
    fn sums_of_real_values_are_within_the_double_double_unit(
        n in 1usize..8192,
        kinds in prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]), 1..6),
        seed in any::<u64>(),
    ) {
        let cols = real_columns(n, seed, &kinds);
        let refs: Vec<ColumnRef<'_>> = cols.iter().map(|c| ColumnRef::plain(c)).collect();
        let fast = raw_moments(&refs, None);
        assert_near_exact(&fast, &cols, 100);
        let too_long = |c: &Vec<f64>| {
            let q = if c.iter().all(|x| x.fract() == 0.0) { 0 } else { 1 };
            let max_abs = c.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            too_long(&DyadicProfile { q, max_abs }, n)
        };
        let exact = kinds.iter().all(|&k| k >= 6) && !cols.iter().any(too_long);
        prop_assert_eq!(fast.exact, exact, "exact exactly when no column is real or too long");
        if fast.exact {
            let slow = raw_moments_compensated(&refs, None);
            prop_assert_eq!(fast.s2, slow.s2);
        }
    }

    /// The in-place kernels (dropped rows masked out, whatever they hold;
    /// 0/1 and integer columns beside; a factor's cells) give the very bits
    /// of the general path over the kept rows when a column holds real
    /// values, and the non-zero counts of the columns themselves.
    #[test]
    fn in_place_and_general_paths_agree_bit_for_bit_on_real_values(
        n in 1usize..8192,
        kinds in prop::collection::vec(prop::sample::select(vec![0u8, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15]), 1..4),
        long_ints in any::<bool>(),
        levels in prop::sample::select(vec![0usize, 3, 40]),
        drop_every in prop::sample::select(vec![0usize, 2, 7, 1000]),
        yes_no in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let reals = real_columns(n, seed, &kinds);
        let mut rng = gramfit::generate::Rng::new(seed ^ 0x5eed);
        let kept: Vec<bool> = (0..n).map(|r| drop_every == 0 || r % drop_every != 1).collect();
        let flag: Vec<i64> = (0..n).map(|r| if kept[r] { i64::from(rng.uniform() < 0.3) } else { 9 }).collect();
        let ints: Vec<i64> = (0..n).map(|_| (rng.uniform() * 3000.0) as i64).collect();
        // Integers too long for the exact kernels as they are (timestamps).
        let stamps: Vec<i64> = (0..n).map(|_| 1_700_000_000 + (rng.uniform() * 3e7) as i64).collect();
        let codes: Vec<u32> = (0..n).map(|r| if kept[r] { (rng.uniform() * levels as f64) as u32 } else { u32::MAX }).collect();
        let dirty: Vec<Vec<f64>> = reals
            .iter()
            .map(|c| c.iter().zip(&kept).map(|(&x, &k)| if k { x } else { f64::NAN }).collect())
            .collect();
        let mask: Vec<u8> = kept.chunks(8).map(|c| c.iter().enumerate().fold(0u8, |m, (b, &k)| m | u8::from(k) << b)).collect();
        let mut cols: Vec<DirectColumn<'_>> = dirty.iter().map(|c| DirectColumn::Source(SourceColumn::F64(c))).collect();
        cols.insert(cols.len().min(1), DirectColumn::Source(SourceColumn::I64(&flag)));
        cols.push(DirectColumn::Source(SourceColumn::I64(&ints)));
        if long_ints {
            cols.insert(0, DirectColumn::Source(SourceColumn::I64(&stamps)));
        }
        if levels > 0 {
            cols.insert(1, DirectColumn::Factor { codes: &codes, levels });
        }
        // A yes/no factor as its bits (any value on dropped rows): beside
        // few levels read as indicators, beside many as codes.
        let yes: Vec<u8> = (0..n.div_ceil(8)).map(|_| (rng.uniform() * 256.0) as u8).collect();
        if yes_no {
            cols.insert(cols.len().min(2), DirectColumn::YesNo(&yes));
        }
        let m = if drop_every == 0 { None } else { Some(&mask[..]) };
        let Some(mm) = raw_moments_masked_columns(&cols, n, m) else {
            // Declined only for a span of binades past five slices, or
            // where binary fractions finer than halves (kinds 13–15, or 3/4
            // from a ratio of small integers when few rows are kept) are
            // too long for exact sums beside the other columns: the general
            // path takes those, by design. (Columns too long for the exact
            // kernels as they are, kinds 8–11, are binary fractions too,
            // but are read, never declined.)
            let dyadic = |(c, &kind): (&Vec<f64>, &u8)| kind < 6 && c.iter().zip(&kept).all(|(&x, &k)| !k || (x * 2f64.powi(40)).fract() == 0.0);
            let finer = kinds.iter().any(|&k| k >= 13);
            prop_assert!(kinds.contains(&5) || finer || reals.iter().zip(&kinds).any(dyadic), "declined {kinds:?}");
            return Ok(());
        };
        let rows: Vec<usize> = (0..n).filter(|&r| kept[r]).collect();
        let mut dense: Vec<Vec<f64>> = Vec::new();
        let mut f = 0;
        for c in &cols {
            match *c {
                DirectColumn::Source(SourceColumn::F64(v)) => dense.push(rows.iter().map(|&r| v[r]).collect()),
                DirectColumn::Source(SourceColumn::I64(v)) => dense.push(rows.iter().map(|&r| v[r] as f64).collect()),
                DirectColumn::Source(SourceColumn::Bits(_)) => unreachable!(),
                DirectColumn::Factor { codes, .. } => {
                    prop_assert_eq!(&mm.cells[f], &first_seen(&rows, |r| codes[r]), "cells in order of first appearance");
                    for &cell in &mm.cells[f] {
                        dense.push(rows.iter().map(|&r| f64::from(u8::from(codes[r] == cell))).collect());
                    }
                    f += 1;
                }
                DirectColumn::YesNo(yes) => {
                    let level = |r: usize| u32::from(yes[r / 8] >> (r % 8) & 1);
                    prop_assert_eq!(&mm.cells[f], &first_seen(&rows, level), "cells in order of first appearance");
                    for &cell in &mm.cells[f] {
                        dense.push(rows.iter().map(|&r| f64::from(u8::from(level(r) == cell))).collect());
                    }
                    f += 1;
                }
            }
        }
        let refs: Vec<ColumnRef<'_>> = dense.iter().map(|c| ColumnRef::plain(c)).collect();
        let general = raw_moments(&refs, None);
        prop_assert_eq!(mm.raw.exact, general.exact);
        prop_assert!(!general.exact || kinds.iter().all(|&k| k >= 8), "a real column is never exact");
        prop_assert_eq!(mm.raw.sum_w, general.sum_w);
        prop_assert_eq!(&mm.raw.s1, &general.s1);
        prop_assert_eq!(&mm.raw.s2, &general.s2);
        let nonzero: Vec<u64> = dense.iter().map(|c| c.iter().filter(|&&x| x != 0.0).count() as u64).collect();
        prop_assert_eq!(&mm.raw.nonzero, &nonzero);
        prop_assert_eq!(&general.nonzero, &nonzero);
    }
}

/// The levels of `rows`, in order of first appearance.
fn first_seen(rows: &[usize], level: impl Fn(usize) -> u32) -> Vec<u32> {
    let mut seen = Vec::new();
    for &r in rows {
        if !seen.contains(&level(r)) {
            seen.push(level(r));
        }
    }
    seen
}

/// Fits over a file of real values (rent in cents, coordinates, a ratio,
/// nulls; flags and a factor beside; timestamps and ids too long for the
/// exact kernels as they are, as INT64 and DOUBLE) read in place and by the reference
/// path (every design block built): the same bits in every first-pass
/// figure, second-pass figures to rounding, for every covariance type.
#[test]
fn fits_over_real_values_equal_the_reference_path() {
    let tmp = tempdir();
    let path = tmp.path().join("real.parquet");
    let n = 30_000;
    let cols = real_columns(n, 11, &[0, 1, 2, 3, 6]);
    let mut rng = gramfit::generate::Rng::new(5);
    let null_every = |k: usize, v: &[f64]| -> ArrayRef {
        Arc::new(Float64Array::from_iter((0..n).map(|r| (r % k != 3).then_some(v[r]))))
    };
    let rent: Vec<f64> =
        (0..n).map(|r| ((cols[0][r] + 250.0 * cols[3][r] + 3.0 * cols[4][r]) * 100.0).round() / 100.0).collect();
    let flag: Vec<i64> = (0..n).map(|_| i64::from(rng.uniform() < 0.4)).collect();
    let borough: Vec<String> = (0..n).map(|r| format!("b{}", (r * 7) % 5)).collect();
    let long = real_columns(n, 12, &[8, 9]);
    let stamp: Vec<i64> = long[0].iter().map(|&t| t as i64).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("rent", DataType::Float64, true),
        Field::new("lat", DataType::Float64, true),
        Field::new("lon", DataType::Float64, false),
        Field::new("ratio", DataType::Float64, false),
        Field::new("size", DataType::Float64, false),
        Field::new("gym", DataType::Int64, false),
        Field::new("borough", DataType::Utf8, false),
        Field::new("stamp", DataType::Int64, true),
        Field::new("id", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            null_every(997, &rent),
            null_every(101, &cols[1]),
            Arc::new(Float64Array::from(cols[2].clone())),
            Arc::new(Float64Array::from(cols[3].clone())),
            Arc::new(Float64Array::from(cols[4].clone())),
            Arc::new(Int64Array::from(flag)),
            Arc::new(StringArray::from(borough)),
            Arc::new(Int64Array::from_iter((0..n).map(|r| (r % 89 != 7).then_some(stamp[r])))),
            Arc::new(Float64Array::from(long[1].clone())),
        ],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    for f in [
        "rent ~ lat + lon + ratio + size + gym",
        "rent ~ 0 + ratio + size + gym + lat",
        "rent ~ size + ratio + gym + C(borough)",
        "lat ~ lon + rent",
        "rent ~ stamp + id + size + gym",
        "stamp ~ id + I(size ** 2) + C(borough)",
    ] {
        crate::engine::compare_direct_and_reference(&path, f, &["borough"]);
    }
}

/// `gramfit-gen --shape real`: the whole shape's rows with rent in cents
/// (not a binary fraction), six-decimal coordinates with ~1% nulls and a
/// ratio; the same values whichever float page encoding is asked for, and
/// that encoding in the file (dictionary overflowing to PLAIN, PLAIN,
/// BYTE_STREAM_SPLIT).
#[test]
fn the_generator_writes_real_values_in_every_float_encoding() {
    use gramfit::generate::{self, FloatPages, Shape};
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let tmp = tempdir();
    let n = 200_000u64;
    let mut tables = Vec::new();
    for (pages, name) in
        [(FloatPages::Dictionary, "dict"), (FloatPages::Plain, "plain"), (FloatPages::ByteStreamSplit, "bss")]
    {
        let path = tmp.path().join(format!("{name}.parquet"));
        generate::write_parquet_with(&path, Shape::Real, pages, 3, 0, n, 100_000).unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let rg = reader.metadata().row_group(0);
        let rent = rg.columns().iter().find(|c| c.column_path().string() == "rent").unwrap();
        let encodings = rent.encodings().collect::<Vec<_>>();
        match pages {
            // 100,000 distinct-ish cents overflow the 1 MiB dictionary.
            FloatPages::Dictionary => {
                assert!(
                    rent.dictionary_page_offset().is_some() && encodings.contains(&Encoding::PLAIN),
                    "{encodings:?}"
                )
            }
            FloatPages::Plain => {
                assert!(
                    rent.dictionary_page_offset().is_none() && encodings.contains(&Encoding::PLAIN),
                    "{encodings:?}"
                )
            }
            FloatPages::ByteStreamSplit => assert!(encodings.contains(&Encoding::BYTE_STREAM_SPLIT), "{encodings:?}"),
        }
        let file = std::fs::File::open(&path).unwrap();
        let batches: Vec<RecordBatch> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        tables.push(arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap());
    }
    assert!(tables.iter().all(|t| t == &tables[0]), "the encodings hold different values");
    let real = &tables[0];
    let whole = generate::batch(3, 0, n as usize);
    let col = |b: &RecordBatch, name: &str| -> Float64Array {
        b.column_by_name(name).unwrap().as_any().downcast_ref::<Float64Array>().unwrap().clone()
    };
    // Rent: the whole shape's dollars plus 0–99 cents; the other columns
    // of the whole shape unchanged.
    let (rent, dollars) = (col(real, "rent"), col(&whole, "rent"));
    for r in 0..n as usize {
        let cents = ((rent.value(r) - dollars.value(r)) * 100.0).round();
        assert!((0.0..100.0).contains(&cents), "row {r}: {} from {}", rent.value(r), dollars.value(r));
    }
    let fractional = rent.iter().flatten().filter(|v| (v * 65536.0).fract() != 0.0).count();
    assert!(fractional > n as usize * 9 / 10, "rent should hold real values: {fractional}");
    for name in ["size_sqft", "bedrooms", "min_to_subway"] {
        assert_eq!(col(real, name), col(&whole, name), "{name}");
    }
    let lat = col(real, "latitude");
    let nulls = lat.null_count() as f64 / n as f64;
    assert!((0.005..0.015).contains(&nulls), "latitude nulls {nulls}");
    assert!(lat.iter().flatten().all(|v| (40.0..41.6).contains(&v) && ((v * 1e6).round() / 1e6) == v));
}

/// Binary fractions finer than halves (quarters, steps of 2⁻⁸ and 2⁻¹⁶:
/// `I(bathrooms ** 2)`, a product of two columns of halves) are read in
/// place, profiled as the general path profiles them, beside a column in
/// cents and one of whole numbers, with rows dropped: the same bits, where
/// such a column once sent its chunk to the general path.
#[test]
fn finer_binary_fractions_are_read_in_place() {
    let n = 5000;
    let kept: Vec<bool> = (0..n).map(|r| r % 7 != 1).collect();
    let mask: Vec<u8> =
        kept.chunks(8).map(|c| c.iter().enumerate().fold(0u8, |m, (b, &k)| m | u8::from(k) << b)).collect();
    let rows: Vec<usize> = (0..n).filter(|&r| kept[r]).collect();
    for kind in [13u8, 14, 15] {
        let cols = real_columns(n, 3 + u64::from(kind), &[kind, 0, 6]);
        let dirty: Vec<Vec<f64>> =
            cols.iter().map(|c| c.iter().zip(&kept).map(|(&x, &k)| if k { x } else { f64::NAN }).collect()).collect();
        let direct: Vec<DirectColumn<'_>> = dirty.iter().map(|c| DirectColumn::Source(SourceColumn::F64(c))).collect();
        let mm = raw_moments_masked_columns(&direct, n, Some(&mask)).unwrap_or_else(|| panic!("kind {kind}: declined"));
        let dense: Vec<Vec<f64>> = cols.iter().map(|c| rows.iter().map(|&r| c[r]).collect()).collect();
        let refs: Vec<ColumnRef<'_>> = dense.iter().map(|c| ColumnRef::plain(c)).collect();
        let general = raw_moments(&refs, None);
        assert_eq!(mm.raw.s1, general.s1, "kind {kind}");
        assert_eq!(mm.raw.s2, general.s2, "kind {kind}");
        assert_eq!(mm.raw.exact, general.exact, "kind {kind}");
        // The fine column itself: its profile is one of the finer scales.
        let q = DyadicProfile::of(&dense[0]).expect("a binary fraction").q;
        assert!(q >= 4, "kind {kind}: q {q}");
    }
}
