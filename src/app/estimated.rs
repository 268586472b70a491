//! `gramfit fit` of a plain model whose factor has too many levels for
//! dense dummies (`y ~ x + C(tailnum)`): the factor's levels estimated by
//! blocks (see [`crate::factors::estimated`]), reported as statsmodels
//! reports the dummy model.

use super::absorbed::LevelRun;
use super::fit::{csv_spill, reopen_as_read, spill_note};
use super::AppError;
use crate::cli::FitArgs;
use crate::engine::{self, EngineOptions, Progress};
use crate::factors::block_robust::apply_block_robust;
use crate::factors::estimated::{
    block_factors, block_results, estimated_model, full_design, rest_model, BlockFactor, BlockOptions, FullDesign,
};
use crate::factors::{within_fit, AbsorbResiduals, LevelSpread, LeveragePlan, ResidualPlan, Singletons};
use crate::factors::{AbsorbAccumulator, WithinFit};
use crate::formula::columns::design;
use crate::formula::columns::Design;
use crate::model::{self, FitError, ReportOptions, Resolved};
use crate::report;
use crate::results::OlsResults;
use crate::second_pass::{CovType, ResidualSnapshot};
use crate::state::State;
use std::sync::Arc;
use std::time::Instant;

/// The most levels a factor may have where the fit cannot estimate it by
/// blocks and would solve its dummies densely (`O(L²)` memory, `O(L³)`
/// time: about a minute and 2 GB at 4,000 levels).
pub const DENSE_LEVELS_MAX: usize = 2_000;

/// Which factors a first pass watches, and what it does when one has too
/// many levels.
pub(super) struct LevelPlan {
    pub blocks: Vec<BlockFactor>,
    pub limit: usize,
    /// Why the fit cannot start over by blocks (it then refuses the
    /// factor past [`DENSE_LEVELS_MAX`]); `None`: it can.
    pub why_dense: Option<&'static str>,
}

/// The plan of a fit: by blocks where it can read its inputs again (the
/// first pass starts over) and needs only what the block solve gives (the
/// nonrobust covariance, no state yet).
pub(super) fn plan(a: &FitArgs, resolved: &Resolved, rereadable: bool, hold_tail: bool) -> LevelPlan {
    let robust = a.report.cov_type != CovType::Nonrobust;
    let why_dense = if robust && a.save.is_some() {
        Some("--save and a robust covariance (a state by blocks keeps the nonrobust fit)")
    } else if a.follow.follow.is_some() || hold_tail {
        Some("--follow")
    } else if !rereadable {
        Some("input on stdin (the fit cannot start over)")
    } else {
        None
    };
    let limit = if why_dense.is_some() { DENSE_LEVELS_MAX } else { crate::factors::estimated::dense_levels() };
    LevelPlan { blocks: block_factors(&resolved.spec), limit, why_dense }
}

impl LevelPlan {
    /// The error for a factor past the limit where the fit is dense.
    pub fn refusal(&self, factor: usize, name: &str, why: &str) -> AppError {
        let column = self.blocks.iter().find(|b| b.factor == factor).map_or(name, |b| &b.column);
        AppError::Usage(format!(
            "{name} has more than {} levels: with {why} gramfit would fit its dummies densely, which at this size takes minutes and gigabytes; \
             without it gramfit estimates the levels by blocks (seconds, memory in proportion to the levels), or absorb the factor ('… | {column}'), \
             whose fits save, update and merge and give robust and clustered errors for the slopes",
            self.limit
        ))
    }
}

