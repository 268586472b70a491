//! Data from Python as lent tables: anything exporting the Arrow C stream
//! interface (`__arrow_c_stream__`: pyarrow tables and readers, polars
//! and pandas DataFrames, DuckDB relations) is imported without copying
//! the column buffers and lent to the library under a `memory:N` name
//! (see `gramfit::source::memory`), which goes where a file path would.

use arrow::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow::record_batch::RecordBatchReader;
use gramfit::source::memory::{self, Lent, MemoryTable};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::GramfitError;

/// Import `(data, label)` pairs and lend them; the guards withdraw the
/// tables when dropped (after the call that reads them).
pub fn lend_all(tables: Vec<(Bound<'_, PyAny>, String)>) -> PyResult<Vec<Lent>> {
    tables.into_iter().map(|(data, label)| Ok(memory::lend(import(&data, label)?))).collect()
}

/// The record batches of an object with `__arrow_c_stream__`. The stream
/// is read to its end here, with the GIL held (a stream may be produced by
/// Python code): the fit's two passes read the batches twice.
fn import(data: &Bound<'_, PyAny>, label: String) -> PyResult<MemoryTable> {
    let capsule = data.call_method0("__arrow_c_stream__")?;
    let capsule = capsule
        .cast::<PyCapsule>()
        .map_err(|_| GramfitError::new_err(format!("{label}: __arrow_c_stream__ did not return a PyCapsule")))?;
    let ptr = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    // SAFETY: the capsule holds an ArrowArrayStream (its name says so, as
    // the Arrow PyCapsule interface requires); `from_raw` moves the stream
    // out and leaves a released one, which the capsule's destructor then
    // leaves alone.
    let reader = unsafe { RecordBatchStreamReader::from_raw(ptr.as_ptr().cast::<FFI_ArrowArrayStream>()) }
        .map_err(|e| GramfitError::new_err(format!("{label}: not a readable Arrow stream: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| GramfitError::new_err(format!("{label}: reading the Arrow stream: {e}")))?;
    Ok(MemoryTable { label, schema, batches })
}

/// `argv` (program name and command first) with the lent tables' names
/// as its first inputs.
pub fn with_inputs(argv: &[String], lent: &[Lent]) -> Vec<String> {
    with_inputs_at(argv, 2, lent)
}

/// `argv` with the lent tables' names inserted at position `at` (after a
/// command's leading positional arguments, e.g. `predict STATE`).
pub fn with_inputs_at(argv: &[String], at: usize, lent: &[Lent]) -> Vec<String> {
    let mut out = argv.to_vec();
    let at = out.len().min(at);
    out.splice(at..at, lent.iter().map(|l| l.name().to_string()));
    out
}
