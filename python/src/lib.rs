//! `gramfit._gramfit`: the Rust side of the Python package. It takes a
//! `gramfit fit` command line (so every option means what it means on the
//! command line), runs the fit with the GIL released, and hands back the
//! report, which renders in any of the command line's formats; the
//! `gramfit` package (`python/python/gramfit`) builds the argument list and
//! shapes the results like statsmodels'.

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
struct Report {
    inner: gramfit::report::Report,
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

/// Run `argv` (a `gramfit fit` command line, program name first) and
/// return its report; errors raise `GramfitError` with the command line's
/// message.
#[pyfunction]
fn fit(py: Python<'_>, argv: Vec<String>) -> PyResult<Report> {
    let cli = Cli::try_parse_from(&argv).map_err(|e| GramfitError::new_err(e.to_string()))?;
    let Command::Fit(args) = cli.command else {
        return Err(GramfitError::new_err("only `fit` runs through gramfit._gramfit.fit"));
    };
    let report = py.detach(|| gramfit::app::fit_report(&args)).map_err(|e| GramfitError::new_err(e.to_string()))?;
    Ok(Report { inner: report })
}

#[pymodule]
fn _gramfit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GramfitError", m.py().get_type::<GramfitError>())?;
    m.add_class::<Report>()?;
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
