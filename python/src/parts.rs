//! A fit in parts from Python: the `Accumulator`'s and the Spark and Dask
//! fits' building blocks over `gramfit::app::parts` — a part's first pass
//! as a `State`, states merged in the order given, a part's second-pass
//! sums as bytes, and the parts' sums applied to the merged state. A
//! `State`'s bytes are a state file's bytes (`gramfit update`, `summary`,
//! `merge` read them).

use clap::Parser;
use gramfit::cli::{Cli, Command, FitArgs, ReportArgs};
use gramfit::state;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::Path;

use crate::tables::{lend_all, with_inputs};
use crate::{run_interruptibly, GramfitError, Report};

fn error(e: impl std::fmt::Display) -> PyErr {
    GramfitError::new_err(e.to_string())
}

/// A fit's sufficient statistics (a state file's content).
#[pyclass(frozen, module = "gramfit._gramfit", name = "State")]
pub struct PyState {
    pub inner: state::State,
}

#[pymethods]
impl PyState {
    /// A state from a state file's bytes (any version this build reads).
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: Vec<u8>) -> PyResult<PyState> {
        let st = py.detach(|| state::decode(&data, Path::new("<bytes>"))).map_err(error)?;
        Ok(PyState { inner: st })
    }

    /// The state file's bytes (format version 5).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = py.detach(|| state::encode(&self.inner));
        PyBytes::new(py, &bytes)
    }

    /// Write the state file atomically.
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        py.detach(|| state::save(&self.inner, &path)).map_err(error)
    }

    /// `states` merged in the order given (see `gramfit merge`; a factor
    /// summed densely is refused past 2,000 levels); `names`
    /// (one per state) are what messages call them.
    #[staticmethod]
    #[pyo3(signature = (states, names = None))]
    fn merge(py: Python<'_>, states: Vec<PyRef<'_, PyState>>, names: Option<Vec<String>>) -> PyResult<PyState> {
        let names = names.unwrap_or_else(|| (1..=states.len()).map(|i| format!("state {i}")).collect());
        if names.len() != states.len() {
            return Err(pyo3::exceptions::PyValueError::new_err("one name per state"));
        }
        let owned: Vec<(String, state::State)> =
            names.into_iter().zip(states.iter().map(|s| s.inner.clone())).collect();
        let merged = py.detach(|| gramfit::app::merge_parts(owned)).map_err(error)?;
        Ok(PyState { inner: merged })
    }

    /// The report of the state (`argv`: a `gramfit summary` command line
    /// whose state argument is ignored).
    fn report(&self, py: Python<'_>, argv: Vec<String>) -> PyResult<Report> {
        let report = report_args(&argv)?;
        let inner = py.detach(|| gramfit::app::state_report(&self.inner, &report)).map_err(error)?;
        Ok(Report { inner })
    }

    /// The model's formula, weights and missing-value policy.
    fn model(&self) -> (String, Option<String>, String) {
        let m = &self.inner.model;
        (m.formula.clone(), m.weights.clone(), format!("{:?}", m.missing).to_lowercase())
    }

    /// Rows in the statistics.
    #[getter]
    fn nobs(&self) -> u64 {
        self.inner.accumulator.stats.nobs()
    }

    /// The column of the factor the statistics estimate by blocks, if any.
    #[getter]
    fn blocks(&self) -> Option<String> {
        let st = &self.inner;
        let term = st.absorbed.as_ref()?.estimated_term?;
        let model = gramfit::factors::estimated::estimated_model(&st.model, &st.column_types, term).ok()?;
        Some(model.2.column)
    }
}

fn fit_args(argv: &[String]) -> PyResult<FitArgs> {
    let cli = Cli::try_parse_from(argv).map_err(error)?;
    match cli.command {
        Command::Fit(a) => Ok(a),
        _ => Err(GramfitError::new_err("expected a `gramfit fit` command line")),
    }
}

fn report_args(argv: &[String]) -> PyResult<ReportArgs> {
    let cli = Cli::try_parse_from(argv).map_err(error)?;
    match cli.command {
        Command::Summary(a) => Ok(a.report),
        _ => Err(GramfitError::new_err("expected a `gramfit summary` command line")),
    }
}