/// Fit `resolved` with the factor `bf` estimated by blocks, reading
/// `inputs` from the start.
pub(super) fn fit_by_blocks(
    a: &FitArgs,
    resolved: &Resolved,
    bf: &BlockFactor,
    ro: &ReportOptions,
    eo: &EngineOptions,
    progress: &Progress,
) -> Result<report::Report, AppError> {
    // The first pass stopped its workers when the levels showed.
    progress.stop.store(false, std::sync::atomic::Ordering::Relaxed);
    let csv = a.csv.options().map_err(AppError::Usage)?;
    let opened = model::open_inputs(&a.inputs, &csv)?;
    let rest = rest_model(resolved, bf);
    let columns = [bf.column.clone()];
    let second = !a.report.no_second_pass;
    let read = opened.inputs.clone();
    let schemas = opened.schemas.clone();
    let cov = a.report.cov_type;
    let cluster = a.report.cluster.clone().filter(|_| cov == CovType::Cluster);
    let eo = &csv_spill(&opened, second, cluster.as_deref(), eo);
    progress.set_label(if second { "pass 1/2" } else { "pass 1/1" });
    let t0 = Instant::now();
    let (acc, inputs) = super::absorbed::accumulate(&rest, &columns, opened, eo, progress)?;
    let fitted_at = model::now_unix();
    let (mut res, within, rest_design, fd) = results(resolved, &rest, bf, &acc, ro, a.report.full_cov)?;
    let mut snapshot = None;
    check_robust_pinv(&within, &res, cov, ro)?;
    if second {
        let (plan, builder) = residual_plan(&rest, &within, &rest_design, bf, cov, &cluster);
        let reopened = reopen_as_read(&read, &schemas, &csv, &inputs);
        progress.set_label("pass 2/2");
        let empty = || AbsorbResiduals::new(plan.clone());
        let (r, _) = engine::accumulate_with(reopened, &builder, &empty, eo, progress).map_err(FitError::from)?;
        spill_note(eo);
        snapshot = apply_residuals(&mut res, &within, &fd, &r, cov, a.report.full_cov)?;
    } else {
        res.gramfit_notes.push(super::no_second_pass_note(false));
    }
    if crate::interrupt::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(AppError::Data("interrupted".into()));
    }
    let elapsed_s = t0.elapsed().as_secs_f64();
    let run = LevelRun { formula: &resolved.options.formula, inputs, fitted_at, elapsed_s };
    let info = run.info(&acc, resolved.options.weights.clone(), a.report.full_cov);
    if let Some(path) = &a.save {
        let mut st = block_state(resolved, bf, acc, &read, &info.inputs, info.fitted_at, info.elapsed_s)?;
        st.residuals = snapshot;
        crate::state::save(&st, path)?;
    }
    Ok(report::Report::Plain { results: Box::new(res), info })
}

/// The report's results of a fit by blocks from its statistics (`full`
/// the model, `rest` its statistics' model), with the within fit and the
/// rest's design they came from.
fn results(
    full: &Resolved,
    rest: &Resolved,
    bf: &BlockFactor,
    acc: &AbsorbAccumulator,
    ro: &ReportOptions,
    full_cov: bool,
) -> Result<(OlsResults, WithinFit, Design, FullDesign), AppError> {
    let rest_design = design(&rest.spec, &acc.dense.level_sets(), acc.dense.stats.keys()).map_err(FitError::from)?;
    let weighted = full.options.weights.is_some();
    // pinv projects the drop solution (see `factors::estimated`).
    let policy = match ro.singular {
        crate::solve::SingularPolicy::Pinv => crate::solve::SingularPolicy::Drop,
        p => p,
    };
    let within = within_fit(acc, &rest_design, weighted, policy, Singletons::Keep)?;
    let fac = &within.factors[0];
    let fd = full_design(&full.spec, bf, acc, &rest_design, &fac.levels).map_err(FitError::from)?;
    let options =
        BlockOptions { alpha: ro.alpha, weighted, response: &full.spec.response.name, full_cov, singular: ro.singular };
    let mut res = block_results(acc, &within, &fd, &rest_design, &options).map_err(FitError::from)?;
    let name = &full.spec.factors[bf.factor].name;
    res.gramfit_notes.insert(
        0,
        format!(
            "{name} has {} levels (more than {}): they were estimated by blocks — the slopes from the normal equations with the levels eliminated exactly, each level's coefficient and standard error from its means — rather than as {} dense columns; the numbers are those of the dummy model.",
            fac.levels.len(),
            crate::factors::estimated::dense_levels(),
            fac.levels.len().saturating_sub(1)
        ),
    );
    if acc.rows_dropped() > 0 {
        res.gramfit_notes.push(format!(
            "{} of {} rows were dropped for a missing value in a column the model uses.",
            acc.rows_dropped(),
            acc.rows_read
        ));
    }
    Ok((res, within, rest_design, fd))
}

/// The report of a saved fit by blocks (the bottom block when the state
/// keeps its second pass).
pub(super) fn state_report(st: &State, report: &crate::cli::ReportArgs) -> Result<report::Report, AppError> {
    let ro = super::report_options(report)?;
    if report.cov_type != CovType::Nonrobust {
        return Err(AppError::Usage(format!(
            "--cov-type {}: a fit by blocks has the nonrobust covariance only",
            report.cov_type.name()
        )));
    }
    let part = st.absorbed.clone().expect("a fit by blocks");
    let term = part.estimated_term.expect("a fit by blocks");
    let (full, rest, bf) = estimated_model(&st.model, &st.column_types, term).map_err(AppError::Data)?;
    let acc = AbsorbAccumulator::from_parts(st.accumulator.clone(), part);
    let (mut res, ..) = results(&full, &rest, &bf, &acc, &ro, report.full_cov)?;
    match &st.residuals {
        Some(snap) => crate::results::apply_second_pass(&mut res, snap),
        None => res.gramfit_notes.push(super::no_second_pass_note(false)),
    }
    let run = LevelRun::of_state(st);
    let info = run.info(&acc, full.options.weights.clone(), report.full_cov);
    Ok(report::Report::Plain { results: Box::new(res), info })
}

