//! `gramfit fit`: a model fitted to files, reported, and saved.

use crate::cli::FitArgs;
use crate::design::DesignError;
use crate::engine::{EngineOptions, Progress, Spill};
use crate::model::{self, ModelOptions};
use crate::progress::ProgressDisplay;
use crate::report;
use crate::second_pass::CovType;
use crate::source::csv::ReadFrom;
use crate::source::{Input, SourceKind};
use crate::state::{self, growth, State};
use std::path::Path;
use std::sync::Arc;

use super::keep::{fold_into_state, lock_state, FoldOptions};
use super::{check_cluster, emit, engine_options, no_second_pass_note, report_options, AppError};

/// `gramfit fit`: the fit's report written where `--output` says, or
/// follow mode.
pub fn fit(a: &FitArgs) -> Result<(), AppError> {
    if let Some(dir) = a.follow.follow.as_deref().filter(|_| !is_absorbed(a).unwrap_or(false)) {
        return follow(a, dir);
    }
    let report = fit_report(a)?;
    emit_report(&report, a)
}

fn is_absorbed(a: &FitArgs) -> Result<bool, AppError> {
    Ok(crate::formula::absorb::split_absorbed(&a.formula).map_err(model::FitError::from)?.is_some())
}

/// Render (a large report may be cut by Ctrl-C: rendering writes
/// nothing) and write.
fn emit_report(report: &report::Report, a: &FitArgs) -> Result<(), AppError> {
    let text = {
        let _exit_safe = crate::interrupt::ExitSafe::enter();
        report.render(a.report.format)
    };
    emit(&text, a.report.output.as_deref())
}

/// The fit the arguments describe (not follow mode), its state saved
/// when `--save` says so: the library's entry to what `gramfit fit` does.
pub fn fit_report(a: &FitArgs) -> Result<report::Report, AppError> {
    let eo = engine_options(&a.engine)?;
    if let Some(absorbed) = crate::formula::absorb::split_absorbed(&a.formula).map_err(model::FitError::from)? {
        return super::absorbed::fit_absorbed(a, absorbed, &eo);
    }
    if let Some(by) = &a.by {
        return fit_by(a, by, &eo);
    }
    fit_once(a, &a.inputs, &eo, false).map(|(r, _)| r)
}

/// `fit --follow DIR`: the inputs fitted, then each new or grown file in
/// DIR folded into the state as it comes (`--by` conflicts with it).
fn follow(a: &FitArgs, dir: &Path) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    let fit_and_report = |inputs: &[String], hold_tail: bool| -> Result<bool, AppError> {
        let (report, tail_pending) = fit_once(a, inputs, &eo, hold_tail)?;
        emit_report(&report, a)?;
        Ok(tail_pending)
    };
    let Some(save) = &a.save else {
        return Err(AppError::Usage("--follow needs --save STATE (where the fit is kept current)".into()));
    };
    if !a.inputs.is_empty() {
        fit_and_report(&a.inputs, false)?;
    }
    let wait = a.lock.wait().map_err(AppError::Usage)?;
    let fold = FoldOptions {
        force: false,
        hold_tail: true,
        skip_folded: false,
        report: &a.report,
        engine: &eo,
        quiet: a.engine.quiet,
        wait,
    };
    super::follow::follow(dir, &a.follow, &mut |path: &Path, hold_tail: bool| {
        let input = [path.to_string_lossy().to_string()];
        if save.exists() {
            fold_into_state(save, &input, &FoldOptions { hold_tail, ..fold })
        } else {
            fit_and_report(&input, hold_tail).map(|tail_pending| super::follow::Folded::Saved { tail_pending })
        }
    })
}

/// The model the arguments describe, and their CSV options.
fn model_options(a: &FitArgs) -> Result<(ModelOptions, crate::source::csv::CsvOptions), AppError> {
    let csv = a.csv.options().map_err(AppError::Usage)?;
    let options = ModelOptions {
        formula: a.formula.clone(),
        weights: a.weights.clone(),
        missing: a.missing,
        csv: csv.clone(),
        group: None,
    };
    Ok((options, csv))
}

