//! The commands: each takes parsed arguments, does its work through the
//! library and writes results to stdout (or a file) — errors go back to
//! `main` with context. One module per kind of command: `fit`
//! (a fit from files), `keep` (keeping a saved fit current: update,
//! retract, merge, diagnose), `follow` (watching a directory),
//! `inspect` (summary, design matrix, correlations); here what they share.

mod absorbed;
mod estimated;
mod fit;
mod follow;
mod inspect;
mod keep;
mod parts;
mod predict;

pub(crate) use absorbed::{accumulate as absorbed_pass, iid_report as absorbed_iid_report, LevelRun};
pub(crate) use estimated::{fit_for_job as blocks_for_job, many_levels};
pub use fit::{fit, fit_report};
pub use inspect::{corr, design, summary};
pub use keep::{diagnose, merge, retract, update};
pub(crate) use keep::{fold_into_state, lock_state, FoldOptions};
pub use parts::{
    block_candidates, decode_residual_part, encode_residual_part, finish_parts, first_pass, first_pass_by_blocks,
    group_first_pass, merge_parts, merge_states, model_columns, residual_part, ResidualPart,
};
pub use predict::predict;

use crate::cli::{EngineArgs, ReportArgs};
use crate::engine::{EngineOptions, INTERRUPTED};
use crate::model::{self, FitError, ReportOptions, Resolved};
use crate::report::{self, InputInfo};
use crate::second_pass::CovType;
use crate::state::{self, State, StateError};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

/// A command's failure: usage errors exit 2, everything else 1.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Fit(Box<FitError>),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Data(String),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<FitError> for AppError {
    fn from(e: FitError) -> Self {
        AppError::Fit(Box::new(e))
    }
}

impl AppError {
    pub fn exit_code(&self) -> i32 {
        if INTERRUPTED.load(Ordering::Relaxed) {
            return 130;
        }
        match self {
            AppError::Usage(_) => 2,
            AppError::Fit(e) if matches!(**e, FitError::Formula(_)) => 2,
            _ => 1,
        }
    }
}

pub fn engine_options(a: &EngineArgs) -> Result<EngineOptions, AppError> {
    let mut o = EngineOptions::default();
    if let Some(t) = a.threads {
        if t == 0 {
            return Err(AppError::Usage("--threads must be at least 1".into()));
        }
        o.threads = t;
    }
    if a.batch_size == 0 {
        return Err(AppError::Usage("--batch-size must be at least 1".into()));
    }
    o.batch_size = a.batch_size;
    Ok(o)
}

pub(crate) fn report_options(a: &ReportArgs) -> Result<ReportOptions, AppError> {
    if !(a.alpha > 0.0 && a.alpha < 1.0) {
        return Err(AppError::Usage(format!("--alpha must be between 0 and 1, not {}", a.alpha)));
    }
    Ok(ReportOptions { singular: a.singular, alpha: a.alpha })
}

/// Write to stdout or atomically to a file.
pub fn emit(text: &str, output: Option<&Path>) -> Result<(), AppError> {
    match output {
        Some(p) => state::write_atomic(p, text.as_bytes())?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(())
}

/// The inputs a state records, as a report lists them.
pub(crate) fn recorded_inputs(st: &State) -> Vec<InputInfo> {
    st.inputs
        .iter()
        .map(|p| InputInfo {
            path: p.path.clone(),
            rows_read: p.rows_read,
            rows_dropped: p.rows_dropped,
            ..InputInfo::default()
        })
        .collect()
}

/// A saved fit's report in the format `report` asks for.
pub(crate) fn render_state(st: &State, report: &ReportArgs) -> Result<String, AppError> {
    let r = state_report(st, report)?;
    let _exit_safe = crate::interrupt::ExitSafe::enter();
    Ok(r.render(report.format))
}

/// A saved fit's report (what `gramfit summary` prints): the library's
/// entry to a state file's results.
pub fn state_report(st: &State, report: &ReportArgs) -> Result<report::Report, AppError> {
    if st.absorbed.is_some() {
        return absorbed::state_report(st, report);
    }
    let ro = report_options(report)?;
    let resolved = Resolved::new(st.model.clone(), st.column_types.clone())?;
    let mut res = model::results_of(&resolved, &st.accumulator, &ro)?;
    match &st.residuals {
        Some(snap) => {
            if report.cov_type != CovType::Nonrobust && report.cov_type != snap.cov_type {
                return Err(AppError::Usage(format!(
                    "the state holds {} standard errors; --cov-type {} needs a new pass over the data (gramfit fit … --cov-type {})",
                    snap.cov_type.name(),
                    report.cov_type.name(),
                    report.cov_type.name()
                )));
            }
            crate::results::apply_second_pass(&mut res, snap);
        }
        None => {
            if report.cov_type != CovType::Nonrobust {
                return Err(AppError::Usage(format!(
                    "--cov-type {} needs a pass over the data; this state has none since its last change",
                    report.cov_type.name()
                )));
            }
            res.gramfit_notes.push(no_second_pass_note(false));
        }
    }
    let inputs = recorded_inputs(st);
    let mut info = model::run_info(&resolved, &st.accumulator, inputs, st.fitted_at, st.elapsed_s);
    info.full_cov = report.full_cov;
    Ok(report::Report::Plain { results: Box::new(res), info })
}

/// `--cluster` goes with `--cov-type cluster`, and only with it: given with
/// another covariance it would be read and not used.
pub(crate) fn check_cluster(cov: CovType, cluster: Option<&str>) -> Result<(), AppError> {
    match (cov, cluster) {
        (CovType::Cluster, None) => {
            Err(AppError::Usage("--cov-type cluster needs --cluster COL (the column of clusters)".into()))
        }
        (CovType::Cluster, Some(_)) | (_, None) => Ok(()),
        (other, Some(c)) => Err(AppError::Usage(format!(
            "--cluster {c} is used only with --cov-type cluster (the covariance here is {})",
            other.name()
        ))),
    }
}

pub(crate) fn no_second_pass_note(stdin: bool) -> String {
    format!(
        "Omnibus, skew, kurtosis, Jarque-Bera and Durbin-Watson need a second pass over the data, which {}.",
        if stdin { "a stream on stdin cannot have" } else { "was not run" }
    )
}
