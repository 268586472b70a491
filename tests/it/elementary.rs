//! gramfit's own elementary functions (`np.log`, `np.exp`, … in formulas)
//! against mpmath: every result on a sweep of 43,000 inputs (subnormals,
//! zeros, negatives, ±∞, NaN, values near 1, cents, powers of two and ten)
//! is one of the two doubles enclosing the exact value (faithful rounding),
//! through the scalar function and the vector loop of the instruction set
//! in force (`GRAMFIT_ISA`); and numpy's own results are at most one unit
//! in the last place away.

use gramfit::elementary::Function;
use serde_json::Value;

fn reference() -> Value {
    crate::peers::run_script("elementary_reference.py", &[], "mpmath and numpy")
}

fn double(v: &Value) -> f64 {
    f64::from_bits(u64::from_str_radix(v.as_str().unwrap(), 16).unwrap())
}

fn function(name: &str, p: &Value) -> Function {
    match name {
        "ln" => Function::Ln,
        "ln1p" => Function::Ln1p,
        "log2" => Function::Log2,
        "log10" => Function::Log10,
        "exp" => Function::Exp,
        "sqrt" => Function::Sqrt,
        "pow" => Function::Pow(double(p)),
        other => panic!("unknown function {other}"),
    }
}

/// Units in the last place between two doubles of the same sign (0 when
/// equal, both NaN, or equal infinities).
fn ulps(a: f64, b: f64) -> u64 {
    if a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) || a == b {
        return 0;
    }
    if a.is_nan() || b.is_nan() || a.is_sign_negative() != b.is_sign_negative() {
        return u64::MAX;
    }
    a.abs().to_bits().abs_diff(b.abs().to_bits())
}

#[test]
fn every_value_is_faithfully_rounded_and_within_an_ulp_of_numpy() {
    let reference = reference();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() > 40_000, "{} cases", cases.len());
    // Grouped by function, to run each through `map` (the vector build).
    let mut groups: Vec<(String, Value, Vec<[f64; 5]>)> = Vec::new();
    for c in cases {
        let c = c.as_array().unwrap();
        let (name, p) = (c[0].as_str().unwrap(), &c[1]);
        let row = [double(&c[2]), double(&c[3]), double(&c[4]), double(&c[5]), double(&c[6])];
        match groups.last_mut() {
            Some((n, q, rows)) if n == name && q == p => rows.push(row),
            _ => groups.push((name.to_string(), p.clone(), vec![row])),
        }
    }
    let (mut failures, mut numpy_far, mut nearest, mut total) = (Vec::new(), Vec::new(), 0usize, 0usize);
    for (name, p, rows) in &groups {
        let f = function(name, p);
        let xs: Vec<f64> = rows.iter().map(|r| r[0]).collect();
        let mut mapped = vec![0.0; xs.len()];
        f.map(&xs, &mut mapped);
        for (&[x, below, above, numpy, near], &m) in rows.iter().zip(&mapped) {
            let got = f.of(x);
            total += 1;
            if got.to_bits() != m.to_bits() {
                failures.push(format!("{f:?}({x:e}): of {got:e} but map {m:e}"));
            }
            let ok = ulps(got, below) == 0 || ulps(got, above) == 0;
            if !ok {
                failures.push(format!("{f:?}({x:e}) = {got:e}, not in [{below:e}, {above:e}]"));
            }
            if ulps(got, near) == 0 {
                nearest += 1;
            }
            if got.is_finite() && numpy.is_finite() && ulps(got, numpy) > 1 {
                numpy_far.push(format!("{f:?}({x:e}) = {got:e}, numpy {numpy:e}"));
            }
        }
    }
    eprintln!("{total} values: {nearest} correctly rounded");
    assert!(
        failures.is_empty(),
        "{} of {total} values wrong:\n{}",
        failures.len(),
        failures[..failures.len().min(30)].join("\n")
    );
    // "Nearly always correctly rounded", as the README says.
    assert!(nearest as f64 >= 0.999 * total as f64, "only {nearest} of {total} correctly rounded");
    assert!(
        numpy_far.is_empty(),
        "{} values more than an ulp from numpy's:\n{}",
        numpy_far.len(),
        numpy_far[..numpy_far.len().min(30)].join("\n")
    );
}

/// An argument with a low word (`np.log(x / 7)`: the quotient in
/// double-double) is rounded once, after its low word's first-order effect:
/// faithful to the exact function of `hi + lo`, through the scalar path and
/// the vector loop alike.
#[test]
fn double_double_arguments_are_faithfully_rounded() {
    let reference = reference();
    let cases = reference["dd_cases"].as_array().unwrap();
    assert!(cases.len() > 2_500, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in cases {
        let c = c.as_array().unwrap();
        let f = function(c[0].as_str().unwrap(), &c[1]);
        let (hi, lo, below, above) = (double(&c[2]), double(&c[3]), double(&c[4]), double(&c[5]));
        let got = f.of_dd(gramfit::dd::Dd { hi, lo });
        let mut mapped = [0.0];
        f.map_dd(&[hi], &[lo], &mut mapped);
        if !(ulps(got, below) == 0 || ulps(got, above) == 0) || mapped[0].to_bits() != got.to_bits() {
            failures
                .push(format!("{f:?}({hi:e} + {lo:e}) = {got:e} (map {:e}), not in [{below:e}, {above:e}]", mapped[0]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} wrong:\n{}",
        failures.len(),
        cases.len(),
        failures[..failures.len().min(30)].join("\n")
    );
}
