//! Every instruction-set path this CPU can run, forced by `GRAMFIT_ISA`,
//! and every thread count give the same numbers, bit for bit: the first
//! pass (the statistics, coefficients, nonrobust inference, diagnostics)
//! and the second (residual moments, Durbin–Watson, robust and cluster
//! covariances and what follows from them) — on the listings with and
//! without factors, with a derived term (the general path), and on NIST's
//! hardest conditioning.

use crate::common::{bin, expected_isa, shared_datasets, tempdir};
use gramfit::isa::Level;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn the_active_level_is_what_ci_expects() {
    let Some(want) = expected_isa() else { return };
    assert_eq!(gramfit::isa::active(), want, "GRAMFIT_ISA={:?}", std::env::var("GRAMFIT_ISA").ok());
    let out = Command::new(bin()).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("kernels: {want}")), "{text}");
}

#[test]
fn an_unknown_or_unsupported_level_is_refused() {
    let out = Command::new(bin()).env("GRAMFIT_ISA", "sse9").args(["summary", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GRAMFIT_ISA=sse9 is not a level"));
    if Level::detected() < Level::Avx512Vbmi {
        let out = Command::new(bin()).env("GRAMFIT_ISA", "avx512vbmi").args(["summary", "x"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("but this CPU supports up to"));
    }
}

fn fit(data: &Path, formula: &str, extra: &[&str], level: Level, threads: usize) -> Value {
    let out = Command::new(bin())
        .env("GRAMFIT_ISA", level.name())
        .args(["fit", data.to_str().unwrap(), "-f", formula, "--format", "json", "-q"])
        .args(["--threads", &threads.to_string()])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["fitted_at", "elapsed_s", "inputs"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

/// `(field, relative difference)` for each number that differs.
fn differences(a: &Value, b: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for (k, va) in a.as_object().unwrap() {
        let vb = &b[k];
        if va == vb {
            continue;
        }
        let mut worst = 0.0f64;
        let mut walk = vec![(va, vb)];
        while let Some((x, y)) = walk.pop() {
            match (x, y) {
                (Value::Array(p), Value::Array(q)) if p.len() == q.len() => walk.extend(p.iter().zip(q)),
                (Value::Object(p), Value::Object(q)) => walk.extend(p.iter().map(|(k, v)| (v, &q[k]))),
                (Value::Number(p), Value::Number(q)) => {
                    let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
                    let scale = if k == "cov_params" { cov_scale(a) } else { p.abs().max(q.abs()) };
                    worst = worst.max((p - q).abs() / scale.max(1e-300));
                }
                _ if x == y => {}
                _ => worst = f64::INFINITY,
            }
        }
        out.push((k.clone(), worst));
    }
    out
}

/// The largest variance of a covariance matrix (off-diagonal entries near
/// zero are compared against it).
fn cov_scale(report: &Value) -> f64 {
    let cp = report["cov_params"].as_object().unwrap();
    cp.iter().filter_map(|(n, row)| row[n].as_f64()).fold(0.0, f64::max)
}

fn check_paths(data: &Path, formula: &str, extra: &[&str], failures: &mut Vec<String>) {
    let levels: Vec<Level> = Level::ALL.into_iter().filter(|&l| l <= Level::detected()).collect();
    let reference = fit(data, formula, extra, Level::Portable, 1);
    for &l in &levels {
        for threads in [1, 2, 3] {
            let ours = fit(data, formula, extra, l, threads);
            for (k, d) in differences(&reference, &ours) {
                failures.push(format!("{formula} {extra:?}: {l} on {threads} threads: {k} differs ({d:e})"));
            }
        }
    }
}

#[test]
fn every_path_and_thread_count_gives_the_same_numbers() {
    let mut failures = Vec::new();
    let listings = shared_datasets().join("streeteasy/streeteasy.csv");
    for formula in [
        "rent ~ size_sqft + bedrooms + min_to_subway + has_washer_dryer + C(borough)",
        "rent ~ bedrooms + bathrooms + size_sqft + min_to_subway + floor + building_age_yrs + no_fee + has_roofdeck \
         + has_washer_dryer + has_doorman + has_elevator + has_dishwasher + has_patio + has_gym",
        "rent ~ size_sqft + bedrooms + has_washer_dryer + C(neighborhood)",
        "np.log(rent) ~ size_sqft + I(size_sqft**2) + C(borough)",
    ] {
        for extra in [&[][..], &["--cov-type", "HC3"], &["--cov-type", "cluster", "--cluster", "neighborhood"]] {
            check_paths(&listings, formula, extra, &mut failures);
        }
    }
    // NIST: the hardest conditioning, where an order of summation would
    // show first.
    let tmp = tempdir();
    let dir = shared_datasets().join("nist");
    let cert: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("certified.json")).unwrap()).unwrap();
    for (name, formula) in [
        ("Longley", "y ~ x1 + x2 + x3 + x4 + x5 + x6"),
        ("Filip", "y ~ x + I(x**2) + I(x**3) + I(x**4) + I(x**5) + I(x**6) + I(x**7) + I(x**8) + I(x**9) + I(x**10)"),
        ("Wampler4", "y ~ x + I(x**2) + I(x**3) + I(x**4) + I(x**5)"),
    ] {
        let ds = &cert["datasets"][name];
        let cols: Vec<&str> = ds["data"]["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let mut csv = cols.join(",") + "\n";
        for row in ds["data"]["rows_text"].as_array().unwrap() {
            let r: Vec<&str> = row.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
            csv.push_str(&r.join(","));
            csv.push('\n');
        }
        let path = tmp.path().join(format!("{name}.csv"));
        std::fs::write(&path, csv).unwrap();
        check_paths(&path, formula, &["--cov-type", "HC1"], &mut failures);
    }
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
}

/// Everything the second pass's kernels return for one chunk, as bits.
#[derive(Debug, PartialEq)]
struct RowOutputs {
    residuals: (usize, Vec<u64>, Vec<u64>),
    sums: Vec<u64>,
    leverages: Vec<u64>,
    weights: (bool, Vec<u64>),
    gram: Vec<u64>,
    meat: (Vec<u64>, Vec<u64>),
    clusters: (u64, Vec<u16>, Vec<u16>, Vec<u64>, Vec<u64>),
    nonzero: Vec<u64>,
    bits: (bool, Vec<u8>, Vec<u64>, Vec<u8>, Vec<u8>),
}

fn bits_of(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// One chunk: `nc` float columns, `nf` flags, codes of 5 levels, a row
/// mask, weights.
struct Chunk {
    n: usize,
    cols: Vec<Vec<f64>>,
    y: Vec<f64>,
    offset: Vec<f64>,
    flags: Vec<Vec<u8>>,
    mask: Vec<u8>,
    codes: Vec<u32>,
    ints: Vec<i64>,
    binary: Vec<i64>,
    w: Vec<f64>,
    beta: Vec<f64>,
    gamma: Vec<f64>,
}

fn chunk(n: usize, nc: usize, nf: usize, seed: u64) -> Chunk {
    let mut rng = gramfit::generate::Rng::new(seed);
    let nb = n.div_ceil(8);
    let byte = |rng: &mut gramfit::generate::Rng, p: f64| (0..8).fold(0u8, |b, l| b | u8::from(rng.uniform() < p) << l);
    let mask: Vec<u8> = (0..nb).map(|_| byte(&mut rng, 0.8)).collect();
    // Flags clear on dropped rows, as the pass makes them.
    let flags = (0..nf).map(|_| (0..nb).map(|c| byte(&mut rng, 0.4) & mask[c]).collect()).collect();
    Chunk {
        n,
        cols: (0..nc).map(|_| (0..n).map(|_| rng.normal() * 3.0 + 1.0).collect()).collect(),
        y: (0..n).map(|_| rng.normal() * 10.0 + 50.0).collect(),
        offset: (0..n).map(|_| rng.normal()).collect(),
        flags,
        mask,
        codes: (0..n).map(|_| (rng.uniform() * 6.0) as u32).collect(),
        ints: (0..n).map(|_| (rng.uniform() * 9.0) as i64 - 3).collect(),
        binary: (0..n).map(|_| i64::from(rng.uniform() < 0.5)).collect(),
        w: (0..n.div_ceil(8) * 8).map(|_| rng.uniform() * 2.0).collect(),
        beta: (0..nc).map(|_| rng.normal()).collect(),
        gamma: (0..nf).map(|_| rng.normal()).collect(),
    }
}

fn run_rows<K: gramfit::stats::portable::row_kernels::RowKernels>(k: K, d: &Chunk) -> RowOutputs {
    use gramfit::stats::patterns::{leverage_table, table_width, SPREAD};
    use gramfit::stats::portable::rows::FlagTerms;
    let (n, nc, nf) = (d.n, d.cols.len(), d.flags.len());
    let stride = n.div_ceil(8) * 8;
    let mask = Some(&d.mask[..]);
    let cols: Vec<&[f64]> = d.cols.iter().map(|c| c.as_slice()).collect();
    let flags: Vec<&[u8]> = d.flags.iter().map(|f| f.as_slice()).collect();
    let pats = k.row_patterns(&flags, n);
    let terms = FlagTerms::new(&d.gamma);
    let (mut full, mut kept) = (vec![0.0; stride], vec![0.0; n]);
    let flag_part = (nf > 0).then_some((&pats[..], &terms));
    let written = k.residuals(&d.y, Some(&d.offset), &cols, &d.beta, flag_part, 0.5, n, mask, &mut full, &mut kept);
    let (s, dw) = k.residual_sums(&kept[..written]);
    // B: a symmetric positive matrix in kernel order (columns, flags, 1),
    // scaled so that most leverages fall inside (0, 1) and the robust
    // weights below are not all the leverage-one zero.
    let m = nc + nf + 1;
    let scale = 0.02 / m as f64;
    let bk: Vec<f64> =
        (0..m * m).map(|i| scale * if i / m == i % m { 1.0 } else { 0.1 / (1.0 + (i / m + i % m) as f64) }).collect();
    let table = leverage_table(&bk, nc, nf, true);
    let mut h = vec![0.0; stride];
    k.leverages(&cols, &bk, m, &pats, table.as_slice(), n, mask, &mut h);
    let g = 3;
    let code_column: Vec<u32> = vec![0, 1, 2, 3, 3];
    let fixed: Vec<f64> = (0..g << nf).map(|i| 1e-4 * (i % 97) as f64).collect();
    let by_column: Vec<f64> = (0..g * nc).map(|i| 0.002 * i as f64 - 0.01).collect();
    k.add_level_leverage(&d.codes, (&code_column, g), (&pats, nf), &cols, &fixed, &by_column, n, mask, &mut h);
    let mut w = vec![0.0; stride];
    let lev_one = k.robust_weights(&full, &h, true, &mut w);
    let mut gram = vec![0.0; nc * nc];
    k.gram_lower_cols(&cols, n, mask, Some(&d.w), &mut gram);
    let width = table_width(nc);
    let (mut spread, mut cc) = (vec![0.0; SPREAD * 256 * width * 8], vec![0.0; nc * nc]);
    k.meat_sums(&cols, &pats, n, mask, &d.w, &mut spread, &mut cc);
    let levels: Vec<u32> = vec![2, 0, 1, 4, 3];
    let bits_main = nf / 2;
    let (mut index, mut side, mut wc) = (vec![0u16; stride], vec![0u16; stride], vec![0.0; stride]);
    let with =
        k.cluster_rows(&d.codes, &levels, &pats, &full, (nf, bits_main), n, mask, &mut index, &mut side, &mut wc);
    let mut by = vec![0.0; (5 << bits_main) * width * 8];
    k.pattern_sums(&cols, &index, 5 << bits_main, n, mask, Some(&wc), &mut by);
    let nonzero = cols.iter().map(|c| k.count_nonzero_masked(c, n, mask)).collect();
    let mut bb = vec![0u8; n.div_ceil(8)];
    let binary = k.binary_bits_i64(&d.binary, mask, &mut bb);
    let mut conv = vec![0.0; stride];
    k.convert_i64(&d.ints, &mut conv);
    let mut eq = vec![0u8; n.div_ceil(8)];
    k.equal_bits_u32(&d.codes, 2, n, mask, &mut eq);
    RowOutputs {
        residuals: (written, bits_of(&full), bits_of(&kept[..written])),
        sums: bits_of(&[s[0], s[1], s[2], s[3], dw]),
        leverages: bits_of(&h),
        weights: (lev_one, bits_of(&w)),
        gram: bits_of(&gram),
        meat: (bits_of(&spread), bits_of(&cc)),
        clusters: (with, index, side, bits_of(&wc), bits_of(&by)),
        nonzero,
        bits: (binary, bb, bits_of(&conv), eq, pats),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// The second pass's kernels return the portable kernels' bits on every
    /// instruction set this CPU has — lengths around a vector's width and a
    /// block's, up to 10 columns (past the AVX-512 kernels' unrolled
    /// shapes) and 16–17 (past the AVX2 leverages' 15: the portable build)
    /// and 8 flags.
    #[test]
    #[cfg_attr(not(gramfit_x86), allow(unused_variables))]
    fn row_kernels_return_the_portable_bits(
        n in proptest::prop_oneof![0usize..20, 60usize..70, 500usize..700],
        nc in proptest::prop_oneof![0usize..11, 16usize..18],
        nf in 0usize..=8,
        seed in proptest::prelude::any::<u64>(),
    ) {
        use gramfit::stats::portable::Portable;
        let d = chunk(n, nc, nf, seed);
        let reference = run_rows(Portable, &d);
        #[cfg(gramfit_x86)]
        if let Some(k) = gramfit::isa::Avx2::for_level(Level::Avx2) {
            proptest::prop_assert_eq!(&run_rows(k, &d), &reference, "AVX2");
        }
        #[cfg(gramfit_x86)]
        if let Some(k) = gramfit::isa::Avx512::for_level(Level::Avx512) {
            proptest::prop_assert_eq!(&run_rows(k, &d), &reference, "AVX-512");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    /// The gram of a wide block (24 columns or more: the AVX-512 kernel
    /// sweeps it in row blocks, keeping each tile's sums between blocks)
    /// is the portable kernel's bits, with and without a mask and weights,
    /// on values whose sums round (so that any change of order shows).
    #[test]
    #[cfg_attr(not(gramfit_x86), allow(unused_variables))]
    fn wide_grams_return_the_portable_bits(
        n in proptest::prop_oneof![1usize..20, 250usize..270, 500usize..1100],
        nc in 24usize..40,
        masked in proptest::prelude::any::<bool>(),
        weighted in proptest::prelude::any::<bool>(),
        seed in proptest::prelude::any::<u64>(),
    ) {
        use gramfit::stats::portable::row_kernels::RowKernels;
        use gramfit::stats::portable::Portable;
        let d = chunk(n, nc, 0, seed);
        let cols: Vec<&[f64]> = d.cols.iter().map(|c| c.as_slice()).collect();
        let mask = masked.then_some(d.mask.as_slice());
        let w = weighted.then_some(d.w.as_slice());
        let gram = |k: &dyn Fn(&mut [f64])| {
            let mut out = vec![0.0; nc * nc];
            k(&mut out);
            out.iter().map(|v| v.to_bits()).collect::<Vec<u64>>()
        };
        let reference = gram(&|o| Portable.gram_lower_cols(&cols, n, mask, w, o));
        #[cfg(gramfit_x86)]
        if let Some(k) = gramfit::isa::Avx2::for_level(Level::Avx2) {
            proptest::prop_assert_eq!(&gram(&|o| k.gram_lower_cols(&cols, n, mask, w, o)), &reference, "AVX2");
        }
        #[cfg(gramfit_x86)]
        if let Some(k) = gramfit::isa::Avx512::for_level(Level::Avx512) {
            proptest::prop_assert_eq!(&gram(&|o| k.gram_lower_cols(&cols, n, mask, w, o)), &reference, "AVX-512");
        }
    }
}

/// Everything the first pass's in-place kernels return for one chunk.
#[derive(Debug, PartialEq)]
struct ScanOutputs {
    scans: Vec<(bool, bool, [u64; 3], bool)>,
    converted: ([u64; 3], bool, Vec<u64>),
    nonzero_bits: Vec<u8>,
    cross: Vec<u64>,
    gram: Vec<u64>,
    levels: (Vec<u64>, Vec<u64>),
    flags: Vec<u64>,
    ones: u64,
}

fn stats_bits(s: &gramfit::stats::columns::ColumnStats) -> [u64; 3] {
    [s.max_abs.to_bits(), s.sum.to_bits(), s.nonzero.to_bits()]
}

fn run_scans<K: gramfit::stats::portable::scans::ScanKernels>(k: K, d: &Chunk, whole: &[Vec<f64>]) -> ScanOutputs {
    use gramfit::stats::columns::LevelColumn;
    let n = d.n;
    let mask = Some(&d.mask[..]);
    // Whole numbers and halves (exact sums: the value every order gives),
    // and the chunk's normal draws (only the fraction test is compared).
    let scans = whole
        .iter()
        .map(|c| {
            let (fraction, st) = k.scan_masked(c, mask);
            (fraction, st.binary, stats_bits(&st), k.halves_masked(c, mask))
        })
        .chain(d.cols.iter().map(|c| (k.scan_masked(c, mask).0, false, [0; 3], k.halves_masked(c, mask))))
        .collect();
    let mut out = vec![0.0; n.div_ceil(8) * 8];
    let st = k.convert_i64_masked(&d.ints, mask, &mut out);
    let mut nonzero_bits = vec![0u8; n.div_ceil(8) * whole.len()];
    for (c, b) in whole.iter().zip(nonzero_bits.chunks_mut(n.div_ceil(8).max(1))) {
        k.nonzero_bits_masked(c, mask, b);
    }
    let cols: Vec<&[f64]> = whole.iter().map(|c| c.as_slice()).collect();
    let bins: Vec<&[u8]> = d.flags.iter().map(|f| f.as_slice()).collect();
    let mut cross = vec![0.0; bins.len() * cols.len()];
    k.bits_by_cols(&bins, &cols, n, mask, &mut cross);
    let mut gram = vec![0.0; cols.len() * cols.len()];
    k.gram_exact(&cols, n, mask, &mut gram);
    let level_cols: Vec<LevelColumn<'_>> =
        cols.iter().map(|c| LevelColumn::F64(c)).chain(bins.iter().map(|b| LevelColumn::Bits(b))).collect();
    let (mut sums, mut counts) = (vec![0.0; 6 * level_cols.len()], vec![0u64; 6]);
    k.level_sums(&d.codes, 6, &level_cols, n, mask, &mut sums, &mut counts);
    let pats = k.row_patterns(&bins, n);
    let index: Vec<u16> = d.codes.iter().map(|&c| c as u16).collect();
    let mut flags = vec![0.0; 6 * 8];
    k.flag_counts(&index, &pats, 6, n, &mut flags);
    let ones = match (bins.first(), bins.last()) {
        (Some(a), Some(b)) => k.and_ones(a, b),
        _ => 0,
    };
    ScanOutputs {
        scans,
        converted: (stats_bits(&st), st.binary, bits_of(&out)),
        nonzero_bits,
        cross: bits_of(&cross),
        gram: bits_of(&gram),
        levels: (bits_of(&sums), counts),
        flags: bits_of(&flags),
        ones,
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// The first pass's in-place kernels return the portable kernels'
    /// values on every instruction set this CPU has, where the first pass
    /// uses them: sums of whole numbers and halves (exact in any order),
    /// and the fraction tests on any values.
    #[test]
    #[cfg_attr(not(gramfit_x86), allow(unused_variables))]
    fn scan_kernels_return_the_portable_values(
        n in proptest::prop_oneof![0usize..20, 60usize..70, 500usize..700],
        nc in 0usize..6,
        nf in 0usize..=8,
        seed in proptest::prelude::any::<u64>(),
    ) {
        use gramfit::stats::portable::Portable;
        let d = chunk(n, nc, nf, seed);
        let mut rng = gramfit::generate::Rng::new(seed ^ 0x5eed);
        let whole: Vec<Vec<f64>> = (0..4)
            .map(|j| (0..n).map(|_| match j {
                0 => (rng.uniform() * 20.0).floor() - 5.0,
                1 => (rng.uniform() * 9.0).floor() * 0.5,
                2 => f64::from(u8::from(rng.uniform() < 0.3)),
                _ => (rng.uniform() * 4000.0).floor(),
            }).collect())
            .collect();
        let reference = run_scans(Portable, &d, &whole);
        #[cfg(gramfit_x86)]
        if let Some(k) = gramfit::isa::Avx2::for_level(Level::Avx2) {
            proptest::prop_assert_eq!(&run_scans(k, &d, &whole), &reference, "AVX2");
        }
        #[cfg(gramfit_x86)]
        if let Some(k) = gramfit::isa::Avx512::for_level(Level::Avx512) {
            proptest::prop_assert_eq!(&run_scans(k, &d, &whole), &reference, "AVX-512");
        }
    }
}

/// `halves_masked` looks at its answer every few groups of rows and stops
/// at the first non-half: on every level it still answers for every kept
/// row — one non-half anywhere (the first row, either side of a look, the
/// last row), kept or masked out, among halves and whole numbers.
#[test]
fn the_halves_test_answers_for_every_row_on_every_level() {
    use gramfit::stats::portable::scans::{ScanKernels, HALVES_STEP};
    use gramfit::stats::portable::Portable;
    fn check<K: ScanKernels>(k: K, name: &str) {
        let step = 8 * HALVES_STEP;
        for n in [1, 7, 8, step - 1, step, step + 1, 3 * step + 5, 1000] {
            let halves: Vec<f64> = (0..n).map(|i| (i % 7) as f64 * 0.5 - 1.0).collect();
            let mut mask = vec![0xffu8; n.div_ceil(8)];
            assert!(!k.halves_masked(&halves, None), "{name}: n {n}: halves");
            for at in [0, 1, step - 1, step, step + 1, n / 2, n - 1].into_iter().filter(|&at| at < n) {
                let mut col = halves.clone();
                col[at] = 0.25 + at as f64;
                assert!(k.halves_masked(&col, None), "{name}: n {n}: a quarter at {at}");
                assert!(k.halves_masked(&col, Some(&mask)), "{name}: n {n}: a kept quarter at {at}");
                mask[at / 8] &= !(1 << (at % 8));
                assert!(!k.halves_masked(&col, Some(&mask)), "{name}: n {n}: the quarter at {at} masked out");
                mask[at / 8] |= 1 << (at % 8);
            }
        }
    }
    check(Portable, "portable");
    #[cfg(gramfit_x86)]
    if let Some(k) = gramfit::isa::Avx2::for_level(Level::Avx2) {
        check(k, "AVX2");
    }
    #[cfg(gramfit_x86)]
    if let Some(k) = gramfit::isa::Avx512::for_level(Level::Avx512) {
        check(k, "AVX-512");
    }
}
