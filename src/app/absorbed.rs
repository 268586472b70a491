//! `gramfit fit` with absorbed fixed effects (`y ~ x | fe1 + fe2`): one
//! pass for the slopes and iid standard errors, a second for a robust or
//! clustered covariance.

use super::fit::{csv_spill, reopen_as_read, spill_note};
use super::{report_options, AppError};
use crate::cli::FitArgs;
use crate::engine::{self, EngineOptions, Progress};
use crate::factors::{
    infer_absorbed, within_fit, AbsorbAccumulator, AbsorbResiduals, AbsorbedCov, AbsorbedResults, ResidualPlan,
    WithinError, WithinFit,
};
use crate::formula::absorb::Absorbed;
use crate::formula::columns::design;
use crate::model::{self, FitError, ModelOptions, Resolved};
use crate::progress::ProgressDisplay;
use crate::report::{self, RunInfo};
use crate::second_pass::CovType;
use crate::state::State;
use std::sync::Arc;
use std::time::Instant;

/// The error for a column the input does not have, with a hint.
fn no_column(what: &str, c: &str, types: &[(String, crate::formula::SourceType)]) -> AppError {
    let hint = crate::formula::closest(c, types.iter().map(|(n, _)| n.as_str()))
        .map(|c| format!("; did you mean '{c}'?"))
        .unwrap_or_default();
    FitError::Other(format!("{what}: no column named '{c}' in the input{hint}")).into()
}

impl From<WithinError> for AppError {
    fn from(e: WithinError) -> Self {
        match e {
            WithinError::Solve(s) => FitError::Solve(s).into(),
            other => AppError::Data(other.to_string()),
        }
    }
}

pub fn fit_absorbed(a: &FitArgs, ab: Absorbed, eo: &EngineOptions) -> Result<report::Report, AppError> {
    let fe = ab.columns.join(" + ");
    for (flag, set) in [("--by", a.by.is_some()), ("--follow", a.follow.follow.is_some())] {
        if set {
            return Err(AppError::Usage(format!(
                "{flag} is not supported yet with absorbed fixed effects ('| {fe}'); put the factor in the formula as C(…) to use it"
            )));
        }
    }
    let cov = a.report.cov_type;
    check_cov(&a.report)?;
    let ro = report_options(&a.report)?;
    let csv = a.csv.options().map_err(AppError::Usage)?;
    let options = ModelOptions {
        formula: ab.formula.clone(),
        weights: a.weights.clone(),
        missing: a.missing,
        csv: csv.clone(),
        group: None,
    };
    let opened = model::open_inputs(&a.inputs, &csv)?;
    let rereadable = opened.stdin.is_none();
    let second = cov != CovType::Nonrobust;
    if second && (!rereadable || a.report.no_second_pass) {
        return Err(AppError::Usage(format!(
            "--cov-type {} needs a second pass over the data, which {} (drop it or read files)",
            cov.name(),
            if rereadable { "--no-second-pass turns off" } else { "a stream on stdin cannot have" }
        )));
    }
    let types = model::column_types(&opened, &[])?;
    let resolved = model::Resolved::new(options, types.clone())?;
    for c in &ab.columns {
        if !types.iter().any(|(n, _)| n == c) {
            return Err(no_column("fixed effect", c, &types));
        }
    }
    let cluster = cluster_column(&a.report, &ab.columns);
    if let Some(c) = cluster.as_deref().filter(|c| !types.iter().any(|(n, _)| n == c)) {
        return Err(no_column("--cluster", c, &types));
    }
    model::column_types(&opened, &absorbing_builder(&resolved, &ab.columns).source_columns())?;
    model::check_csv_text_columns(&resolved, &opened)?;
    let wait = a.lock.wait().map_err(AppError::Usage)?;
    let _lock = a.save.as_deref().map(|p| super::lock_state(p, wait)).transpose()?;
    let read = opened.inputs.clone();
    let schemas = opened.schemas.clone();
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), a.engine.quiet);
    let eo = &csv_spill(&opened, second, cluster.as_deref(), eo);
    progress.set_label(if second { "pass 1/2" } else { "pass 1/1" });
    let t0 = Instant::now();
    let (acc, inputs) = accumulate(&resolved, &ab.columns, opened, eo, &progress)?;
    let fitted_at = model::now_unix();
    let builder = absorbing_builder(&resolved, &ab.columns);
    let design = design(&resolved.spec, &acc.dense.level_sets(), acc.dense.stats.keys()).map_err(FitError::from)?;
    let weighted = resolved.options.weights.is_some();
    let fit = within_fit(&acc, &design, weighted, ro.singular, crate::factors::Singletons::Drop)?;

    let cov_of = if second {
        let (plan, b2) = residual_plan(&fit, &design, &builder, &ab.columns, cov, &cluster);
        let reopened = reopen_as_read(&read, &schemas, &csv, &inputs);
        progress.set_label("pass 2/2");
        let empty = || AbsorbResiduals::new(plan.clone());
        let (r, _) = engine::accumulate_with(reopened, &b2, &empty, eo, &progress).map_err(FitError::from)?;
        spill_note(eo);
        robust_cov(&r, cov, &cluster)?
    } else {
        AbsorbedCov::Iid
    };
    let mut res = infer_absorbed(&fit, &cov_of, ro.alpha, &resolved.spec.response.name);
    add_notes(&mut res, &acc, &ab.columns, cov);
    let elapsed_s = t0.elapsed().as_secs_f64();
    let run = LevelRun { formula: &a.formula, inputs: inputs.clone(), fitted_at, elapsed_s };
    let info = run.info(&acc, a.weights.clone(), a.report.full_cov);
    if crate::interrupt::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(AppError::Data("interrupted".into()));
    }
    if let Some(path) = &a.save {
        let mut provenance = Vec::new();
        for (input, info) in read.iter().zip(&inputs) {
            provenance.push(crate::state::growth::record(input, info)?);
        }
        let (dense, part) = acc.into_parts();
        let model = ModelOptions { formula: a.formula.clone(), ..resolved.options.clone() };
        let st = State::new(model, resolved.column_types.clone(), dense, Some(part), provenance, fitted_at, elapsed_s);
        crate::state::save(&st, path)?;
    }
    Ok(report::Report::Absorbed { results: Box::new(res), info })
}

