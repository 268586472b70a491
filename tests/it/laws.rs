//! Merge laws of the sufficient statistics, by property testing: for random
//! data and any split into blocks, merging the parts equals one pass; the
//! empty state is an identity; retract undoes update. Blocks omit columns
//! that are zero on all their rows, as blocks do for categorical levels
//! they lack.

use gramfit::level::ColumnKey;
use gramfit::stats::columns::ColumnRef;
use gramfit::stats::SufficientStats;
use proptest::prelude::*;

const M: usize = 5;

fn key(i: usize) -> ColumnKey {
    if i == M - 1 {
        ColumnKey::Response
    } else {
        ColumnKey::Cell { term: i as u32, levels: vec![] }
    }
}

/// Rows of M columns: two with large means (like sqft ~ 900, years ~
/// 1950), one sparse indicator, one small, and y.
fn rows_strategy() -> impl Strategy<Value = Vec<[f64; M]>> {
    prop::collection::vec(
        (800.0f64..1000.0, 1900.0f64..2020.0, prop::bool::weighted(0.05), -1.0f64..1.0, -1e4f64..1e4)
            .prop_map(|(a, b, c, d, e)| [a, b, c as u8 as f64, d, e + 3.0 * a]),
        1..3000,
    )
}

fn stats_of(rows: &[[f64; M]], weights: Option<&[f64]>) -> SufficientStats {
    // Omit all-zero columns, as design blocks do.
    let present: Vec<usize> = (0..M).filter(|&j| j == M - 1 || rows.iter().any(|r| r[j] != 0.0)).collect();
    let cols: Vec<Vec<f64>> = present.iter().map(|&j| rows.iter().map(|r| r[j]).collect()).collect();
    let refs: Vec<ColumnRef<'_>> = cols.iter().map(|c| ColumnRef::plain(c)).collect();
    let keys: Vec<ColumnKey> = present.iter().map(|&j| key(j)).collect();
    SufficientStats::from_block(&keys, &refs, weights)
}

fn split(n: usize, sizes: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while start < n {
        let len = sizes[i % sizes.len()].max(1).min(n - start);
        out.push((start, start + len));
        start += len;
        i += 1;
    }
    out
}

/// Largest difference of means and co-moments, relative to each entry's
/// natural scale (|μ| and sqrt(C_ii C_jj)).
fn max_rel_diff(a: &SufficientStats, b: &SufficientStats) -> f64 {
    max_rel_diff_scaled(a, b, a)
}

/// As [`max_rel_diff`], with the co-moment scale taken from `scale` (for a
/// retraction: the state the data were subtracted from, whose size sets
/// the rounding of the subtraction).
fn max_rel_diff_scaled(a: &SufficientStats, b: &SufficientStats, scale: &SufficientStats) -> f64 {
    let mut worst = 0.0f64;
    assert_eq!(a.nobs(), b.nobs());
    for ka in a.keys() {
        let i = a.index_of(ka).unwrap();
        let Some(ib) = b.index_of(ka) else {
            // A column only one side has must be a zero column.
            assert_eq!(a.mean(i).to_f64(), 0.0);
            continue;
        };
        let (ma, mb) = (a.mean(i).to_f64(), b.mean(ib).to_f64());
        worst = worst.max((ma - mb).abs() / ma.abs().max(mb.abs()).max(1e-300));
        for kb in a.keys() {
            let j = a.index_of(kb).unwrap();
            let Some(jb) = b.index_of(kb) else { continue };
            let (si, sj) = (scale.index_of(ka), scale.index_of(kb));
            let scale = match (si, sj) {
                (Some(si), Some(sj)) => (scale.comoment(si, si).to_f64() * scale.comoment(sj, sj).to_f64()).sqrt(),
                _ => 0.0,
            }
            .max(1e-300);
            let d = (a.comoment(i, j).to_f64() - b.comoment(ib, jb).to_f64()).abs() / scale;
            worst = worst.max(d);
        }
    }
    worst
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn merge_of_parts_equals_one_pass(rows in rows_strategy(), pick in 0usize..4, uneven in prop::collection::vec(1usize..900, 1..6)) {
        let whole = stats_of(&rows, None);
        let sizes: Vec<usize> = match pick { 0 => vec![1], 1 => vec![7], 2 => vec![4096], _ => uneven };
        let mut acc = SufficientStats::new();
        for (s, e) in split(rows.len(), &sizes) {
            acc.merge(&stats_of(&rows[s..e], None));
        }
        prop_assert_eq!(acc.nobs(), rows.len() as u64);
        let d = max_rel_diff(&whole, &acc);
        prop_assert!(d <= 1e-12, "relative difference {:e}", d);
    }

    #[test]
    fn weighted_merge_of_parts_equals_one_pass(rows in rows_strategy(), w in prop::collection::vec(0.1f64..10.0, 3000)) {
        let w = &w[..rows.len()];
        let whole = stats_of(&rows, Some(w));
        let mut acc = SufficientStats::new();
        for (s, e) in split(rows.len(), &[13, 250]) {
            acc.merge(&stats_of(&rows[s..e], Some(&w[s..e])));
        }
        let d = max_rel_diff(&whole, &acc);
        prop_assert!(d <= 1e-12, "relative difference {:e}", d);
        let swd = (whole.sum_w().to_f64() - acc.sum_w().to_f64()).abs() / whole.sum_w().to_f64();
        prop_assert!(swd <= 1e-15);
    }

    #[test]
    fn empty_state_is_an_identity(rows in rows_strategy()) {
        let s = stats_of(&rows, None);
        let mut left = SufficientStats::new();
        left.merge(&s);
        let mut right = s.clone();
        right.merge(&SufficientStats::new());
        for t in [&left, &right] {
            prop_assert_eq!(t.nobs(), s.nobs());
            for k in s.keys() {
                let (i, j) = (s.index_of(k).unwrap(), t.index_of(k).unwrap());
                prop_assert_eq!(s.mean(i), t.mean(j));
                for k2 in s.keys() {
                    let (i2, j2) = (s.index_of(k2).unwrap(), t.index_of(k2).unwrap());
                    prop_assert_eq!(s.comoment(i, i2), t.comoment(j, j2));
                }
            }
        }
    }

    #[test]
    fn retract_undoes_update(rows in rows_strategy(), cut in 0.0f64..1.0) {
        let n = rows.len();
        let c = ((n as f64 * cut) as usize).clamp(1, n);
        let a = stats_of(&rows[..c], None);
        let mut all = a.clone();
        let mut full = a.clone();
        if c < n {
            let b = stats_of(&rows[c..], None);
            all.merge(&b);
            full = all.clone();
            all.retract(&b).unwrap();
        }
        // Retraction subtracts: its rounding is relative to the state it
        // subtracts from.
        let d = max_rel_diff_scaled(&a, &all, &full);
        prop_assert!(d <= 1e-12, "relative difference {:e}", d);
        // Everything out leaves the exact empty state.
        let mut gone = a.clone();
        gone.retract(&a).unwrap();
        prop_assert_eq!(gone.nobs(), 0);
        prop_assert!(gone.sum_w().to_f64() == 0.0);
    }

    #[test]
    fn merge_is_commutative_and_associative(rows in rows_strategy()) {
        let n = rows.len();
        let (i, j) = (n / 3, 2 * n / 3);
        let (a, b, c) = (stats_of(&rows[..i], None), stats_of(&rows[i..j], None), stats_of(&rows[j..], None));
        let mut ab_c = a.clone(); ab_c.merge(&b); ab_c.merge(&c);
        let mut bc = b.clone(); bc.merge(&c);
        let mut a_bc = a.clone(); a_bc.merge(&bc);
        let mut cba = c.clone(); cba.merge(&b); cba.merge(&a);
        prop_assert!(max_rel_diff(&ab_c, &a_bc) <= 1e-12);
        prop_assert!(max_rel_diff(&ab_c, &cba) <= 1e-12);
    }
}