/// The inputs of a first pass (`read`, with their `schemas`) for a second
/// pass, each to be read only as far as the first pass read it
/// (`infos`): rows appended since stay out.
pub(super) fn reopen_as_read(
    read: &[Input],
    schemas: &[Option<arrow::datatypes::SchemaRef>],
    csv: &crate::source::csv::CsvOptions,
    infos: &[crate::report::InputInfo],
) -> model::OpenedInputs {
    let mut inputs = read.to_vec();
    for (input, info) in inputs.iter_mut().zip(infos) {
        let records = info.end.map_or(info.file_rows, |e| e.records);
        input.from = ReadFrom { limit: Some(records), ..ReadFrom::default() };
    }
    model::OpenedInputs { inputs, csv: csv.clone(), schemas: schemas.to_vec(), stdin: None }
}

/// Where a first pass keeps what it parses from CSV files for the second
/// (the text parsed once): when a second pass follows and a CSV file is
/// among the inputs. `cluster`: a column only the second pass reads.
pub(super) fn csv_spill(
    opened: &model::OpenedInputs,
    second: bool,
    cluster: Option<&str>,
    eo: &EngineOptions,
) -> EngineOptions {
    let mut eo = eo.clone();
    // GRAMFIT_NO_SPILL=1: parse the text again (a small temporary disk).
    let off = std::env::var_os("GRAMFIT_NO_SPILL").is_some_and(|v| v != "0");
    if second && !off && opened.inputs.iter().any(|i| i.kind == SourceKind::Csv) {
        let extra = cluster.map(String::from).into_iter().collect();
        match Spill::new(extra) {
            Ok(s) => eo.spill = Some(Arc::new(s)),
            Err(e) => eprintln!(
                "gramfit: note: no temporary directory for the parsed CSV columns ({e}); the second pass parses the text again"
            ),
        }
    }
    eo
}

/// Say that a kept file was given up (its second pass parsed the text).
pub(super) fn spill_note(eo: &EngineOptions) {
    if let Some(f) = eo.spill.as_ref().and_then(|s| s.failure()) {
        eprintln!("gramfit: note: {f}; the second pass parsed the text again");
    }
}