/// The factor a first pass stopped for (its [`DesignError::ManyLevels`]),
/// if that is why it failed.
pub(crate) fn many_levels(e: &FitError) -> Option<usize> {
    match e {
        FitError::Engine(crate::engine::EngineError::Design { source, .. }) => match **source {
            crate::design::DesignError::ManyLevels { factor, .. } => Some(factor),
            _ => None,
        },
        _ => None,
    }
}

/// A batch job's plain model with the factor `bf` estimated by blocks
/// over `opened` (one pass, nonrobust, as a job's plain fits): its report
/// and its state.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_for_job(
    resolved: &Resolved,
    bf: &BlockFactor,
    opened: model::OpenedInputs,
    eo: &EngineOptions,
    progress: &Progress,
    ro: &ReportOptions,
    full_cov: bool,
    format: crate::report::Format,
) -> Result<(String, State), AppError> {
    // The first pass stopped its workers when the levels showed.
    progress.stop.store(false, std::sync::atomic::Ordering::Relaxed);
    let rest = rest_model(resolved, bf);
    let read = opened.inputs.clone();
    let t0 = Instant::now();
    let (acc, inputs) = super::absorbed::accumulate(&rest, std::slice::from_ref(&bf.column), opened, eo, progress)?;
    let (fitted_at, elapsed_s) = (model::now_unix(), t0.elapsed().as_secs_f64());
    let (res, ..) = results(resolved, &rest, bf, &acc, ro, full_cov)?;
    let run = LevelRun { formula: &resolved.options.formula, inputs, fitted_at, elapsed_s };
    let info = run.info(&acc, resolved.options.weights.clone(), full_cov);
    let text = report::render(&res, &info, format);
    Ok((text, block_state(resolved, bf, acc, &read, &info.inputs, info.fitted_at, info.elapsed_s)?))
}

/// The state of a fit by blocks: `acc` its statistics, `read` the inputs
/// as opened and `info` what the pass read of them.
fn block_state(
    resolved: &Resolved,
    bf: &BlockFactor,
    mut acc: AbsorbAccumulator,
    read: &[crate::source::Input],
    inputs: &[crate::report::InputInfo],
    fitted_at: u64,
    elapsed_s: f64,
) -> Result<State, AppError> {
    let mut provenance = Vec::new();
    for (input, got) in read.iter().zip(inputs) {
        provenance.push(crate::state::growth::record(input, got)?);
    }
    acc.estimated_term = Some(bf.term);
    let (dense, part) = acc.into_parts();
    let (model, types) = (resolved.options.clone(), resolved.column_types.clone());
    Ok(State::new(model, types, dense, Some(part), provenance, fitted_at, elapsed_s))
}

/// `--singular pinv` with a robust covariance is refused when the design
/// is singular (the block sandwich is of the drop solution).
fn check_robust_pinv(within: &WithinFit, res: &OlsResults, cov: CovType, ro: &ReportOptions) -> Result<(), AppError> {
    let singular = within.sol.aliased.iter().any(|&a| a);
    if cov != CovType::Nonrobust && ro.singular == crate::solve::SingularPolicy::Pinv && singular {
        return Err(AppError::Usage(format!(
            "--singular pinv with --cov-type {} is not available for a factor estimated by blocks when the design is singular ({} aliased); use --singular drop",
            cov.name(),
            res.aliased.join(", ")
        )));
    }
    Ok(())
}

/// The second pass of a fit by blocks: the residuals' moments (the
/// bottom block) and, for a robust covariance, the per-level scores; the
/// builder reads the rest of the model, the factor and the cluster column.
fn residual_plan(
    rest: &Resolved,
    within: &WithinFit,
    rest_design: &Design,
    bf: &BlockFactor,
    cov: CovType,
    cluster: &Option<String>,
) -> (Arc<ResidualPlan>, crate::design::DesignBuilder) {
    let columns = vec![bf.column.clone()];
    let plan = Arc::new(ResidualPlan {
        moments: true,
        level_scores: (cov != CovType::Nonrobust).then(|| LeveragePlan {
            spread: LevelSpread::of(within),
            power: match cov {
                CovType::Hc2 => 1,
                CovType::Hc3 => 2,
                _ => 0,
            },
        }),
        ..ResidualPlan::new(within, rest_design, columns.clone(), cov, cluster.clone())
    });
    let mut builder = rest.builder();
    builder.extra_columns = columns;
    if let Some(c) = cluster.as_ref().filter(|c| **c != bf.column) {
        builder.extra_columns.push(c.clone());
    }
    (plan, builder)
}