/// An absorbed fit's covariance options, checked before any work.
pub(super) fn check_cov(report: &crate::cli::ReportArgs) -> Result<(), AppError> {
    let cov = report.cov_type;
    if matches!(cov, CovType::Hc2 | CovType::Hc3) {
        return Err(AppError::Usage(format!(
            "--cov-type {} is not available with absorbed fixed effects (it needs each row's leverage on the absorbed levels); use HC1 or cluster",
            cov.name()
        )));
    }
    if let (Some(c), false) = (&report.cluster, cov == CovType::Cluster) {
        return Err(AppError::Usage(format!(
            "--cluster {c} is used only with --cov-type cluster (the covariance here is {})",
            cov.name()
        )));
    }
    Ok(())
}

/// The cluster column of a cluster-robust covariance: `--cluster`, else
/// the first absorbed factor (fixest's and pyfixest's choice).
fn cluster_column(report: &crate::cli::ReportArgs, columns: &[String]) -> Option<String> {
    (report.cov_type == CovType::Cluster).then(|| report.cluster.clone().unwrap_or_else(|| columns[0].clone()))
}

/// The second pass of a within fit: its plan, and the builder that reads
/// the design, the absorbed columns and the cluster column.
fn residual_plan(
    fit: &WithinFit,
    design: &crate::formula::columns::Design,
    builder: &crate::design::DesignBuilder,
    columns: &[String],
    cov: CovType,
    cluster: &Option<String>,
) -> (Arc<ResidualPlan>, crate::design::DesignBuilder) {
    let plan = Arc::new(ResidualPlan::new(fit, design, columns.to_vec(), cov, cluster.clone()));
    let mut b2 = builder.clone();
    if let Some(c) = cluster.as_ref().filter(|c| !b2.extra_columns.contains(c)) {
        b2.extra_columns.push(c.clone());
    }
    (plan, b2)
}

