//! A block of design rows: one column-major matrix with the low words of
//! derived columns beside it, its kept rows and the levels it met; value
//! buffers are reused on the thread that dropped them.

use crate::level::{ColumnKey, Level};
use arrow::buffer::ScalarBuffer;
use std::collections::HashMap;

/// Rows of one batch in design form.
///
/// The values are one column-major `nrows × keys.len()` matrix, so the gram
/// kernel multiplies it in place; derived columns evaluated in
/// double-double carry their low words beside it.
#[derive(Debug, Default)]
pub struct DesignBlock {
    pub keys: Vec<ColumnKey>,
    /// Column `j` is `values[j·nrows .. (j+1)·nrows]`.
    pub values: Vec<f64>,
    /// Low words of column `j` (`value = hi + lo`), for derived terms.
    pub lo: Vec<Option<Col>>,
    /// Column `j` holds whole numbers by construction (an integer source
    /// column, the intercept, an indicator).
    pub integral: Vec<bool>,
    pub weights: Option<Vec<f64>>,
    pub rows_in: usize,
    pub rows_dropped: usize,
    /// For each categorical factor (by index), the levels seen in the batch
    /// on non-missing values of that factor, with their row counts.
    pub levels: Vec<HashMap<Level, u64>>,
    /// The batch rows kept, when some were dropped (`None`: all kept).
    pub kept: Option<Vec<usize>>,
}

thread_local! {
    /// Value buffers of dropped blocks, reused by the next block on the
    /// same thread: a block is ~0.5 MB, and fresh allocations of that size
    /// are mapped and page-faulted each time.
    static SPARE_VALUES: std::cell::RefCell<Vec<Vec<f64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty buffer with room for `cap` values, reused when one is spare.
pub(super) fn value_buffer(cap: usize) -> Vec<f64> {
    let mut v = SPARE_VALUES.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    v.clear();
    v.reserve(cap);
    v
}

impl Drop for DesignBlock {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.values);
        if v.capacity() > 0 {
            SPARE_VALUES.with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < 4 {
                    s.push(v);
                }
            });
        }
    }
}

impl DesignBlock {
    /// Column `j`'s high words.
    pub fn col(&self, j: usize) -> &[f64] {
        let n = self.nrows();
        &self.values[j * n..(j + 1) * n]
    }
    /// Column `j` at row `r`, both words added.
    pub fn value(&self, j: usize, r: usize) -> f64 {
        self.col(j)[r] + self.lo[j].as_ref().map_or(0.0, |l| l[r])
    }
    pub fn nrows(&self) -> usize {
        self.rows_in - self.rows_dropped
    }
}

/// A column of `f64`: an Arrow buffer, so plain float columns without nulls
/// are used in place and clones are cheap.
pub type Col = ScalarBuffer<f64>;
