//! Arrow arrays as `f64` values with their missing rows: the type checks,
//! the finite-value checks and the runs of kept rows the block copies.

use super::block::Col;
use super::DesignError;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use std::ops::Range;

/// A column of the batch as `f64`, nulls as NaN (zero-copy for `Float64`
/// without nulls).
pub(super) fn numeric_column(batch: &RecordBatch, name: &str) -> Result<Col, DesignError> {
    let arr = batch.column_by_name(name).ok_or_else(|| DesignError::NoColumn { column: name.into() })?;
    numeric_array(arr, name)
}

/// [`numeric_column`] of an array already in hand.
pub(super) fn numeric_array(arr: &ArrayRef, name: &str) -> Result<Col, DesignError> {
    if arr.null_count() == 0 {
        // The common cases, converted in one pass without an intermediate array.
        match arr.data_type() {
            DataType::Float64 => return Ok(arr.as_primitive::<Float64Type>().values().clone()),
            DataType::Int64 => return Ok(arr.as_primitive::<Int64Type>().values().iter().map(|&v| v as f64).collect()),
            DataType::Int32 => {
                return Ok(arr
                    .as_primitive::<arrow::datatypes::Int32Type>()
                    .values()
                    .iter()
                    .map(|&v| v as f64)
                    .collect())
            }
            _ => {}
        }
    }
    let arr: ArrayRef = match arr.data_type() {
        DataType::Float64 => arr.clone(),
        DataType::Boolean => cast(arr, &DataType::Float64).map_err(|_| bad_type(name, arr, "a number"))?,
        t if t.is_numeric() => cast(arr, &DataType::Float64).map_err(|_| bad_type(name, arr, "a number"))?,
        DataType::Dictionary(_, v) if v.is_numeric() => {
            cast(arr, &DataType::Float64).map_err(|_| bad_type(name, arr, "a number"))?
        }
        _ => return Err(bad_type(name, arr, "a number")),
    };
    let a = arr.as_primitive::<Float64Type>();
    if a.null_count() == 0 {
        return Ok(a.values().clone());
    }
    let mut v = a.values().to_vec();
    for (r, x) in v.iter_mut().enumerate() {
        if a.is_null(r) {
            *x = f64::NAN;
        }
    }
    Ok(Col::from(v))
}

/// Whether every value slot of a float array is finite (null slots
/// included: decoders fill them with zeros, and a non-finite one only
/// sends the batch down the row-by-row check).
pub(super) fn all_slots_finite(arr: &dyn Array) -> bool {
    // x·0 is 0 for finite x and NaN otherwise; eight lanes of plain adds
    // vectorise where a short-circuiting test does not.
    fn fin(v: impl Iterator<Item = f64>) -> bool {
        let mut acc = [0.0f64; 8];
        for (r, x) in v.enumerate() {
            acc[r % 8] += x * 0.0;
        }
        acc.iter().sum::<f64>() == 0.0
    }
    match arr.data_type() {
        DataType::Float64 => {
            let v = arr.as_primitive::<Float64Type>().values();
            let mut acc = [0.0f64; 8];
            let mut it = v.chunks_exact(8);
            for c in &mut it {
                for l in 0..8 {
                    acc[l] += c[l] * 0.0;
                }
            }
            acc.iter().sum::<f64>() == 0.0 && fin(it.remainder().iter().copied())
        }
        DataType::Float32 => {
            fin(arr.as_primitive::<arrow::datatypes::Float32Type>().values().iter().map(|&x| x as f64))
        }
        _ => true,
    }
}

/// Value of a float array's slot as `f64` (integers are always finite).
pub(super) fn float_slot(arr: &dyn Array, r: usize) -> f64 {
    match arr.data_type() {
        DataType::Float64 => arr.as_primitive::<Float64Type>().value(r),
        DataType::Float32 => arr.as_primitive::<arrow::datatypes::Float32Type>().value(r) as f64,
        _ => 0.0,
    }
}

/// The kept rows as maximal runs of consecutive rows.
pub(super) fn runs_of_kept(missing: &[bool]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut r = 0;
    while r < missing.len() {
        if missing[r] {
            r += 1;
            continue;
        }
        let start = r;
        while r < missing.len() && !missing[r] {
            r += 1;
        }
        runs.push(start..r);
    }
    runs
}

pub(super) fn bad_type(name: &str, arr: &ArrayRef, wanted: &'static str) -> DesignError {
    // Parquet strings are read as dictionaries: name the values' type.
    let found = match arr.data_type() {
        DataType::Dictionary(_, v) => v.to_string(),
        t => t.to_string(),
    };
    DesignError::BadType { column: name.into(), found, wanted }
}
