//! The kernels never read or write past a column's end. Each input is laid
//! out to end exactly where an inaccessible page begins, so an access past
//! it faults (the test process dies with SIGSEGV) instead of reading
//! whatever follows — at lengths 0, 1, a vector's width ± 1, four vectors
//! ± 1 and a 64-row block ± 1, through the entry points (every path the
//! forced instruction set runs), each AVX-512 kernel the in-place passes
//! call and each hand-written AVX2 kernel. Results are checked against the
//! plain sums where that is cheap; the other calls are checked by
//! returning at all.

use gramfit::stats::columns::{ColumnRef, SourceColumn};
use gramfit::stats::dyadic::ColumnScan;
use gramfit::stats::kernel::{raw_moments, raw_moments_compensated, raw_moments_masked, raw_moments_portable};

const LENGTHS: [usize; 17] = [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129];

/// A copy of a slice whose last element ends where a `PROT_NONE` page
/// begins.
struct Guarded<T> {
    map: *mut libc::c_void,
    map_len: usize,
    data: *mut T,
    len: usize,
}

impl<T: Copy> Guarded<T> {
    fn new(values: &[T]) -> Guarded<T> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let bytes = std::mem::size_of_val(values);
        let data_pages = bytes.div_ceil(page).max(1);
        let map_len = (data_pages + 1) * page;
        // SAFETY: an anonymous private mapping, checked below; the guard
        // page is the last one of it.
        let map = unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(map, libc::MAP_FAILED, "mmap");
            let guard = map.cast::<u8>().add(data_pages * page);
            assert_eq!(libc::mprotect(guard.cast(), page, libc::PROT_NONE), 0, "mprotect");
            map
        };
        // SAFETY: `bytes` fit before the guard page, and the start is
        // aligned for `T` (the page is, and `bytes` is a multiple of its size).
        let data = unsafe {
            let data = map.cast::<u8>().add(data_pages * page - bytes).cast::<T>();
            std::ptr::copy_nonoverlapping(values.as_ptr(), data, values.len());
            data
        };
        Guarded { map, map_len, data, len: values.len() }
    }

    fn get(&self) -> &[T] {
        // SAFETY: `len` initialised values at `data`, alive with `self`.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }

    #[cfg_attr(not(gramfit_x86), allow(dead_code))]
    fn get_mut(&mut self) -> &mut [T] {
        // SAFETY: as above, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }
}

impl<T> Drop for Guarded<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// Deterministic columns of `n` rows: whole numbers, halves, a 0/1 column
/// as `i64` and as bits, level codes, and a row mask dropping every third
/// row.
struct Rows {
    whole: Vec<f64>,
    halves: Vec<f64>,
    ints: Vec<i64>,
    flag: Vec<i64>,
    flag_bits: Vec<u8>,
    #[cfg_attr(not(gramfit_x86), allow(dead_code))]
    codes: Vec<u32>,
    kept: Vec<bool>,
    mask: Vec<u8>,
}

fn rows(n: usize) -> Rows {
    let kept: Vec<bool> = (0..n).map(|r| r % 3 != 1).collect();
    let flag: Vec<i64> = (0..n).map(|r| i64::from(r % 5 < 2)).collect();
    let bits_of = |on: &dyn Fn(usize) -> bool| -> Vec<u8> {
        (0..n.div_ceil(8))
            .map(|c| (0..8).filter(|b| c * 8 + b < n && on(c * 8 + b)).fold(0u8, |m, b| m | 1 << b))
            .collect()
    };
    Rows {
        whole: (0..n).map(|r| (r * 7 % 13) as f64 - 4.0).collect(),
        halves: (0..n).map(|r| (r * 5 % 9) as f64 * 0.5).collect(),
        ints: (0..n).map(|r| (r * 3 % 11) as i64 - 2).collect(),
        flag_bits: bits_of(&|r| flag[r] == 1),
        flag,
        codes: (0..n).map(|r| (r % 4) as u32).collect(),
        mask: bits_of(&|r| kept[r]),
        kept,
    }
}

/// The entry points: the dispatched first-pass kernels and scans on
/// guarded columns agree with the portable and compensated loops.
#[test]
fn entry_points_stay_within_their_columns() {
    for n in LENGTHS {
        let d = rows(n);
        let (whole, halves) = (Guarded::new(&d.whole), Guarded::new(&d.halves));
        let (ints, flag, flag_bits) = (Guarded::new(&d.ints), Guarded::new(&d.flag), Guarded::new(&d.flag_bits));
        let mask = Guarded::new(&d.mask);
        let cols = [ColumnRef::plain(whole.get()), ColumnRef::plain(halves.get())];
        let fast = raw_moments(&cols, None);
        let portable = raw_moments_portable(&cols, None);
        assert_eq!((fast.s1, fast.s2), (portable.s1, portable.s2), "n {n}");
        for integral in [false, true] {
            let scan = ColumnScan::of(whole.get(), integral);
            assert_eq!(scan.nonzero, d.whole.iter().filter(|&&x| x != 0.0).count() as u64, "n {n}");
        }
        let sources = [
            SourceColumn::F64(whole.get()),
            SourceColumn::I64(ints.get()),
            SourceColumn::I64(flag.get()),
            SourceColumn::Bits(flag_bits.get()),
            SourceColumn::F64(halves.get()),
        ];
        for m in [None, Some(mask.get())] {
            let Some(got) = raw_moments_masked(&sources, n, m) else { continue };
            let keep = |r: usize| m.is_none() || d.kept[r];
            let dense: Vec<Vec<f64>> = [
                d.whole.clone(),
                d.ints.iter().map(|&x| x as f64).collect(),
                d.flag.iter().map(|&x| x as f64).collect(),
                d.flag.iter().map(|&x| x as f64).collect(),
                d.halves.clone(),
            ]
            .into_iter()
            .map(|c| (0..n).filter(|&r| keep(r)).map(|r| c[r]).collect())
            .collect();
            let refs: Vec<ColumnRef<'_>> = dense.iter().map(|c| ColumnRef::plain(c)).collect();
            let want = raw_moments_compensated(&refs, None);
            assert_eq!((got.sum_w, got.s1, got.s2), (want.sum_w, want.s1, want.s2), "n {n}, mask {}", m.is_some());
        }
    }
}

/// Each AVX-512 kernel of the in-place passes, on guarded inputs and
/// outputs of exactly the length its contract names.
#[cfg(gramfit_x86)]
#[test]
fn avx512_kernels_stay_within_their_slices() {
    use gramfit::stats::patterns::{leverage_table, table_width, Table, SPREAD};
    use gramfit::stats::x86::avx512::{self, patterns};
    if !crate::common::cpu_has(gramfit::isa::Level::Avx512, "the AVX-512 kernels") {
        return;
    }
    for n in LENGTHS {
        let d = rows(n);
        let stride = n.div_ceil(8) * 8;
        let (x0, x1) = (Guarded::new(&d.whole), Guarded::new(&d.halves));
        let y = Guarded::new(&d.halves.iter().map(|v| v * 3.0 + 1.0).collect::<Vec<_>>());
        let mask = Guarded::new(&d.mask);
        let flag_bits = Guarded::new(&d.flag_bits);
        let codes = Guarded::new(&d.codes);
        let xs = [x0.get(), x1.get()];
        for m in [None, Some(mask.get())] {
            let kept_rows = (0..n).filter(|&r| m.is_none() || d.kept[r]).count();
            // SAFETY (every call below): the CPU has AVX-512 (checked
            // above); every slice has the length the kernel's contract
            // names, and no more.
            unsafe {
                let pats = Guarded::new(&patterns::row_patterns(&[flag_bits.get()], n));
                let terms = gramfit::stats::portable::rows::FlagTerms::new(&[0.5]);
                let (mut full, mut kept) = (Guarded::new(&vec![0.0; stride]), Guarded::new(&vec![0.0; n]));
                let k = avx512::residuals_masked_avx512(
                    y.get(),
                    None,
                    &xs,
                    &[1.0, -2.0],
                    Some((pats.get(), &terms)),
                    0.25,
                    n,
                    m,
                    full.get_mut(),
                    kept.get_mut(),
                );
                assert_eq!(k, kept_rows, "n {n}");
                let e = Guarded::new(&kept.get()[..k]);
                let (sums, _) = avx512::residual_sums_avx512(e.get());
                let plain: f64 = e.get().iter().sum();
                assert!((sums[0] - plain).abs() <= 1e-9 * (1.0 + plain.abs()), "n {n}");
                let nonzero = avx512::count_nonzero_masked_avx512(x0.get(), n, m);
                let want = (0..n).filter(|&r| (m.is_none() || d.kept[r]) && d.whole[r] != 0.0).count() as u64;
                assert_eq!(nonzero, want, "n {n}");
                let w = Guarded::new(&vec![1.5; n]);
                let mut cc = Guarded::new(&[0.0; 4]);
                avx512::gram_lower_cols_avx512(&xs, n, m, Some(w.get()), cc.get_mut());
                let mut eq = Guarded::new(&vec![0u8; n.div_ceil(8)]);
                avx512::equal_bits_u32_avx512(codes.get(), 2, n, m, eq.get_mut());
                let (mut h, mut hw) = (Guarded::new(&vec![0.0; stride]), Guarded::new(&vec![0.0; stride]));
                let bk = [1.0, 0.1, 0.2, 0.3, 0.1, 1.0, 0.1, 0.2, 0.2, 0.1, 1.0, 0.1, 0.3, 0.2, 0.1, 1.0];
                let lt = leverage_table(&bk, 2, 1, true);
                patterns::leverage_by_patterns(&xs, &bk, 4, pats.get(), lt.as_slice(), n, m, h.get_mut());
                let g = Guarded::new(&[0u32, 1]);
                let fixed = Guarded::new(&[0.1, 0.2, 0.3, 0.4]);
                let by_column = Guarded::new(&[0.5, 0.6, 0.7, 0.8]);
                patterns::add_level_leverage(
                    codes.get(),
                    (g.get(), 2),
                    (pats.get(), 1),
                    &xs,
                    fixed.get(),
                    by_column.get(),
                    n,
                    m,
                    h.get_mut(),
                );
                avx512::robust_weights_avx512(full.get(), h.get(), true, hw.get_mut());
                let width = table_width(2);
                let mut spread = Guarded::new(&vec![0.0; SPREAD * 256 * width * 8]);
                patterns::meat_sums(&xs, pats.get(), n, m, w.get(), spread.get_mut(), cc.get_mut());
                let levels = Guarded::new(&[0u32, 1, 2, 3]);
                let (mut index, mut side) = (Guarded::new(&vec![0u16; stride]), Guarded::new(&vec![0u16; stride]));
                let mut wc = Guarded::new(&vec![0.0; stride]);
                patterns::cluster_rows(
                    codes.get(),
                    levels.get(),
                    pats.get(),
                    full.get(),
                    (1, 0),
                    n,
                    m,
                    index.get_mut(),
                    side.get_mut(),
                    wc.get_mut(),
                );
                let mut table = Table::zeroed(4, width);
                patterns::pattern_sums(&xs, index.get(), 4, n, m, Some(wc.get()), table.as_mut_slice());
            }
        }
    }
}

/// Each hand-written AVX2 kernel, on guarded inputs and outputs of exactly
/// the length its contract names, against plain loops (whole numbers and
/// halves: every sum exact, so any order gives the same value).
#[cfg(gramfit_x86)]
#[test]
fn avx2_kernels_stay_within_their_slices() {
    use gramfit::stats::columns::LevelColumn;
    use gramfit::stats::x86::avx2;
    if !crate::common::cpu_has(gramfit::isa::Level::Avx2, "the AVX2 kernels") {
        return;
    }
    for n in LENGTHS {
        let d = rows(n);
        let (x0, x1) = (Guarded::new(&d.whole), Guarded::new(&d.halves));
        let mask = Guarded::new(&d.mask);
        let w = Guarded::new(&vec![1.5; n]);
        let xs = [x0.get(), x1.get()];
        for m in [None, Some(mask.get())] {
            let kept = |r: usize| m.is_none() || d.kept[r];
            let sum = |f: &dyn Fn(usize) -> f64| (0..n).filter(|&r| kept(r)).map(f).sum::<f64>();
            // SAFETY (every call below): the CPU has AVX2 and FMA (checked
            // above); every slice has the length the kernel's contract
            // names, and no more.
            unsafe {
                let (fraction, st) = avx2::scan_masked_avx2(x1.get(), m);
                assert_eq!(fraction, (0..n).any(|r| kept(r) && d.halves[r].fract() != 0.0), "n {n}");
                assert_eq!(st.sum, sum(&|r| d.halves[r]), "n {n}");
                let nonzero = (0..n).filter(|&r| kept(r) && d.halves[r] != 0.0).count() as f64;
                assert_eq!(st.nonzero, nonzero, "n {n}");
                // The flag's bits are clear on dropped rows, as the pass makes them.
                let bits: Vec<u8> =
                    d.flag_bits.iter().enumerate().map(|(c, &b)| b & m.map_or(0xff, |m| m[c])).collect();
                let bits = Guarded::new(&bits);
                let mut cross = Guarded::new(&[0.0; 2]);
                avx2::bits_by_cols_avx2(&[bits.get()], &xs, n, cross.get_mut());
                let on = |r: usize| kept(r) && d.flag[r] == 1;
                assert_eq!(cross.get()[0], sum(&|r| if on(r) { d.whole[r] } else { 0.0 }), "n {n}");
                assert_eq!(cross.get()[1], sum(&|r| if on(r) { d.halves[r] } else { 0.0 }), "n {n}");
                let codes = Guarded::new(&d.codes);
                let level_cols = [LevelColumn::F64(x0.get()), LevelColumn::Bits(bits.get())];
                let (mut sums, mut counts) = (Guarded::new(&[0.0; 8]), Guarded::new(&[0u64; 4]));
                avx2::level_sums_avx2(codes.get(), 4, &level_cols, n, m, sums.get_mut(), counts.get_mut());
                for l in 0..4 {
                    let at = |r: usize| kept(r) && d.codes[r] == l as u32;
                    assert_eq!(counts.get()[l], (0..n).filter(|&r| at(r)).count() as u64, "n {n}");
                    assert_eq!(sums.get()[2 * l], sum(&|r| if at(r) { d.whole[r] } else { 0.0 }), "n {n}");
                    assert_eq!(sums.get()[2 * l + 1], sum(&|r| if at(r) && d.flag[r] == 1 { 1.0 } else { 0.0 }));
                }
                let mut cc = Guarded::new(&[0.0; 4]);
                avx2::gram_lower_cols_avx2(&xs, n, m, Some(w.get()), cc.get_mut());
                assert_eq!(cc.get()[1], sum(&|r| 1.5 * d.whole[r] * d.halves[r]), "n {n}");
                assert_eq!(cc.get()[3], sum(&|r| 1.5 * d.halves[r] * d.halves[r]), "n {n}");
            }
        }
    }
}