/// The robust covariance's meat from a second pass's sums.
fn robust_cov(r: &AbsorbResiduals, cov: CovType, cluster: &Option<String>) -> Result<AbsorbedCov, AppError> {
    r.require_clusters().map_err(AppError::Data)?;
    Ok(match cluster {
        Some(c) => {
            AbsorbedCov::Cluster { column: c.clone(), groups: r.n_clusters(), meat: r.meat(), nested: r.nested() }
        }
        None => AbsorbedCov::Hetero { cov, meat: r.meat() },
    })
}

/// The second pass of a saved absorbed fit, for a fit in parts: the
/// state's within fit, the pass's plan (the covariance `report` asks for)
/// and the builder that reads a part.
pub(super) struct StateSecondPass {
    pub plan: Arc<ResidualPlan>,
    pub builder: crate::design::DesignBuilder,
    fit: WithinFit,
    acc: AbsorbAccumulator,
    resolved: Resolved,
    columns: Vec<String>,
    cluster: Option<String>,
    cov: CovType,
    ro: model::ReportOptions,
}

impl StateSecondPass {
    pub(super) fn of(st: &State, report: &crate::cli::ReportArgs) -> Result<Self, AppError> {
        check_cov(report)?;
        let (cov, ro) = (report.cov_type, report_options(report)?);
        let (resolved, columns) = state_model(st)?.expect("an absorbed state");
        let acc = AbsorbAccumulator::from_parts(st.accumulator.clone(), st.absorbed.clone().expect("absorbed"));
        let design = design(&resolved.spec, &acc.dense.level_sets(), acc.dense.stats.keys()).map_err(FitError::from)?;
        let weighted = resolved.options.weights.is_some();
        let fit = within_fit(&acc, &design, weighted, ro.singular, crate::factors::Singletons::Drop)?;
        let cluster = cluster_column(report, &columns);
        let builder = absorbing_builder(&resolved, &columns);
        let (plan, builder) = residual_plan(&fit, &design, &builder, &columns, cov, &cluster);
        Ok(StateSecondPass { plan, builder, fit, acc, resolved, columns, cluster, cov, ro })
    }

    /// The report of the saved fit `st` with the covariance of the parts'
    /// sums `r` (merged in row order).
    pub(super) fn report(&self, st: &State, r: &AbsorbResiduals, full_cov: bool) -> Result<report::Report, AppError> {
        let cov_of = robust_cov(r, self.cov, &self.cluster)?;
        let mut res = infer_absorbed(&self.fit, &cov_of, self.ro.alpha, &self.resolved.spec.response.name);
        add_notes(&mut res, &self.acc, &self.columns, self.cov);
        let run = LevelRun::of_state(st);
        let info = run.info(&self.acc, self.resolved.options.weights.clone(), full_cov);
        Ok(report::Report::Absorbed { results: Box::new(res), info })
    }
}

/// The first pass of an absorbed model over `opened` as a state (a part
/// of a fit in parts: see `parts`): the model `a.formula`, `ab` its split.
pub(super) fn first_pass_state(
    a: &FitArgs,
    ab: &Absorbed,
    options: ModelOptions,
    opened: model::OpenedInputs,
    eo: &EngineOptions,
) -> Result<State, AppError> {
    let types = model::column_types(&opened, &[])?;
    let resolved = model::Resolved::new(options, types.clone())?;
    for c in &ab.columns {
        if !types.iter().any(|(n, _)| n == c) {
            return Err(no_column("fixed effect", c, &types));
        }
    }
    model::column_types(&opened, &absorbing_builder(&resolved, &ab.columns).source_columns())?;
    model::check_csv_text_columns(&resolved, &opened)?;
    let read = opened.inputs.clone();
    let t0 = Instant::now();
    let (acc, inputs) = accumulate(&resolved, &ab.columns, opened, eo, &Progress::default())?;
    let mut provenance = Vec::new();
    for (input, info) in read.iter().zip(&inputs) {
        provenance.push(crate::state::growth::record(input, info)?);
    }
    let (dense, part) = acc.into_parts();
    let model = ModelOptions { formula: a.formula.clone(), ..resolved.options.clone() };
    let elapsed_s = t0.elapsed().as_secs_f64();
    Ok(State::new(model, resolved.column_types.clone(), dense, Some(part), provenance, model::now_unix(), elapsed_s))
}