#[test]
fn retracting_data_never_added_is_refused() {
    let rows: Vec<[f64; M]> = (0..10).map(|i| [900.0 + i as f64, 1950.0, 0.0, 0.5, 1.0]).collect();
    let small = stats_of(&rows[..3], None);
    let mut s = small.clone();
    let big = stats_of(&rows, None);
    assert!(s.retract(&big).is_err(), "more rows than the state holds");
    let with_indicator: Vec<[f64; M]> = vec![[900.0, 1950.0, 1.0, 0.5, 1.0]];
    assert!(s.retract(&stats_of(&with_indicator, None)).is_err(), "a column the state never saw");
}

#[test]
fn fma_and_portable_kernels_agree_bitwise() {
    use gramfit::stats::kernel::{raw_moments, raw_moments_portable};
    let a: Vec<f64> = (0..1000).map(|i| 900.0 + (i as f64 * 0.37).sin() * 100.0).collect();
    let b: Vec<f64> = (0..1000).map(|i| 1.0 / (1.0 + i as f64)).collect();
    let lo: Vec<f64> = b.iter().map(|x| x * 1e-17).collect();
    let w: Vec<f64> = (0..1000).map(|i| 0.5 + (i % 7) as f64).collect();
    let cols = [ColumnRef::plain(&a), ColumnRef { hi: &b, lo: Some(&lo), integral: false, decimals: true }];
    for weights in [None, Some(&w[..])] {
        let x = raw_moments(&cols, weights);
        let y = raw_moments_portable(&cols, weights);
        assert_eq!(x.s2, y.s2);
        assert_eq!(x.s1, y.s1);
        assert_eq!(x.sum_w, y.sum_w);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The exact fast path (plain FMA on integer and binary-fraction
    /// columns) returns the same bits as the compensated loop, including on
    /// data at the edge of its magnitude bound, where it must fall back;
    /// sums with a column of real values (not decimals: split into slices where
    /// the bounds allow, see `tests/it/slices.rs`) agree with the
    /// compensated loop to 2⁻⁹⁵ of Σ|z_i z_j|.
    #[test]
    fn exact_fast_path_equals_the_compensated_sums(
        n in 1usize..5000,
        scale in prop::sample::select(vec![1.0f64, 0.5, 0.25, 1.0 / 1024.0, 3.0]),
        big in prop::sample::select(vec![10.0f64, 1e4, 1e6, 4e7]),
        seed in any::<u64>(),
    ) {
        use gramfit::stats::kernel::{raw_moments, raw_moments_compensated};
        let mut rng = gramfit::generate::Rng::new(seed);
        let cols: Vec<Vec<f64>> = (0..4)
            .map(|j| (0..n).map(|_| {
                let k = (rng.uniform() * big) as i64 as f64 - if j == 2 { big / 2.0 } else { 0.0 };
                if j == 3 { k * scale + 0.1 * std::f64::consts::SQRT_2 } else { k * scale }
            }).collect())
            .collect();
        let refs: Vec<ColumnRef<'_>> = cols.iter().map(|c| ColumnRef::plain(c)).collect();
        let fast = raw_moments(&refs, None);
        let slow = raw_moments_compensated(&refs, None);
        let near = |a: gramfit::dd::Dd, b: gramfit::dd::Dd, scale: f64| (a - b).hi.abs() <= scale * 2f64.powi(-95);
        for i in 0..4 {
            let abs: f64 = cols[i].iter().map(|x| x.abs()).sum();
            if i < 3 {
                prop_assert_eq!(fast.s1[i], slow.s1[i]);
            } else {
                prop_assert!(near(fast.s1[i], slow.s1[i], abs));
            }
            for j in 0..4 {
                let abs: f64 = cols[i].iter().zip(&cols[j]).map(|(x, y)| (x * y).abs()).sum();
                if i < 3 && j < 3 {
                    prop_assert_eq!(fast.s2[i * 4 + j], slow.s2[i * 4 + j]);
                } else {
                    prop_assert!(near(fast.s2[i * 4 + j], slow.s2[i * 4 + j], abs), "({i}, {j})");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The in-place kernel (float and integer columns read where they are,
    /// dropped rows masked out, AVX-512) takes every such block and
    /// returns the same bits as the compensated loop over the kept rows —
    /// whatever the dropped rows hold (NaN and infinities included) — while
    /// its sums are exact; real values (0.1 steps), and whole numbers or
    /// halves past the exactness bound (`stats::reals::too_long`), are
    /// read as decimals or in slices, the same bits as the general path's.
    #[test]
    fn masked_in_place_kernel_equals_the_compensated_sums(
        n in 1usize..5000,
        scale in prop::sample::select(vec![1.0f64, 0.5, 0.1]),
        big in prop::sample::select(vec![10.0f64, 1e4, 4e7]),
        drop_every in prop::sample::select(vec![0usize, 2, 3, 17, 1000]),
        seed in any::<u64>(),
    ) {
        use gramfit::stats::columns::SourceColumn;
        use gramfit::stats::kernel::{raw_moments, raw_moments_compensated, raw_moments_masked};
        let mut rng = gramfit::generate::Rng::new(seed);
        let floats: Vec<Vec<f64>> = (0..3)
            .map(|j| (0..n).map(|_| ((rng.uniform() * big) as i64 as f64 - if j == 1 { big / 2.0 } else { 0.0 }) * scale).collect())
            .collect();
        let mut ints: Vec<Vec<i64>> = (0..2).map(|_| (0..n).map(|_| (rng.uniform() * big) as i64 - 3).collect()).collect();
        // 0/1 columns (their products are popcounts): an integer one and a
        // float one.
        ints.push((0..n).map(|_| i64::from(rng.uniform() < 0.3)).collect());
        let flag: Vec<f64> = (0..n).map(|_| f64::from(u8::from(rng.uniform() < 0.6))).collect();
        let kept: Vec<bool> = (0..n).map(|r| drop_every == 0 || r % drop_every != 1).collect();
        let mask = kept_mask(&kept);
        // What the dropped rows hold must not matter.
        let mut floats_dirty = floats.clone();
        for (r, _) in kept.iter().enumerate().filter(|(_, k)| !**k) {
            floats_dirty[0][r] = f64::NAN;
            floats_dirty[1][r] = f64::INFINITY;
            floats_dirty[2][r] = 0.3;
        }
        let mut flag_dirty = flag.clone();
        let mut int_flag_dirty = ints[2].clone();
        for (r, _) in kept.iter().enumerate().filter(|(_, k)| !**k) {
            flag_dirty[r] = 7.0;
            int_flag_dirty[r] = -9;
        }
        // Almost a 0/1 column: one 2 on a kept row anywhere (it must be
        // converted, not read as bits).
        let mut almost: Vec<i64> = (0..n).map(|_| i64::from(rng.uniform() < 0.5)).collect();
        if let Some(r) = (0..n).rev().skip((seed % n as u64) as usize).find(|&r| kept[r]) {
            almost[r] = 2;
        }
        let cols = [
            SourceColumn::F64(&floats_dirty[0]),
            SourceColumn::I64(&int_flag_dirty),
            SourceColumn::I64(&almost),
            SourceColumn::I64(&ints[0]),
            SourceColumn::F64(&flag_dirty),
            SourceColumn::F64(&floats_dirty[1]),
            SourceColumn::I64(&ints[1]),
            SourceColumn::F64(&floats_dirty[2]),
        ];
        let compact = |v: Vec<f64>| -> Vec<f64> { v.into_iter().zip(&kept).filter(|(_, k)| **k).map(|(x, _)| x).collect() };
        let dense: Vec<Vec<f64>> = vec![
            compact(floats[0].clone()),
            compact(ints[2].iter().map(|&x| x as f64).collect()),
            compact(almost.iter().map(|&x| x as f64).collect()),
            compact(ints[0].iter().map(|&x| x as f64).collect()),
            compact(flag.clone()),
            compact(floats[1].clone()),
            compact(ints[1].iter().map(|&x| x as f64).collect()),
            compact(floats[2].clone()),
        ];
        let m = if drop_every == 0 { None } else { Some(&mask[..]) };
        let kept_rows = dense[0].len();
        let too_long = |c: &Vec<f64>| {
            let q = if c.iter().all(|x| x.fract() == 0.0) { 0 } else { 1 };
            let max_abs = c.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            gramfit::stats::reals::too_long(&gramfit::stats::dyadic::DyadicProfile { q, max_abs }, kept_rows)
        };
        let exact = scale != 0.1 && !dense.iter().any(too_long);
        let fast = raw_moments_masked(&cols, n, m);
        prop_assert!(fast.is_some() || kept_rows == 0, "taken");
        if let Some(fast) = fast {
            let refs: Vec<ColumnRef<'_>> = dense.iter().map(|c| ColumnRef::plain(c)).collect();
            let slow = if exact { raw_moments_compensated(&refs, None) } else { raw_moments(&refs, None) };
            prop_assert_eq!(fast.exact, exact);
            prop_assert_eq!(fast.sum_w, slow.sum_w);
            prop_assert_eq!(fast.s1, slow.s1);
            prop_assert_eq!(fast.s2, slow.s2);
            let nonzero: Vec<u64> = dense.iter().map(|c| c.iter().filter(|&&x| x != 0.0).count() as u64).collect();
            prop_assert_eq!(fast.nonzero, nonzero);
        }
    }
}

/// The column scan sees every value, the ones past the last full vector
/// included: a fraction anywhere moves the profile (or refuses it), and the
/// SIMD scans agree with the portable loop.
#[test]
fn column_scan_sees_every_value() {
    use gramfit::stats::dyadic::{ColumnScan, DyadicProfile};
    for n in 1..40 {
        for at in 0..n {
            for (odd, q) in [(0.5, Some(1)), (0.25, Some(4)), (0.3, None), (f64::NAN, None), (f64::INFINITY, None)] {
                let mut col: Vec<f64> = (0..n).map(|i| (i * 7 % 11) as f64).collect();
                col[at] += odd;
                let p = DyadicProfile::of(&col);
                assert_eq!(p.map(|p| p.q), q, "n {n}, value {odd} at {at}");
                let (fast, portable) = (ColumnScan::of(&col, false), ColumnScan::of_portable(&col, false));
                assert_eq!(fast.nonzero, portable.nonzero, "n {n}");
                if q.is_some() {
                    assert_eq!(fast.plain_sum, portable.plain_sum, "n {n}");
                    assert_eq!(p.unwrap().max_abs, col.iter().fold(0.0f64, |m, x| m.max(x.abs())));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Categorical factors in the in-place kernel (cells from level codes:
    /// counts, per-level sums, cross tabulations) give the same bits as the
    /// compensated loop over dense indicator columns in the same order —
    /// cells in order of first appearance among the kept rows.
    #[test]
    fn factor_cells_equal_dense_indicators(
        n in 1usize..3000,
        levels_a in 1usize..40,
        levels_b in 1usize..6,
        drop_every in prop::sample::select(vec![0usize, 3, 50]),
        seed in any::<u64>(),
    ) {
        use gramfit::stats::columns::{DirectColumn, SourceColumn};
        use gramfit::stats::kernel::{raw_moments_compensated, raw_moments_masked_columns};
        let mut rng = gramfit::generate::Rng::new(seed);
        let x: Vec<f64> = (0..n).map(|_| (rng.uniform() * 1000.0).round() * 0.5).collect();
        let y: Vec<i64> = (0..n).map(|_| (rng.uniform() * 5000.0) as i64).collect();
        let kept: Vec<bool> = (0..n).map(|r| drop_every == 0 || r % drop_every != 2).collect();
        // A 0/1 column (read as bits), with junk on the dropped rows.
        let flag: Vec<i64> = (0..n).map(|r| if kept[r] { i64::from(rng.uniform() < 0.4) } else { 5 }).collect();
        let a: Vec<u32> = (0..n).map(|r| if kept[r] { (rng.uniform() * levels_a as f64) as u32 } else { u32::MAX }).collect();
        let b: Vec<u32> = (0..n).map(|_| (rng.uniform() * levels_b as f64) as u32).collect();
        let mask = kept_mask(&kept);
        let m = if drop_every == 0 { None } else { Some(&mask[..]) };
        let cols = [
            DirectColumn::Source(SourceColumn::F64(&x)),
            DirectColumn::Factor { codes: &a, levels: levels_a },
            DirectColumn::Factor { codes: &b, levels: levels_b },
            DirectColumn::Source(SourceColumn::I64(&flag)),
            DirectColumn::Source(SourceColumn::I64(&y)),
        ];
        if let Some(mm) = raw_moments_masked_columns(&cols, n, m) {
            let rows: Vec<usize> = (0..n).filter(|&r| kept[r]).collect();
            let indicators = |codes: &[u32], cells: &[u32]| -> Vec<Vec<f64>> {
                cells.iter().map(|&c| rows.iter().map(|&r| f64::from(u8::from(codes[r] == c))).collect()).collect()
            };
            // First appearance among the kept rows.
            let first = |codes: &[u32]| -> Vec<u32> {
                let mut seen = Vec::new();
                for &r in &rows { if !seen.contains(&codes[r]) { seen.push(codes[r]); } }
                seen
            };
            let (cells_a, cells_b) = (first(&a), first(&b));
            prop_assert_eq!(&mm.cells[0], &cells_a);
            prop_assert_eq!(&mm.cells[1], &cells_b);
            let mut dense: Vec<Vec<f64>> = vec![rows.iter().map(|&r| x[r]).collect()];
            dense.extend(indicators(&a, &cells_a));
            dense.extend(indicators(&b, &cells_b));
            dense.push(rows.iter().map(|&r| flag[r] as f64).collect());
            dense.push(rows.iter().map(|&r| y[r] as f64).collect());
            let refs: Vec<ColumnRef<'_>> = dense.iter().map(|c| ColumnRef::plain(c)).collect();
            let slow = raw_moments_compensated(&refs, None);
            prop_assert_eq!(mm.raw.sum_w, slow.sum_w);
            prop_assert_eq!(mm.raw.s1, slow.s1);
            prop_assert_eq!(mm.raw.s2, slow.s2);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Exact blocks added as raw sums (keys in any order, some missing from
    /// some blocks) and centered once give the very bits of one block over
    /// all the rows (in the same column order): the addition is exact.
    #[test]
    fn exact_raw_sums_equal_one_block(
        n in 1usize..6000,
        cuts in prop::collection::vec(0.0f64..1.0, 0..6),
        seed in any::<u64>(),
    ) {
        use gramfit::stats::kernel::raw_moments;
        use gramfit::stats::RawSums;
        let mut rng = gramfit::generate::Rng::new(seed);
        let cols: Vec<Vec<f64>> = (0..M)
            .map(|j| (0..n).map(|r| match j {
                0 => (rng.uniform() * 4000.0).round(),
                1 => (rng.uniform() * 20.0).round() * 0.5,
                2 => if r % 7 == 3 { 1.0 } else { 0.0 },
                3 => (rng.uniform() * 100.0).round() - 50.0,
                _ => (rng.uniform() * 9000.0).round(),
            }).collect())
            .collect();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| (c * n as f64) as usize).chain([0, n]).collect();
        bounds.sort_unstable();
        bounds.dedup();
        let mut sums = RawSums::default();
        for (i, w) in bounds.windows(2).enumerate() {
            let (a, b) = (w[0], w[1]);
            if a == b { continue; }
            // Blocks list their present columns in varying orders.
            let mut present: Vec<usize> = (0..M).filter(|&j| j == M - 1 || cols[j][a..b].iter().any(|&x| x != 0.0)).collect();
            if i % 2 == 1 { present.reverse(); }
            let refs: Vec<ColumnRef<'_>> = present.iter().map(|&j| ColumnRef::plain(&cols[j][a..b])).collect();
            let keys: Vec<ColumnKey> = present.iter().map(|&j| key(j)).collect();
            let raw = raw_moments(&refs, None);
            prop_assert!(raw.exact);
            sums.add(&keys, &raw, b - a);
        }
        let got = sums.take();
        // One block over all rows, its columns in the order the sums
        // first met them (centering takes S1_i·μ_j for i ≤ j, so the
        // order of the columns is part of the bits).
        let order: Vec<usize> = got
            .keys()
            .iter()
            .map(|k| match k {
                ColumnKey::Cell { term, .. } => *term as usize,
                _ => M - 1,
            })
            .collect();
        let refs: Vec<ColumnRef<'_>> = order.iter().map(|&j| ColumnRef::plain(&cols[j])).collect();
        let whole = SufficientStats::from_block(got.keys(), &refs, None);
        prop_assert_eq!(got.nobs(), whole.nobs());
        for i in 0..order.len() {
            prop_assert_eq!(got.mean(i), whole.mean(i));
            for j in 0..order.len() {
                prop_assert_eq!(got.comoment(i, j), whole.comoment(i, j));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Blocks of real values (sevenths, a column far from zero, a sparse
    /// indicator) added as a run of raw sums about shifts (keys in any
    /// order, some missing from some blocks) agree with the blocks merged
    /// one by one (Chan's update) to the double-double unit of the sums.
    #[test]
    fn inexact_raw_sums_agree_with_merged_blocks(
        n in 1usize..6000,
        cuts in prop::collection::vec(0.0f64..1.0, 0..8),
        seed in any::<u64>(),
    ) {
        use gramfit::stats::kernel::raw_moments;
        use gramfit::stats::RawSums;
        let mut rng = gramfit::generate::Rng::new(seed);
        let cols: Vec<Vec<f64>> = (0..M)
            .map(|j| (0..n).map(|r| match j {
                0 => 1.0e6 + (rng.uniform() * 4000.0).round() / 7.0,
                1 => (rng.uniform() * 20.0).round() / 7.0 - 1.0,
                2 => if r % 7 == 3 { 1.0 } else { 0.0 },
                3 => (rng.uniform() * 100.0).round() / 100.0 - 0.5,
                _ => 3.0e5 + rng.uniform() * 9000.0,
            }).collect())
            .collect();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| (c * n as f64) as usize).chain([0, n]).collect();
        bounds.sort_unstable();
        bounds.dedup();
        let (mut sums, mut merged) = (RawSums::default(), SufficientStats::new());
        for (i, w) in bounds.windows(2).enumerate() {
            let (a, b) = (w[0], w[1]);
            let mut present: Vec<usize> = (0..M).filter(|&j| j == M - 1 || cols[j][a..b].iter().any(|&x| x != 0.0)).collect();
            if i % 2 == 1 { present.reverse(); }
            let refs: Vec<ColumnRef<'_>> = present.iter().map(|&j| ColumnRef::plain(&cols[j][a..b])).collect();
            let keys: Vec<ColumnKey> = present.iter().map(|&j| key(j)).collect();
            let raw = raw_moments(&refs, None);
            prop_assert!(!raw.exact);
            sums.add(&keys, &raw, b - a);
            merged.merge(&SufficientStats::from_block(&keys, &refs, None));
        }
        let got = sums.take();
        prop_assert_eq!(got.nobs(), merged.nobs());
        let at = |s: &SufficientStats, j: usize| s.index_of(&key(j));
        for i in (0..M).filter_map(|j| at(&merged, j).map(|m| (j, m))) {
            let g = at(&got, i.0).expect("the run has every column the blocks had");
            let (mg, mm) = (got.mean(g), merged.mean(i.1));
            prop_assert!((mg - mm).abs().hi <= 1e-28 * mm.abs().hi.max(1.0), "mean {}: {:?} vs {:?}", i.0, mg, mm);
            for j in (0..M).filter_map(|j| at(&merged, j).map(|m| (j, m))) {
                let h = at(&got, j.0).expect("the run has every column the blocks had");
                let (cg, cm) = (got.comoment(g, h), merged.comoment(i.1, j.1));
                // Relative to the raw sums of squares the centering cancels.
                let scale = |x: usize| {
                    let m = merged.mean(x).hi;
                    (merged.comoment(x, x).hi + n as f64 * m * m).sqrt()
                };
                let tol = 1e-28 * scale(i.1) * scale(j.1);
                prop_assert!((cg - cm).abs().hi <= tol, "C[{}][{}]: {:?} vs {:?}", i.0, j.0, cg, cm);
            }
        }
    }
}

/// A column far from zero against its spread (`2³⁰ + k·2⁻²²`, spread
/// ~0.01: μ²/σ² ≈ 2⁷⁶) summed over many blocks: the run's co-moments,
/// checked against exact integer sums, are as accurate as merging the
/// blocks one by one (each centered on its own), and within 2⁻¹⁰⁶ of the
/// raw square. Raw sums about zero would lose the run's accumulated
/// rounding to the cancellation.
#[test]
fn a_run_about_its_shift_keeps_the_centering_accuracy() {
    use gramfit::dd::Dd;
    use gramfit::stats::kernel::raw_moments;
    use gramfit::stats::RawSums;
    let (blocks, rows) = (200usize, 1000usize);
    let mut rng = gramfit::generate::Rng::new(7);
    let k: Vec<[i64; 2]> =
        (0..blocks * rows).map(|_| [(rng.uniform() * 40_000.0) as i64, (rng.uniform() * 90_000.0) as i64]).collect();
    let unit = 2f64.powi(-22);
    let x: Vec<f64> = k.iter().map(|k| 2f64.powi(30) + k[0] as f64 * unit).collect();
    let y: Vec<f64> = k.iter().map(|k| -(2f64.powi(29)) + k[1] as f64 * unit).collect();
    let keys = [key(0), ColumnKey::Response];
    let mut sums = RawSums::default();
    for b in 0..blocks {
        let r = b * rows..(b + 1) * rows;
        let raw = raw_moments(&[ColumnRef::plain(&x[r.clone()]), ColumnRef::plain(&y[r])], None);
        assert!(!raw.exact);
        sums.add(&keys, &raw, rows);
    }
    let got = sums.take();
    let mut chan = SufficientStats::new();
    for b in 0..blocks {
        let r = b * rows..(b + 1) * rows;
        chan.merge(&SufficientStats::from_block(
            &keys,
            &[ColumnRef::plain(&x[r.clone()]), ColumnRef::plain(&y[r])],
            None,
        ));
    }
    // Exact: C_ab · 2⁴⁴ = Σ k_a k_b − Σ k_a Σ k_b / n.
    let n = (blocks * rows) as i128;
    let dd = |v: i128| {
        let hi = v as f64;
        Dd::new(hi, (v - hi as i128) as f64)
    };
    let s = |a: usize| k.iter().map(|k| i128::from(k[a])).sum::<i128>();
    let ss = |a: usize, b: usize| k.iter().map(|k| i128::from(k[a]) * i128::from(k[b])).sum::<i128>();
    for (a, b) in [(0, 0), (0, 1), (1, 1)] {
        let exact = dd(n * ss(a, b) - s(a) * s(b)) / dd(n) * Dd::from(unit * unit);
        let c = got.comoment(a, b);
        let raw_square = n as f64 * 2f64.powi(30) * 2f64.powi(29);
        let err = (c - exact).abs().hi;
        // The blocks merged one by one (a centering per block) as the
        // yardstick: with the shifts the run measured 0.036, 0.0005 and
        // 0.005 units of 2⁻¹⁰⁶ of the raw square where the merges measured
        // 0.15, 0.002 and 0.004; about zero it measured 2.5, 0.42 and 2.0.
        let merged = (chan.comoment(a, b) - exact).abs().hi;
        let ulp = 2f64.powi(-106) * raw_square;
        assert!(err <= 2.0 * merged + 0.01 * ulp && err <= ulp, "C[{a}][{b}]: error {err:e}, merged {merged:e}");
    }
    let mean = Dd::from(2f64.powi(30)) + dd(s(0)) / dd(n) * Dd::from(unit);
    assert!((got.mean(0) - mean).abs().hi <= 2f64.powi(-100) * mean.hi, "{:?} vs {mean:?}", got.mean(0));
}

/// The row mask of the kept rows (a byte per 8 rows; bit set: kept).
fn kept_mask(kept: &[bool]) -> Vec<u8> {
    kept.chunks(8).map(|c| c.iter().enumerate().fold(0u8, |m, (b, &k)| m | u8::from(k) << b)).collect()
}

/// Bits of a 0/1 column (a byte per 8 rows), clear on dropped rows.
#[cfg(gramfit_x86)]
fn bits_of(col: &[f64], kept: &[bool]) -> Vec<u8> {
    (0..col.len().div_ceil(8))
        .map(|c| {
            (0..8)
                .filter(|b| c * 8 + b < col.len() && kept[c * 8 + b] && col[c * 8 + b] != 0.0)
                .fold(0u8, |m, b| m | 1 << b)
        })
        .collect()
}

#[cfg(gramfit_x86)]
proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The pattern kernels of the robust second pass (rows grouped by
    /// their pattern of 0/1 columns) equal plain row-by-row sums: the meat
    /// Σ w x xᵀ (separate and fused kernels), the residuals (the flags'
    /// part looked up by pattern), the leverages xᵀBx and the per-cluster
    /// score sums Σ e x,
    /// to rounding (1e-12 relative), for 0..=8 flags, with and without an
    /// intercept, dropped rows ignored.
    #[test]
    fn pattern_kernels_equal_row_sums(
        n in 1usize..700,
        nc in 0usize..10,
        nf in 0usize..=8,
        intercept in any::<bool>(),
        levels in 1usize..5,
        drop_every in prop::sample::select(vec![0usize, 3, 10]),
        seed in any::<u64>(),
    ) {
        use gramfit::stats::patterns;
        if !crate::common::cpu_has(gramfit::isa::Level::Avx512, "the pattern kernels") {
            return Ok(());
        }
        let mut rng = gramfit::generate::Rng::new(seed);
        let kept: Vec<bool> = (0..n).map(|r| drop_every == 0 || r % drop_every != 1).collect();
        let mask = kept_mask(&kept);
        let cont: Vec<Vec<f64>> = (0..nc).map(|_| (0..n).map(|_| rng.normal() * 3.0 + 1.0).collect()).collect();
        let flags: Vec<Vec<f64>> = (0..nf).map(|_| (0..n).map(|_| f64::from(u8::from(rng.uniform() < 0.4))).collect()).collect();
        let fbits: Vec<Vec<u8>> = flags.iter().map(|f| bits_of(f, &kept)).collect();
        let w: Vec<f64> = (0..n).map(|_| rng.uniform() * 2.0).collect();
        let e: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let code: Vec<usize> = (0..n).map(|_| (rng.uniform() * levels as f64) as usize).collect();
        // Kernel order: columns, flags, intercept.
        let m = nc + nf + usize::from(intercept);
        let x = |r: usize, j: usize| -> f64 {
            if j < nc { cont[j][r] } else if j < nc + nf { flags[j - nc][r] } else { 1.0 }
        };
        let rows: Vec<usize> = (0..n).filter(|&r| kept[r]).collect();
        let close = |a: f64, b: f64, scale: f64| (a - b).abs() <= 1e-12 * scale.max(1.0);
        let cols: Vec<&[f64]> = cont.iter().map(|c| c.as_slice()).collect();
        let fb: Vec<&[u8]> = fbits.iter().map(|b| b.as_slice()).collect();
        let pats = gramfit::stats::x86::avx512::patterns::row_patterns(&fb, n);
        let mk = Some(&mask[..]);

        // Meat.
        let mut table = vec![0.0; 256 * patterns::table_width(nc) * 8];
        let mut cc = vec![0.0; nc * nc];
        unsafe {
            gramfit::stats::x86::avx512::gram_lower_cols_avx512(&cols, n, mk, Some(&w), &mut cc);
            gramfit::stats::x86::avx512::patterns::pattern_sums(&cols, &pats, 256, n, mk, Some(&w), &mut table);
        }
        let meat = patterns::meat_from_patterns(&table, &cc, nc, nf, intercept);
        for i in 0..m {
            for j in 0..m {
                let want: f64 = rows.iter().map(|&r| w[r] * x(r, i) * x(r, j)).sum();
                let scale: f64 = rows.iter().map(|&r| (w[r] * x(r, i) * x(r, j)).abs()).sum();
                prop_assert!(close(meat[i * m + j], want, scale), "meat {i},{j}: {} vs {want}", meat[i * m + j]);
            }
        }

        // The same by the fused kernel (up to 7 columns), from a table of
        // SPREAD copies per pattern.
        let width = patterns::table_width(nc);
        let mut spread = vec![0.0; patterns::SPREAD * 256 * width * 8];
        let mut fused = vec![0.0; nc * nc];
        let done = unsafe { gramfit::stats::x86::avx512::patterns::meat_sums(&cols, &pats, n, mk, &w, &mut spread, &mut fused) };
        prop_assert_eq!(done, nc <= 7, "the fused kernel takes 0 to 7 columns");
        if done {
            let meat = patterns::meat_from_patterns(&patterns::fold_spread(&spread, width), &fused, nc, nf, intercept);
            for i in 0..m {
                for j in 0..m {
                    let want: f64 = rows.iter().map(|&r| w[r] * x(r, i) * x(r, j)).sum();
                    let scale: f64 = rows.iter().map(|&r| (w[r] * x(r, i) * x(r, j)).abs()).sum();
                    prop_assert!(close(meat[i * m + j], want, scale), "fused meat {i},{j}: {} vs {want}", meat[i * m + j]);
                }
            }
        }

        // Residuals, the flags' part looked up by pattern: at their rows in
        // `full` (0 on dropped rows), and in order in `kept`.
        let y: Vec<f64> = (0..n).map(|_| rng.normal() * 10.0).collect();
        let offset: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let beta: Vec<f64> = (0..nc).map(|_| rng.normal()).collect();
        let gamma: Vec<f64> = (0..nf).map(|_| rng.normal()).collect();
        let b0 = if intercept { rng.normal() } else { 0.0 };
        let terms = gramfit::stats::portable::rows::FlagTerms::new(&gamma);
        let (mut full, mut kept_e) = (vec![f64::NAN; n.div_ceil(8) * 8], vec![f64::NAN; n]);
        let flag_part = (nf > 0).then_some((&pats[..], &terms));
        let k = unsafe {
            gramfit::stats::x86::avx512::residuals_masked_avx512(
                &y, Some(&offset), &cols, &beta, flag_part, b0, n, mk, &mut full, &mut kept_e,
            )
        };
        prop_assert_eq!(k, rows.len());
        for r in 0..n {
            let terms: Vec<f64> = [y[r], -offset[r], -b0]
                .into_iter()
                .chain((0..nc).map(|j| -beta[j] * cont[j][r]))
                .chain((0..nf).map(|a| -gamma[a] * flags[a][r]))
                .collect();
            let want: f64 = if kept[r] { terms.iter().sum() } else { 0.0 };
            let scale: f64 = terms.iter().map(|t| t.abs()).sum();
            prop_assert!(close(full[r], want, scale), "e[{r}]: {} vs {want}", full[r]);
        }
        for (i, &r) in rows.iter().enumerate() {
            prop_assert_eq!(kept_e[i].to_bits(), full[r].to_bits(), "kept residual {} (row {})", i, r);
        }

        // Leverages for a symmetric B.
        let mut b = vec![0.0; m * m];
        for i in 0..m {
            for j in 0..=i {
                let v = rng.normal();
                b[i * m + j] = v;
                b[j * m + i] = v;
            }
        }
        let lt = patterns::leverage_table(&b, nc, nf, intercept);
        let mut h = vec![f64::NAN; n.div_ceil(8) * 8];
        unsafe { gramfit::stats::x86::avx512::patterns::leverage_by_patterns(&cols, &b, m, &pats, lt.as_slice(), n, mk, &mut h) };
        for r in 0..n {
            let (want, scale) = if kept[r] {
                let terms = (0..m).flat_map(|i| (0..m).map(move |j| (i, j))).map(|(i, j)| x(r, i) * b[i * m + j] * x(r, j));
                terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()))
            } else {
                (0.0, 0.0)
            };
            prop_assert!(close(h[r], want, scale), "h[{r}]: {} vs {want}", h[r]);
        }

        // Score sums per cluster: the level in the pattern's high bits, the
        // pattern split between the main table (low `bits` flags) and the
        // side table (the others), as `cluster_rows` indexes them.
        let bits = seed as usize % (nf + 1);
        let (low, high) = ((1usize << bits) - 1, nf - bits);
        let index: Vec<u16> = (0..n.div_ceil(8) * 8)
            .map(|r| if r < n && kept[r] { ((code[r] << bits) | usize::from(pats[r]) & low) as u16 } else { 0 })
            .collect();
        let side_index: Vec<u16> =
            (0..n).map(|r| if kept[r] { ((code[r] << high) | usize::from(pats[r]) >> bits) as u16 } else { 0 }).collect();
        let ek: Vec<f64> = (0..n).map(|r| if kept[r] { e[r] } else { 0.0 }).collect();
        let mut by = vec![0.0; (levels << bits) * patterns::table_width(nc) * 8];
        unsafe { gramfit::stats::x86::avx512::patterns::pattern_sums(&cols, &index, levels << bits, n, mk, Some(&ek), &mut by) };
        let mut side = vec![0.0; levels << high];
        patterns::side_sums(&side_index, &ek, n, &mut side);
        let scores = patterns::scores_from_patterns(&by, &side, levels, nc, (nf, bits), intercept);
        for l in 0..levels {
            for j in 0..m {
                let inl = rows.iter().filter(|&&r| code[r] == l);
                let want: f64 = inl.clone().map(|&r| e[r] * x(r, j)).sum();
                let scale: f64 = inl.map(|&r| (e[r] * x(r, j)).abs()).sum();
                prop_assert!(close(scores[l * m + j], want, scale), "score {l},{j}: {} vs {want}", scores[l * m + j]);
            }
        }
    }
}

#[cfg(gramfit_x86)]
proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The cluster pass's table indices and weights (16 rows at a time)
    /// equal the row-by-row definition: `level · 2^bits + low flags` in the
    /// main table, `level · 2^(nf − bits) + high flags` in the side table
    /// (not written when `bits = nf`) and the residual for a row with a
    /// cluster, 0, 0 and 0 without; the count is of kept rows with a
    /// cluster.
    #[test]
    fn cluster_rows_equal_the_row_by_row_definition(
        n in 1usize..300,
        g in 1usize..24,
        nf in 0usize..=8,
        high in 0usize..=8,
        drop_every in prop::sample::select(vec![0usize, 3, 7]),
        seed in any::<u64>(),
    ) {
        use gramfit::stats::x86::avx512::patterns;
        if !crate::common::cpu_has(gramfit::isa::Level::Avx512, "cluster_rows") {
            return Ok(());
        }
        let mut rng = gramfit::generate::Rng::new(seed);
        let codes: Vec<u32> = (0..n)
            .map(|_| match (rng.uniform() * 10.0) as u32 { 0 => u32::MAX, 1 => g as u32 + 3, _ => (rng.uniform() * g as f64) as u32 })
            .collect();
        let pats: Vec<u8> = (0..n.div_ceil(8) * 8).map(|_| (rng.uniform() * f64::from(1u32 << nf)) as u8).collect();
        let e: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let kept: Vec<bool> = (0..n).map(|r| drop_every == 0 || r % drop_every != 2).collect();
        let mask = kept_mask(&kept);
        let bits = nf - high.min(nf);
        let mut index = vec![7u16; n];
        let mut side = vec![7u16; n];
        let mut w = vec![f64::NAN; n];
        let m = if drop_every == 0 { None } else { Some(&mask[..]) };
        // Chunk codes to table levels: a permutation of more levels than
        // the chunk has (past 16: looked up by a gather).
        let spare = (rng.uniform() * 12.0) as usize;
        let mut levels: Vec<u32> = (0..(g + spare) as u32).collect();
        for i in (1..levels.len()).rev() {
            levels.swap(i, (rng.uniform() * (i + 1) as f64) as usize);
        }
        levels.truncate(g);
        let g = levels.len();
        let with = unsafe {
            patterns::cluster_rows(&codes, &levels, &pats, &e, (nf, bits), n, m, &mut index, &mut side, &mut w)
        };
        for r in 0..n {
            let valid = (codes[r] as usize) < g;
            let (level, pat) = (if valid { levels[codes[r] as usize] as usize } else { 0 }, usize::from(pats[r]));
            let want = if valid { (level << bits | pat & ((1 << bits) - 1)) as u16 } else { 0 };
            prop_assert_eq!(index[r], want, "row {}", r);
            let want_side = if bits == nf { 7 } else if valid { (level << (nf - bits) | pat >> bits) as u16 } else { 0 };
            prop_assert_eq!(side[r], want_side, "row {} (side)", r);
            prop_assert_eq!(w[r].to_bits(), if valid { e[r] } else { 0.0 }.to_bits(), "row {}", r);
        }
        let want = (0..n).filter(|&r| kept[r] && (codes[r] as usize) < g).count() as u64;
        prop_assert_eq!(with, want);
    }
}

#[cfg(gramfit_x86)]
proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A grouped factor's part of the leverages (8 rows at a time, by a
    /// transpose of the levels' rows up to 7 columns and by gathers beyond;
    /// the rest row by row) equals its definition: for a kept row
    /// whose code maps to a level column `l < g`, `fixed[l·2^nf + pattern]
    /// + Σ_j c_j by_column[l·nc + j]` is added to `h`; other rows (dropped,
    /// reference level, codes past the map) are left as they were.
    #[test]
    fn level_leverage_equals_its_definition(
        n in 1usize..90,
        g in 1usize..12,
        nc in 0usize..10,
        nf in 0usize..=3,
        drop_every in prop::sample::select(vec![0usize, 3, 7]),
        seed in any::<u64>(),
    ) {
        use gramfit::stats::x86::avx512::patterns;
        if !crate::common::cpu_has(gramfit::isa::Level::Avx512, "add_level_leverage") {
            return Ok(());
        }
        let mut rng = gramfit::generate::Rng::new(seed);
        // Codes 0..g+3: the map covers g+2 of them (two map to the
        // reference level g), the last is past it.
        let code_column: Vec<u32> = (0..g + 2).map(|c| if c < g { ((c * 7) % g) as u32 } else { g as u32 }).collect();
        let codes: Vec<u32> = (0..n).map(|_| (rng.uniform() * (g + 3) as f64) as u32).collect();
        let pats: Vec<u8> = (0..n).map(|_| (rng.uniform() * f64::from(1u32 << nf)) as u8).collect();
        let cols: Vec<Vec<f64>> = (0..nc).map(|_| (0..n).map(|_| rng.normal()).collect()).collect();
        let refs: Vec<&[f64]> = cols.iter().map(|c| &c[..]).collect();
        let fixed: Vec<f64> = (0..g << nf).map(|_| rng.normal()).collect();
        let by_column: Vec<f64> = (0..g * nc).map(|_| rng.normal()).collect();
        let kept: Vec<bool> = (0..n).map(|r| drop_every == 0 || r % drop_every != 1).collect();
        let mask = kept_mask(&kept);
        let m = if drop_every == 0 { None } else { Some(&mask[..]) };
        let h0: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
        let mut h = h0.clone();
        unsafe {
            patterns::add_level_leverage(&codes, (&code_column, g), (&pats, nf), &refs, &fixed, &by_column, n, m, &mut h)
        };
        for r in 0..n {
            let l = code_column.get(codes[r] as usize).map_or(g, |&l| l as usize);
            let want = if l < g && kept[r] {
                let cross: f64 = (0..nc).map(|j| cols[j][r] * by_column[l * nc + j]).sum();
                h0[r] + fixed[(l << nf) + usize::from(pats[r])] + cross
            } else {
                h0[r]
            };
            prop_assert!((h[r] - want).abs() <= 1e-12 * (1.0 + want.abs()), "h[{}]: {} vs {}", r, h[r], want);
            if !(l < g && kept[r]) {
                prop_assert_eq!(h[r].to_bits(), h0[r].to_bits(), "row {} untouched", r);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The design block (the predictions' and the reference path's) codes
    /// each kept row by its level: one 0/1 column per level met among the
    /// kept rows, in order of first appearance — built level by level for
    /// few levels, row by row for many — and counts levels on the factor's
    /// own non-missing rows.
    #[test]
    fn design_blocks_code_each_kept_row_by_its_level(
        n in 1usize..700,
        levels in prop::sample::select(vec![1usize, 2, 5, 16, 17, 40]),
        null_every in prop::sample::select(vec![0usize, 3, 11]),
        seed in any::<u64>(),
    ) {
        use arrow::array::{Float64Array, RecordBatch, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use gramfit::design::{DesignBuilder, MissingPolicy};
        use gramfit::formula::{ModelSpec, SourceType};
        use gramfit::level::Level;
        use std::sync::Arc;
        let mut rng = gramfit::generate::Rng::new(seed);
        let g: Vec<String> = (0..n).map(|_| format!("g{}", (rng.uniform() * levels as f64) as usize)).collect();
        let x: Vec<Option<f64>> = (0..n).map(|r| (null_every == 0 || r % null_every != 1).then_some(r as f64)).collect();
        let y: Vec<f64> = (0..n).map(|r| (r * 7 % 13) as f64).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("y", DataType::Float64, false),
            Field::new("x", DataType::Float64, true),
            Field::new("g", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Float64Array::from(y)), Arc::new(Float64Array::from(x.clone())), Arc::new(StringArray::from(g.clone()))],
        )
        .unwrap();
        let cols: Vec<(String, SourceType)> =
            [("y", SourceType::Numeric), ("x", SourceType::Numeric), ("g", SourceType::Text)]
                .iter()
                .map(|(c, t)| (c.to_string(), *t))
                .collect();
        let spec = ModelSpec::resolve("y ~ x + C(g)", &cols).unwrap();
        let builder = DesignBuilder::new(Arc::new(spec), None, MissingPolicy::Drop);
        let block = builder.block(&batch, &|r| format!("row {r}")).unwrap();
        let rows: Vec<usize> = (0..n).filter(|&r| x[r].is_some()).collect();
        let mut seen: Vec<&str> = Vec::new();
        for &r in &rows {
            if !seen.contains(&g[r].as_str()) {
                seen.push(&g[r]);
            }
        }
        let mut cells = Vec::new();
        for (j, key) in block.keys.iter().enumerate() {
            if let ColumnKey::Cell { levels, .. } = key {
                if let [Level::Str(level)] = levels.as_slice() {
                    let want: Vec<f64> = rows.iter().map(|&r| f64::from(u8::from(&g[r] == level))).collect();
                    prop_assert_eq!(block.col(j), &want[..], "level {}", level);
                    cells.push(level.as_str());
                }
            }
        }
        prop_assert_eq!(cells, seen, "cells in order of first appearance among the kept rows");
        let counts = block.levels.iter().find(|l| !l.is_empty()).cloned().unwrap_or_default();
        for (level, k) in counts {
            let Level::Str(level) = level else { unreachable!() };
            prop_assert_eq!(k, g.iter().filter(|v| **v == level).count() as u64);
        }
    }
}