/// The second pass's sums applied to the results: the bottom block, and
/// the robust covariance by blocks; the snapshot a state keeps (the
/// nonrobust fit's only).
fn apply_residuals(
    res: &mut OlsResults,
    within: &WithinFit,
    fd: &FullDesign,
    r: &AbsorbResiduals,
    cov: CovType,
    full_cov: bool,
) -> Result<Option<ResidualSnapshot>, AppError> {
    r.require_clusters().map_err(AppError::Data)?;
    let moments = r.moments.clone().expect("the plan asked for the moments");
    let snap = ResidualSnapshot {
        cov_type: cov,
        diagnostics: moments.diagnostics(),
        robust_cov: None,
        undefined: Vec::new(),
        leverage_one: 0,
        n_clusters: 0,
    };
    match &r.level_scores {
        Some(scores) => {
            let clusters = r.has_clusters().then(|| (r.cluster_scores(), r.n_clusters()));
            apply_block_robust(res, within, fd, scores, clusters, snap, full_cov);
            Ok(None)
        }
        None => {
            crate::results::apply_second_pass(res, &snap);
            Ok(Some(snap))
        }
    }
}

/// The first pass of a part of a fit in parts with the factor `bf`
/// estimated by blocks (see `parts`): a state of the kind `fit --save`
/// writes for such a fit.
pub(super) fn first_pass_state(
    resolved: &Resolved,
    bf: &BlockFactor,
    opened: model::OpenedInputs,
    eo: &EngineOptions,
) -> Result<State, AppError> {
    let rest = rest_model(resolved, bf);
    let read = opened.inputs.clone();
    let t0 = Instant::now();
    let (acc, inputs) =
        super::absorbed::accumulate(&rest, std::slice::from_ref(&bf.column), opened, eo, &Progress::default())?;
    block_state(resolved, bf, acc, &read, &inputs, model::now_unix(), t0.elapsed().as_secs_f64())
}

/// The second pass of a saved fit by blocks, for a fit in parts: its
/// plan (the covariance `report` asks for) and what reads a part, then
/// the report from the parts' sums.
pub(super) struct StateSecondPass {
    pub plan: Arc<ResidualPlan>,
    pub builder: crate::design::DesignBuilder,
    res: OlsResults,
    within: WithinFit,
    fd: FullDesign,
    full: Resolved,
    acc: AbsorbAccumulator,
    cov: CovType,
}

impl StateSecondPass {
    pub(super) fn of(st: &State, report: &crate::cli::ReportArgs) -> Result<Self, AppError> {
        let (cov, ro) = (report.cov_type, super::report_options(report)?);
        super::check_cluster(cov, report.cluster.as_deref())?;
        let cluster = report.cluster.clone().filter(|_| cov == CovType::Cluster);
        let part = st.absorbed.clone().expect("a fit by blocks");
        let term = part.estimated_term.expect("a fit by blocks");
        let (full, rest, bf) = estimated_model(&st.model, &st.column_types, term).map_err(AppError::Data)?;
        let acc = AbsorbAccumulator::from_parts(st.accumulator.clone(), part);
        let (res, within, rest_design, fd) = results(&full, &rest, &bf, &acc, &ro, report.full_cov)?;
        check_robust_pinv(&within, &res, cov, &ro)?;
        let (plan, builder) = residual_plan(&rest, &within, &rest_design, &bf, cov, &cluster);
        Ok(StateSecondPass { plan, builder, res, within, fd, full, acc, cov })
    }

    /// The report of the saved fit `st` with the parts' sums `r` (merged
    /// in row order); a nonrobust fit's bottom block is kept in `st`.
    pub(super) fn report(
        mut self,
        st: &mut State,
        r: &AbsorbResiduals,
        full_cov: bool,
    ) -> Result<report::Report, AppError> {
        st.residuals = apply_residuals(&mut self.res, &self.within, &self.fd, r, self.cov, full_cov)?;
        st.stale_second_pass = None;
        let run = LevelRun::of_state(st);
        let info = run.info(&self.acc, self.full.options.weights.clone(), full_cov);
        Ok(report::Report::Plain { results: Box::new(self.res), info })
    }
}