/// Fit `inputs` (plain, or by blocks; saved when `--save` says): the
/// report, and whether a last line was left pending (`hold_tail`: an
/// unterminated last CSV line is left so, as follow mode reads a file that
/// may still be written).
fn fit_once(
    a: &FitArgs,
    inputs: &[String],
    eo: &EngineOptions,
    hold_tail: bool,
) -> Result<(report::Report, bool), AppError> {
    let ro = report_options(&a.report)?;
    let (options, csv) = model_options(a)?;
    let wait = a.lock.wait().map_err(AppError::Usage)?;
    let _lock = a.save.as_deref().map(|p| lock_state(p, wait)).transpose()?;
    let mut opened = model::open_inputs(inputs, &csv)?;
    for input in opened.inputs.iter_mut() {
        input.from = ReadFrom { hold_tail, ..ReadFrom::default() };
    }
    let rereadable = opened.stdin.is_none();
    let cov = a.report.cov_type;
    check_cluster(cov, a.report.cluster.as_deref())?;
    if cov != CovType::Nonrobust && (!rereadable || a.report.no_second_pass) {
        return Err(AppError::Usage(format!(
            "--cov-type {} needs a second pass over the data, which {} (drop it or read files)",
            cov.name(),
            if rereadable { "--no-second-pass turns off" } else { "a stream on stdin cannot have" }
        )));
    }
    let read = opened.inputs.clone();
    let schemas = opened.schemas.clone();
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), a.engine.quiet);
    let second = rereadable && !a.report.no_second_pass;
    let cluster = a.report.cluster.as_deref().filter(|_| cov == CovType::Cluster);
    let eo = &csv_spill(&opened, second, cluster, eo);
    progress.set_label(if second { "pass 1/2" } else { "pass 1/1" });
    let resolved = model::resolve(options, &opened)?;
    // A factor with too many levels for dense dummies: the pass stops as
    // soon as it shows, and the fit starts over by blocks.
    let plan = super::estimated::plan(a, &resolved, rereadable, hold_tail);
    let mut builder = resolved.builder();
    builder.level_limits = plan.blocks.iter().map(|b| (b.factor, plan.limit)).collect();
    let by_blocks = |factor: usize, name: &str| -> Result<(report::Report, bool), AppError> {
        if let Some(why) = plan.why_dense {
            return Err(plan.refusal(factor, name, why));
        }
        let bf = plan.blocks.iter().find(|b| b.factor == factor).expect("a limit is set only for a candidate");
        super::estimated::fit_by_blocks(a, &resolved, bf, &ro, eo, &progress).map(|r| (r, false))
    };
    let pass = match model::accumulate_by(&builder, opened, eo, &progress) {
        Err(e) => match super::estimated::many_levels(&e) {
            Some(factor) => return by_blocks(factor, &resolved.spec.factors[factor].name),
            None => return Err(e.into()),
        },
        Ok(pass) => pass,
    };
    // Each work unit saw few levels, all of them many.
    if let Err(DesignError::ManyLevels { factor, name, .. }) = pass.acc.check_level_limits(&builder) {
        return by_blocks(factor, &name);
    }
    let fitted_at = model::now_unix();
    let mut st = State::new(
        resolved.options.clone(),
        resolved.column_types.clone(),
        pass.acc,
        None,
        Vec::new(),
        fitted_at,
        pass.elapsed_s,
    );
    if a.save.is_some() {
        for (input, info) in read.iter().zip(&pass.inputs) {
            st.inputs.push(growth::record(input, info)?);
        }
    }
    let res = model::results_of(&resolved, &st.accumulator, &ro);
    // The second pass, when the first solved and the files can be reread.
    if res.is_ok() && rereadable && !a.report.no_second_pass {
        let t0 = std::time::Instant::now();
        let reopened = reopen_as_read(&read, &schemas, &csv, &pass.inputs);
        progress.set_label("pass 2/2");
        let snap = model::second_pass(
            &resolved,
            &st.accumulator,
            &ro,
            model::RobustOptions { cov, cluster: a.report.cluster.as_deref() },
            reopened,
            eo,
            &progress,
        )?;
        st.residuals = Some(snap);
        st.elapsed_s += t0.elapsed().as_secs_f64();
        spill_note(eo);
    }
    // Save even when the solve refuses (a singular design with --singular
    // error): the statistics are worth keeping.
    // …but not when the user stopped the fit (Ctrl-C during the solve).
    if crate::interrupt::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        res?;
        return Err(AppError::Data("interrupted".into()));
    }
    if let Some(path) = &a.save {
        state::save(&st, path)?;
    }
    let mut res = res?;
    if let Some(snap) = &st.residuals {
        crate::results::apply_second_pass(&mut res, snap);
    } else if !rereadable || a.report.no_second_pass {
        res.gramfit_notes.push(no_second_pass_note(!rereadable));
    }
    let tail_pending = pass.inputs.iter().any(|i| i.end.is_some_and(|e| e.tail_pending));
    let mut info = model::run_info(&resolved, &st.accumulator, pass.inputs, fitted_at, st.elapsed_s);
    info.full_cov = a.report.full_cov;
    Ok((report::Report::Plain { results: Box::new(res), info }, tail_pending))
}