/// The columns an absorbed model reads (its design's and the absorbed
/// ones).
pub(super) fn model_columns(resolved: &Resolved, columns: &[String]) -> Vec<String> {
    absorbing_builder(resolved, columns).source_columns()
}

/// The design builder of an absorbed model: the absorbed columns read too.
fn absorbing_builder(resolved: &Resolved, columns: &[String]) -> crate::design::DesignBuilder {
    let mut builder = resolved.builder();
    builder.extra_columns = columns.to_vec();
    builder
}

/// A pass of either kind over new inputs: the statistics of a plain model
/// or of an absorbed one, the inputs read and the time taken.
pub(super) enum Pass {
    Plain(Box<crate::accumulator::FitAccumulator>),
    Absorbed(Box<AbsorbAccumulator>),
}

impl Pass {
    /// Fold into a state's statistics.
    pub(super) fn merge_into(&self, st: &mut State) {
        match self {
            Pass::Plain(acc) => st.accumulator.merge(acc),
            Pass::Absorbed(acc) => {
                let part = st.absorbed.take().expect("an absorbed state");
                let mut whole = AbsorbAccumulator::from_parts(std::mem::take(&mut st.accumulator), part);
                crate::accumulator::ChunkSink::merge(&mut whole, acc);
                let (dense, part) = whole.into_parts();
                st.accumulator = dense;
                st.absorbed = Some(part);
            }
        }
    }

    /// Take out of a state's statistics (nothing changes on failure).
    pub(super) fn retract_from(&self, st: &mut State) -> Result<(), String> {
        match self {
            Pass::Plain(acc) => st.accumulator.retract(acc).map_err(|e| e.to_string()),
            Pass::Absorbed(acc) => {
                let part = st.absorbed.clone().expect("an absorbed state");
                let mut whole = AbsorbAccumulator::from_parts(st.accumulator.clone(), part);
                whole.retract(acc)?;
                let (dense, part) = whole.into_parts();
                st.accumulator = dense;
                st.absorbed = Some(part);
                Ok(())
            }
        }
    }
}

/// A pass over `opened` for a state's model (`absorbed`: its absorbed
/// columns).
pub(super) fn pass_for_state(
    resolved: &Resolved,
    absorbed: Option<&[String]>,
    opened: model::OpenedInputs,
    eo: &EngineOptions,
    progress: &Progress,
) -> Result<(Pass, Vec<crate::report::InputInfo>, f64), AppError> {
    let t0 = Instant::now();
    let (pass, inputs) = match absorbed {
        None => {
            let p = model::accumulate(resolved, opened, eo, progress)?;
            (Pass::Plain(Box::new(p.acc)), p.inputs)
        }
        Some(columns) => {
            let (acc, inputs) = accumulate(resolved, columns, opened, eo, progress)?;
            (Pass::Absorbed(Box::new(acc)), inputs)
        }
    };
    Ok((pass, inputs, t0.elapsed().as_secs_f64()))
}

/// The first pass of an absorbed model over `opened`.
pub(crate) fn accumulate(
    resolved: &Resolved,
    columns: &[String],
    opened: model::OpenedInputs,
    eo: &EngineOptions,
    progress: &Progress,
) -> Result<(AbsorbAccumulator, Vec<crate::report::InputInfo>), AppError> {
    let builder = absorbing_builder(resolved, columns);
    let shared = Arc::new(columns.to_vec());
    let n_factors = resolved.spec.factors.len();
    let empty = || AbsorbAccumulator::new(shared.clone(), n_factors);
    Ok(engine::accumulate_with(opened, &builder, &empty, eo, progress).map_err(FitError::from)?)
}

/// The report's notes: the default covariance, rows dropped.
fn add_notes(res: &mut AbsorbedResults, acc: &AbsorbAccumulator, columns: &[String], cov: CovType) {
    if cov == CovType::Nonrobust {
        res.notes.push(format!(
            "Standard errors assume iid errors, the default of pyfixest and fixest; --cov-type cluster clusters them by '{}', --cov-type HC1 makes them heteroskedasticity-robust.",
            columns[0]
        ));
    }
    let rows_dropped = acc.rows_dropped();
    if rows_dropped > 0 {
        res.notes.push(format!(
            "{rows_dropped} of {} rows were dropped for a missing value in a column the model uses.",
            acc.rows_read
        ));
    }
}