/// The first pass over `tables` (data, label) and the inputs of `argv` (a
/// `gramfit fit` command line): a part's state. `row_groups` (start, end):
/// only those row groups of the Parquet inputs; `blocks`: the column of
/// a factor to estimate by blocks (every part of a fit alike).
#[pyfunction]
#[pyo3(signature = (argv, tables, row_groups = None, blocks = None))]
pub fn first_pass(
    py: Python<'_>,
    argv: Vec<String>,
    tables: Vec<(Bound<'_, PyAny>, String)>,
    row_groups: Option<(usize, usize)>,
    blocks: Option<String>,
) -> PyResult<PyState> {
    let lent = lend_all(tables)?;
    let a = fit_args(&with_inputs(&argv, &lent))?;
    let groups = row_groups.map(|(s, e)| s..e);
    let st = run_interruptibly(py, move || match &blocks {
        Some(column) => gramfit::app::first_pass_by_blocks(&a, groups, column),
        None => gramfit::app::first_pass(&a, groups),
    })?
    .map_err(error)?;
    drop(lent);
    Ok(PyState { inner: st })
}

/// The columns of the factors of `argv`'s model (read from `tables`, or
/// the inputs of `argv`) that a fit in parts may estimate by blocks.
#[pyfunction]
pub fn block_candidates(
    py: Python<'_>,
    argv: Vec<String>,
    tables: Vec<(Bound<'_, PyAny>, String)>,
) -> PyResult<Vec<String>> {
    columns_of(py, argv, tables, gramfit::app::block_candidates)
}

/// The number of levels past which a factor is estimated by blocks (300,
/// or `GRAMFIT_DENSE_LEVELS`).
#[pyfunction]
pub fn dense_levels() -> usize {
    gramfit::factors::estimated::dense_levels()
}

/// The first pass over one group's rows (`tables`, holding one level of
/// the column `by`): a state that records its group, as `gramfit fit --by
/// COL --save` writes one.
#[pyfunction]
pub fn group_first_pass(
    py: Python<'_>,
    argv: Vec<String>,
    tables: Vec<(Bound<'_, PyAny>, String)>,
    by: String,
) -> PyResult<PyState> {
    let lent = lend_all(tables)?;
    let a = fit_args(&with_inputs(&argv, &lent))?;
    let st = run_interruptibly(py, move || gramfit::app::group_first_pass(&a, &by))?.map_err(error)?;
    drop(lent);
    Ok(PyState { inner: st })
}

/// Where a group's state goes when `pattern` is given (a directory, a
/// pattern with `{group}`, or a path that gets the level before its
/// extension): the rule of `gramfit fit --by COL --save PATTERN`.
#[pyfunction]
pub fn group_path(pattern: std::path::PathBuf, level: &str) -> String {
    gramfit::grouped::group_path(&pattern, level, "gramfit").to_string_lossy().into_owned()
}

/// The second pass's sums over a part (`tables` and `argv`'s inputs) with
/// the merged fit `state`'s β, as bytes; `argv`'s `--cov-type` and
/// `--cluster` say what is accumulated; `row_groups` as in `first_pass`.
#[pyfunction]
#[pyo3(signature = (state, argv, tables, row_groups = None))]
pub fn residual_part<'py>(
    py: Python<'py>,
    state: Py<PyState>,
    argv: Vec<String>,
    tables: Vec<(Bound<'py, PyAny>, String)>,
    row_groups: Option<(usize, usize)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let lent = lend_all(tables)?;
    let a = fit_args(&with_inputs(&argv, &lent))?;
    let groups = row_groups.map(|(s, e)| s..e);
    let part = run_interruptibly(py, move || {
        gramfit::app::residual_part(&state.get().inner, &a, groups).map(|s| gramfit::app::encode_residual_part(&s))
    })?
    .map_err(error)?;
    drop(lent);
    Ok(PyBytes::new(py, &part))
}

/// `state` with the parts' second-pass sums (merged in the order given:
/// row order) as its second pass (an absorbed model's state keeps none),
/// and its report; `argv` is a `gramfit
/// summary` command line (its covariance options must be those the parts
/// were accumulated for).
#[pyfunction]
pub fn finish(py: Python<'_>, state: &PyState, parts: Vec<Vec<u8>>, argv: Vec<String>) -> PyResult<(PyState, Report)> {
    let report = report_args(&argv)?;
    let mut st = state.inner.clone();
    let inner = py
        .detach(|| -> Result<_, gramfit::app::AppError> {
            let parts = parts.iter().map(|p| gramfit::app::decode_residual_part(p)).collect::<Result<Vec<_>, _>>()?;
            gramfit::app::finish_parts(&mut st, &parts, &report)
        })
        .map_err(error)?;
    Ok((PyState { inner: st }, Report { inner }))
}

/// The Parquet files `paths` (files, directories, globs) expand to, each
/// with its row groups' row counts: the units a distributed fit of files
/// hands out as tasks.
#[pyfunction]
pub fn parquet_row_groups(py: Python<'_>, paths: Vec<String>) -> PyResult<Vec<(String, Vec<u64>)>> {
    use gramfit::source::{self, SourceKind};
    py.detach(|| {
        let mut out = Vec::new();
        for input in source::expand(&paths).map_err(error)? {
            if input.kind != SourceKind::Parquet {
                return Err(GramfitError::new_err(format!(
                    "{}: a fit of files in parts reads Parquet files (row groups are its tasks); read other formats into a DataFrame",
                    input.display()
                )));
            }
            let meta = source::parquet_metadata(&input).map_err(error)?;
            let rows = meta.metadata().row_groups().iter().map(|g| g.num_rows().max(0) as u64).collect();
            out.push((input.path.to_string_lossy().into_owned(), rows));
        }
        Ok(out)
    })
}

/// The columns a fit of `tables` (an empty table with the data's schema
/// will do) under `argv` reads: what a distributed fit selects first.
#[pyfunction]
pub fn model_columns(
    py: Python<'_>,
    argv: Vec<String>,
    tables: Vec<(Bound<'_, PyAny>, String)>,
) -> PyResult<Vec<String>> {
    columns_of(py, argv, tables, gramfit::app::model_columns)
}

/// Columns `f` finds for a fit of `tables` under `argv` (the tables lent
/// for the call).
fn columns_of(
    py: Python<'_>,
    argv: Vec<String>,
    tables: Vec<(Bound<'_, PyAny>, String)>,
    f: fn(&FitArgs) -> Result<Vec<String>, gramfit::app::AppError>,
) -> PyResult<Vec<String>> {
    let lent = lend_all(tables)?;
    let a = fit_args(&with_inputs(&argv, &lent))?;
    let columns = py.detach(|| f(&a)).map_err(error)?;
    drop(lent);
    Ok(columns)
}

/// The rows a second-pass part's sums cover (a check that a partition
/// held the same rows in both passes).
#[pyfunction]
pub fn residual_part_rows(part: Vec<u8>) -> PyResult<u64> {
    Ok(gramfit::app::decode_residual_part(&part).map_err(error)?.rows())
}