/// `gramfit fit … --by COL`: a model per level of `by` from one first pass,
/// and every group's second pass from one more.
fn fit_by(a: &FitArgs, by: &str, eo: &EngineOptions) -> Result<report::Report, AppError> {
    use crate::grouped;
    use crate::report::grouped::GroupReport;
    let ro = report_options(&a.report)?;
    let (options, csv) = model_options(a)?;
    let cov = a.report.cov_type;
    check_cluster(cov, a.report.cluster.as_deref())?;
    let opened = model::open_inputs(&a.inputs, &csv)?;
    let rereadable = opened.stdin.is_none();
    if cov != CovType::Nonrobust && (!rereadable || a.report.no_second_pass) {
        return Err(AppError::Usage(format!("--cov-type {} needs a second pass over the data", cov.name())));
    }
    let types = model::column_types(&opened, &[])?;
    let resolved = model::Resolved::new(options, types)?;
    let mut needed = resolved.builder().source_columns();
    needed.push(by.to_string());
    model::column_types(&opened, &needed)?;
    model::check_csv_text_columns(&resolved, &opened)?;
    let read = opened.inputs.clone();
    let schemas = opened.schemas.clone();
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), a.engine.quiet);
    let cluster = a.report.cluster.as_deref().filter(|_| cov == CovType::Cluster);
    let eo = &csv_spill(&opened, rereadable && !a.report.no_second_pass, cluster, eo);
    progress.set_label("pass 1, every group");
    let g = grouped::fit(&resolved, by, opened, eo, &progress)?;
    if g.rows_without_group > 0 {
        eprintln!("gramfit: note: {} rows have no value in '{by}' and are in no group", g.rows_without_group);
    }
    let fitted_at = model::now_unix();
    let wait = a.lock.wait().map_err(AppError::Usage)?;
    let in_group = |label: &str, e: model::FitError| AppError::Data(format!("{by} = {label}: {e}"));
    // Every group's results and second-pass set-up, then one read of the
    // inputs for all the groups' second passes.
    let second = rereadable && !a.report.no_second_pass;
    let robust = model::RobustOptions { cov, cluster: a.report.cluster.as_deref() };
    let mut results = Vec::new();
    let mut passes = Vec::new();
    for group in &g.groups {
        let label = group.level.to_string();
        results.push(model::results_of(&group.resolved, &group.acc, &ro).map_err(|e| in_group(&label, e))?);
        if second {
            let pass =
                model::SecondPass::of(&group.resolved, &group.acc, &ro, robust).map_err(|e| in_group(&label, e))?;
            passes.push(pass);
        }
    }
    let residuals = match g.groups.first() {
        Some(first) if second => {
            let reopened = reopen_as_read(&read, &schemas, &csv, &first.inputs);
            progress.set_label("pass 2, every group");
            let staged: Vec<_> = g.groups.iter().zip(&passes).collect();
            grouped::second_passes(by, &staged, reopened, eo, &progress)?
        }
        _ => Vec::new(),
    };
    let mut reports = Vec::new();
    let prints = &mut crate::state::growth::Fingerprints::default();
    for (i, (group, mut res)) in g.groups.iter().zip(results).enumerate() {
        let label = group.level.to_string();
        // Inputs are fingerprinted only for a state that is saved.
        let recorded: &[_] = if a.save.is_some() { &read } else { &[] };
        let mut st = grouped::state_of(group, recorded, prints, fitted_at, g.elapsed_s)?;
        match (passes.get(i), residuals.get(i)) {
            (Some(pass), Some(stats)) => {
                let snap = pass.snapshot(stats);
                crate::results::apply_second_pass(&mut res, &snap);
                st.residuals = Some(snap);
            }
            _ => res.gramfit_notes.push(no_second_pass_note(!rereadable)),
        }
        if let Some(pattern) = &a.save {
            let path = grouped::group_path(pattern, &label, "gramfit");
            let _lock = lock_state(&path, wait)?;
            grouped::save(&st, &path)?;
        }
        let mut info = model::run_info(&group.resolved, &group.acc, group.inputs.clone(), fitted_at, g.elapsed_s);
        info.full_cov = a.report.full_cov;
        reports.push(GroupReport { level: label, results: res, info });
    }
    spill_note(eo);
    Ok(report::Report::Grouped { by: by.to_string(), groups: reports })
}
