//! The comparators the tests rely on reject a NaN, a null and a missing
//! value: a test that compares an undefined figure must fail, not pass
//! (`NaN > tol` is false, and `f64::min` drops a NaN).

use crate::common::{json_differences, lre, rel_diff};
use serde_json::json;

#[test]
fn rel_diff_never_lets_a_nan_pass() {
    for (a, b) in [(f64::NAN, 1.0), (1.0, f64::NAN), (f64::NAN, f64::NAN)] {
        assert!(rel_diff(a, b) > 1e-8, "rel_diff({a}, {b}) passed a '> tol' test");
        assert!(
            rel_diff(a, b).partial_cmp(&1e-8) != Some(std::cmp::Ordering::Less),
            "rel_diff({a}, {b}) passed a '<= tol' test"
        );
    }
    assert_eq!(rel_diff(2.0, 2.0), 0.0);
    assert!(rel_diff(1.0, 1.0 + 1e-12) < 1e-11);
}

#[test]
fn lre_of_an_undefined_estimate_is_no_digit() {
    assert_eq!(lre(f64::NAN, 1.5), 0.0);
    assert_eq!(lre(f64::INFINITY, 1.5), 0.0);
    assert_eq!(lre(1.5, 1.5), 15.0);
    assert!((lre(1.0 + 1e-9, 1.0) - 9.0).abs() < 0.01);
}

#[test]
fn second_pass_and_statsmodels_comparators_reject_nan_and_null() {
    let mut errs = Vec::new();
    crate::second_pass::check_to("x", &json!(null), 1.0, &mut errs, false, 1e-8);
    crate::second_pass::check_to("p", &json!(null), 1e-300, &mut errs, true, 1e-8);
    crate::second_pass::check_to("y", &json!(1.0), f64::NAN, &mut errs, false, 1e-8);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(crate::statsmodels::close("z", f64::NAN, 1.0, 1e-8).is_err());
    assert!(crate::statsmodels::close_p("q", f64::NAN, 0.5).is_err());
    assert!(crate::statsmodels::close("w", 1.0, 1.0, 1e-8).is_ok());
}

#[test]
fn json_comparison_rejects_nulls_missing_keys_and_changed_bits() {
    let a = json!({"params": {"x": 1.0, "y": 2.0}, "skew": 0.5});
    assert!(json_differences(&a, &a, 0.0, &[]).is_empty());
    assert_eq!(json_differences(&a, &json!({"params": {"x": 1.0, "y": null}, "skew": 0.5}), 1e-8, &[]).len(), 1);
    assert_eq!(json_differences(&a, &json!({"params": {"x": 1.0}, "skew": 0.5}), 1e-8, &[]).len(), 1);
    assert_eq!(json_differences(&a, &json!({"params": {"x": 1.0, "y": 2.0}}), 1e-8, &[]).len(), 1);
    let next = json!({"params": {"x": 1.0, "y": 2.0000000000000004}, "skew": 0.5});
    assert_eq!(json_differences(&a, &next, 0.0, &[]).len(), 1, "bit for bit");
    assert!(json_differences(&a, &next, 1e-12, &[]).is_empty());
    assert!(json_differences(&a, &json!({"params": {"x": 1.0, "y": 2.0}, "skew": 9}), 0.0, &["skew"]).is_empty());
}