/// The absorbed model of a state: the main model resolved, and the
/// absorbed columns (`None`: the state's formula absorbs nothing).
pub(super) fn state_model(st: &State) -> Result<Option<(Resolved, Vec<String>)>, AppError> {
    // A factor estimated by blocks: the rest of the model, and its column.
    if let Some(term) = st.absorbed.as_ref().and_then(|p| p.estimated_term) {
        let (_, rest, bf) =
            crate::factors::estimated::estimated_model(&st.model, &st.column_types, term).map_err(AppError::Data)?;
        return Ok(Some((rest, vec![bf.column])));
    }
    let Some((main, columns)) = model::absorbed_model(&st.model).map_err(FitError::from)? else { return Ok(None) };
    Ok(Some((Resolved::new(main, st.column_types.clone())?, columns)))
}

/// The report of a saved absorbed fit (iid standard errors: the robust
/// ones need the data).
pub(super) fn state_report(st: &State, report: &crate::cli::ReportArgs) -> Result<report::Report, AppError> {
    if st.absorbed.as_ref().is_some_and(|p| p.estimated_term.is_some()) {
        return super::estimated::state_report(st, report);
    }
    let ro = report_options(report)?;
    if report.cov_type != CovType::Nonrobust {
        return Err(AppError::Usage(format!(
            "--cov-type {} needs a pass over the data: a saved absorbed fit reports iid standard errors (gramfit fit … --cov-type {} for the others)",
            report.cov_type.name(),
            report.cov_type.name()
        )));
    }
    let (resolved, columns) = state_model(st)?.expect("an absorbed state");
    let part = st.absorbed.clone().expect("an absorbed state");
    let acc = AbsorbAccumulator::from_parts(st.accumulator.clone(), part);
    let run = LevelRun::of_state(st);
    iid_report(&acc, &resolved, &columns, &ro, run, report.full_cov)
}

/// Where the numbers of a report from per-level sums (an absorbed fit, a
/// fit by blocks) came from.
pub(crate) struct LevelRun<'a> {
    pub formula: &'a str,
    pub inputs: Vec<crate::report::InputInfo>,
    pub fitted_at: u64,
    pub elapsed_s: f64,
}

impl<'a> LevelRun<'a> {
    /// A saved fit's: its formula, recorded inputs and times.
    pub(crate) fn of_state(st: &'a State) -> Self {
        LevelRun {
            formula: &st.model.formula,
            inputs: super::recorded_inputs(st),
            fitted_at: st.fitted_at,
            elapsed_s: st.elapsed_s,
        }
    }

    /// The report's run block: these inputs and times, `acc`'s row counts.
    pub(crate) fn info(self, acc: &AbsorbAccumulator, weights: Option<String>, full_cov: bool) -> RunInfo {
        RunInfo {
            formula: self.formula.to_string(),
            inputs: self.inputs,
            rows_read: acc.rows_read,
            rows_dropped: acc.rows_dropped(),
            fitted_at: self.fitted_at,
            elapsed_s: self.elapsed_s,
            weights,
            full_cov,
        }
    }
}

/// The report of an absorbed fit with iid standard errors (a saved state,
/// a batch job: no pass over the residuals).
pub(crate) fn iid_report(
    acc: &AbsorbAccumulator,
    resolved: &Resolved,
    columns: &[String],
    ro: &model::ReportOptions,
    run: LevelRun<'_>,
    full_cov: bool,
) -> Result<report::Report, AppError> {
    let design = design(&resolved.spec, &acc.dense.level_sets(), acc.dense.stats.keys()).map_err(FitError::from)?;
    let fit =
        within_fit(acc, &design, resolved.options.weights.is_some(), ro.singular, crate::factors::Singletons::Drop)?;
    let mut res = infer_absorbed(&fit, &AbsorbedCov::Iid, ro.alpha, &resolved.spec.response.name);
    add_notes(&mut res, acc, columns, CovType::Nonrobust);
    let info = run.info(acc, resolved.options.weights.clone(), full_cov);
    Ok(report::Report::Absorbed { results: Box::new(res), info })
}
