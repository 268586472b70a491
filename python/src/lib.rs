//! `gramfit._gramfit`: the Rust side of the Python package. It takes a
//! `gramfit fit` command line (so every option means what it means on the
//! command line), runs the fit with the GIL released (Ctrl-C stops it:
//! `KeyboardInterrupt`), and hands back the
//! report, which renders in any of the command line's formats; the
//! `gramfit` package (`python/python/gramfit`) builds the argument list and
//! shapes the results like statsmodels'.

mod parts;
mod tables;

use clap::Parser;
use gramfit::cli::{Cli, Command};
use gramfit::report::Format;
use pyo3::prelude::*;

pyo3::create_exception!(
    _gramfit,
    GramfitError,
    pyo3::exceptions::PyException,
    "An error of gramfit's: bad input, a bad option, a failed fit; the message is the command line's."
);

/// A fit's report (plain, absorbed or grouped).
#[pyclass(frozen, module = "gramfit._gramfit")]
pub(crate) struct Report {
    pub(crate) inner: gramfit::report::Report,
}

#[pymethods]
impl Report {
    /// The report as `gramfit fit --format FORMAT` prints it: "text",
    /// "json", "markdown" or "csv".
    fn render(&self, format: &str) -> PyResult<String> {
        let f = match format {
            "text" => Format::Text,
            "json" => Format::Json,
            "markdown" => Format::Markdown,
            "csv" => Format::Csv,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "format must be text, json, markdown or csv, not {other:?}"
                )))
            }
        };
        Ok(self.inner.render(f))
    }
}

/// Run `argv` (a `gramfit fit` command line, program name first) on its
/// inputs and `tables` (objects exporting Arrow streams, with the labels
/// messages give them) and return its report; errors raise
/// `GramfitError` with the command line's message.
#[pyfunction]
#[pyo3(signature = (argv, tables = Vec::new()))]
fn fit(py: Python<'_>, argv: Vec<String>, tables: Vec<(Bound<'_, PyAny>, String)>) -> PyResult<Report> {
    let lent = tables::lend_all(tables)?;
    let argv = tables::with_inputs(&argv, &lent);
    let cli = Cli::try_parse_from(&argv).map_err(|e| GramfitError::new_err(e.to_string()))?;
    let Command::Fit(args) = cli.command else {
        return Err(GramfitError::new_err("only `fit` runs through gramfit._gramfit.fit"));
    };
    let report = run_interruptibly(py, move || gramfit::app::fit_report(&args))?;
    drop(lent);
    report.map(|inner| Report { inner }).map_err(|e| GramfitError::new_err(e.to_string()))
}

/// Run `argv` (a `gramfit predict` command line, its output a file) on
/// its inputs and `tables`.
#[pyfunction]
#[pyo3(signature = (argv, tables = Vec::new()))]
fn predict(py: Python<'_>, argv: Vec<String>, tables: Vec<(Bound<'_, PyAny>, String)>) -> PyResult<()> {
    let lent = tables::lend_all(tables)?;
    // The inputs follow the state: after the program, the command and it.
    let argv = tables::with_inputs_at(&argv, 3, &lent);
    let cli = Cli::try_parse_from(&argv).map_err(|e| GramfitError::new_err(e.to_string()))?;
    let Command::Predict(args) = cli.command else {
        return Err(GramfitError::new_err("only `predict` runs through gramfit._gramfit.predict"));
    };
    let done = run_interruptibly(py, move || gramfit::app::predict(&args))?;
    drop(lent);
    done.map_err(|e| GramfitError::new_err(e.to_string()))
}

/// Whether `formula` absorbs fixed effects (`y ~ x | fe`).
#[pyfunction]
fn absorbs(formula: &str) -> PyResult<bool> {
    gramfit::formula::absorb::split_absorbed(formula)
        .map(|a| a.is_some())
        .map_err(|e| GramfitError::new_err(format!("formula: {e}")))
}

/// Run `argv` (a `gramfit summary` command line) and return the saved
/// fit's report.
#[pyfunction]
fn summary(py: Python<'_>, argv: Vec<String>) -> PyResult<Report> {
    let cli = Cli::try_parse_from(&argv).map_err(|e| GramfitError::new_err(e.to_string()))?;
    let Command::Summary(args) = cli.command else {
        return Err(GramfitError::new_err("only `summary` runs through gramfit._gramfit.summary"));
    };
    let report = py.detach(|| {
        let st = gramfit::state::load(&args.state)?;
        gramfit::app::state_report(&st, &args.report)
    });
    report.map(|inner| Report { inner }).map_err(|e| GramfitError::new_err(e.to_string()))
}

/// Run `work` on its own thread without the GIL, looking at Python's
/// signals every 50 ms: on Ctrl-C (or any signal handler that raises) the
/// work is told to stop — the flag every pass and solve polls — and the
/// handler's exception (`KeyboardInterrupt`) is raised once it has.
pub(crate) fn run_interruptibly<T: Send + 'static>(
    py: Python<'_>,
    work: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    use gramfit::interrupt::INTERRUPTED;
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    // A call stopped before must not stop this one.
    INTERRUPTED.store(false, Ordering::Relaxed);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let worker = std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    loop {
        match py.detach(|| rx.recv_timeout(Duration::from_millis(50))) {
            Ok(done) => {
                let _ = worker.join();
                return Ok(done);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if let Err(raised) = py.check_signals() {
                    INTERRUPTED.store(true, Ordering::Relaxed);
                    py.detach(|| {
                        let _ = rx.recv();
                        let _ = worker.join();
                    });
                    INTERRUPTED.store(false, Ordering::Relaxed);
                    return Err(raised);
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                // The work panicked: say so rather than hang.
                let _ = worker.join();
                return Err(GramfitError::new_err("gramfit: internal error (a panic); please report it"));
            }
        }
    }
}

#[pymodule]
fn _gramfit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GramfitError", m.py().get_type::<GramfitError>())?;
    m.add_class::<Report>()?;
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(summary, m)?)?;
    m.add_function(wrap_pyfunction!(predict, m)?)?;
    m.add_function(wrap_pyfunction!(absorbs, m)?)?;
    m.add_class::<parts::PyState>()?;
    m.add_function(wrap_pyfunction!(parts::first_pass, m)?)?;
    m.add_function(wrap_pyfunction!(parts::group_first_pass, m)?)?;
    m.add_function(wrap_pyfunction!(parts::block_candidates, m)?)?;
    m.add_function(wrap_pyfunction!(parts::dense_levels, m)?)?;
    m.add_function(wrap_pyfunction!(parts::group_path, m)?)?;
    m.add_function(wrap_pyfunction!(parts::residual_part, m)?)?;
    m.add_function(wrap_pyfunction!(parts::finish, m)?)?;
    m.add_function(wrap_pyfunction!(parts::parquet_row_groups, m)?)?;
    m.add_function(wrap_pyfunction!(parts::model_columns, m)?)?;
    m.add_function(wrap_pyfunction!(parts::residual_part_rows, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
