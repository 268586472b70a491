//! Batch jobs: a TOML file → one validated job description → fits.
//!
//! The simplest job is `inputs = [...]` and `formula = "..."` at the top
//! level; `[[models]]` tables fit several models over the same inputs, each
//! inheriting the top-level settings it does not set. Relative paths are
//! relative to the config file's directory, so a job runs the same from cron
//! as from the shell. Unknown keys are errors naming the key. Everything is
//! validated (inputs exist, formulas resolve against the inputs' columns)
//! before anything is written, and reports and states are written
//! atomically, so a bad job writes nothing partial.

use crate::app::{self, AppError};
use crate::cli::RunArgs;
use crate::design::MissingPolicy;
use crate::engine::{EngineOptions, Progress};
use crate::grouped;
use crate::model::{self, ModelOptions, ReportOptions, Resolved};
use crate::report::grouped::{render_grouped, GroupReport};
use crate::report::{self, Format};
use crate::solve::SingularPolicy;
use crate::source::csv::CsvOptions;
use crate::state::{self, growth, State};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Settings a model may set or inherit from the top level.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelJob {
    pub name: Option<String>,
    pub formula: Option<String>,
    pub weights: Option<String>,
    pub missing: Option<MissingPolicy>,
    pub singular: Option<SingularPolicy>,
    pub alpha: Option<f64>,
    pub format: Option<Format>,
    /// Write the report here (default: stdout).
    pub report: Option<PathBuf>,
    /// Save the statistics here.
    pub state: Option<PathBuf>,
    /// Fit the model per level of this column, in one pass; `{group}` in
    /// `report`/`state` is replaced by the level (else `-level` is added
    /// before the extension).
    pub by: Option<String>,
    /// Keep the saved state current: when `state` exists, fold the inputs
    /// it does not hold yet into it (files already folded in are passed
    /// over; a file that grew is read on) instead of fitting anew.
    pub update: Option<bool>,
    /// Write the O(p²) blocks of a JSON report past 300 columns
    /// (`--full-cov`).
    pub full_cov: Option<bool>,
}

/// A prediction a job runs after its fits (`[[predict]]`), with the
/// options of `gramfit predict`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictJob {
    /// A state file, or a grouped fit's states (a directory or a glob).
    pub state: String,
    /// The rows to predict.
    pub inputs: Vec<String>,
    /// Where to write them (default: stdout, CSV).
    pub output: Option<PathBuf>,
    pub format: Option<crate::output::TableFormat>,
    pub interval: Option<crate::predict::Interval>,
    pub alpha: Option<f64>,
    #[serde(default)]
    pub keep: Vec<String>,
    pub unseen_level: Option<crate::cli::RowAction>,
    pub missing: Option<crate::cli::RowAction>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub inputs: Vec<String>,
    /// How CSV inputs are read: `delimiter`, `decimal`, `na_values`.
    pub delimiter: Option<char>,
    pub decimal: Option<char>,
    pub na_values: Option<Vec<String>>,
    pub threads: Option<usize>,
    pub batch_size: Option<usize>,
    #[serde(flatten)]
    pub defaults: ModelJob,
    #[serde(default)]
    pub models: Vec<ModelJob>,
    /// Predictions to run after the fits (e.g. score today's listings with
    /// the state this job just updated).
    #[serde(default)]
    pub predict: Vec<PredictJob>,
}

/// One model of a job with every setting decided.
#[derive(Debug, Clone)]
pub struct PlannedModel {
    pub name: String,
    pub options: ModelOptions,
    pub report: ReportOptions,
    pub format: Format,
    pub report_path: Option<PathBuf>,
    pub state_path: Option<PathBuf>,
    pub by: Option<String>,
    pub update: bool,
    pub full_cov: bool,
}

fn usage(path: &Path, msg: impl std::fmt::Display) -> AppError {
    AppError::Usage(format!("{}: {msg}", path.display()))
}

/// Parse and validate a config (without touching the data).
pub fn plan(path: &Path, text: &str, format_override: Option<Format>) -> Result<(Job, Vec<PlannedModel>), AppError> {
    let job: Job = toml::from_str(text).map_err(|e| usage(path, e.to_string().trim_end()))?;
    if job.inputs.is_empty() {
        return Err(usage(path, "`inputs` is empty: name at least one file, directory or glob"));
    }
    let csv =
        CsvOptions { delimiter: job.delimiter, decimal: job.decimal.unwrap_or('.'), na_values: job.na_values.clone() };
    csv.validate().map_err(|e| usage(path, e))?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let rel = |p: &PathBuf| if p.is_absolute() { p.clone() } else { base.join(p) };
    let models: Vec<ModelJob> = if job.models.is_empty() { vec![ModelJob::default()] } else { job.models.clone() };
    let mut planned = Vec::new();
    for (i, m) in models.iter().enumerate() {
        let d = &job.defaults;
        let name = m.name.clone().unwrap_or_else(|| format!("model {}", i + 1));
        let formula = m.formula.clone().or_else(|| d.formula.clone()).ok_or_else(|| {
            usage(path, format!("{name} has no `formula` (set it at the top level or in its [[models]] table)"))
        })?;
        let alpha = m.alpha.or(d.alpha).unwrap_or(0.05);
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(usage(path, format!("{name}: `alpha` must be between 0 and 1")));
        }
        planned.push(PlannedModel {
            options: ModelOptions {
                formula,
                weights: m.weights.clone().or_else(|| d.weights.clone()),
                missing: m.missing.or(d.missing).unwrap_or_default(),
                csv: csv.clone(),
                group: None,
            },
            report: ReportOptions { singular: m.singular.or(d.singular).unwrap_or_default(), alpha },
            format: format_override.or(m.format).or(d.format).unwrap_or_default(),
            report_path: m.report.as_ref().or(if job.models.is_empty() { d.report.as_ref() } else { None }).map(rel),
            state_path: m.state.as_ref().or(if job.models.is_empty() { d.state.as_ref() } else { None }).map(rel),
            by: m.by.clone().or_else(|| d.by.clone()),
            update: m.update.or(d.update).unwrap_or(false),
            full_cov: m.full_cov.or(d.full_cov).unwrap_or(false),
            name,
        });
    }
    let mut job = job;
    job.inputs = job
        .inputs
        .iter()
        .map(|s| {
            let p = Path::new(s);
            if p.is_absolute() || s == "-" {
                s.clone()
            } else {
                base.join(p).to_string_lossy().to_string()
            }
        })
        .collect();
    Ok((job, planned))
}

/// `gramfit run CONFIG`.
pub fn run(a: &RunArgs) -> Result<(), AppError> {
    let text =
        std::fs::read_to_string(&a.config).map_err(|e| AppError::Usage(format!("{}: {e}", a.config.display())))?;
    let (job, models) = plan(&a.config, &text, a.format)?;
    let mut eo = EngineOptions::default();
    if let Some(t) = a.threads.or(job.threads) {
        if t == 0 {
            return Err(usage(&a.config, "`threads` must be at least 1"));
        }
        eo.threads = t;
    }
    if let Some(b) = job.batch_size {
        eo.batch_size = b.max(1);
    }
    // Validate every model against the inputs before any pass or write.
    let csv = models.first().map(|m| m.options.csv.clone()).unwrap_or_default();
    let probe = model::open_inputs(&job.inputs, &csv)?;
    // Per model: resolved (the part before a `|`), and its absorbed columns.
    let mut resolved: Vec<(Resolved, Option<Vec<String>>)> = Vec::new();
    for m in &models {
        let types = model::column_types(&probe, &[])?;
        let in_model = |e: &dyn std::fmt::Display| AppError::Data(format!("{}: {}: {e}", a.config.display(), m.name));
        let (options, absorbed) = match model::absorbed_model(&m.options).map_err(|e| in_model(&e))? {
            Some((main, columns)) => (main, Some(columns)),
            None => (m.options.clone(), None),
        };
        if let Some(columns) = &absorbed {
            if m.by.is_some() {
                return Err(usage(
                    &a.config,
                    format!("{}: `by` with absorbed fixed effects is not supported yet", m.name),
                ));
            }
            if let Some(c) = columns.iter().find(|c| !types.iter().any(|(n, _)| n == *c)) {
                return Err(in_model(&format!("fixed effect: no column named '{c}' in the input")));
            }
        }
        let r = Resolved::new(options, types).map_err(|e| in_model(&e))?;
        resolved.push((r, absorbed));
    }
    drop(probe);
    let mut outputs: Vec<(Option<PathBuf>, String)> = Vec::new();
    let mut states: Vec<(PathBuf, State)> = Vec::new();
    let wait = a.lock.wait().map_err(AppError::Usage)?;
    // The job's models read the same inputs: each file is hashed once for
    // all the states saved (SHA-256 of a 400 MB file is ~1 s).
    let prints = &mut growth::Fingerprints::default();
    for (m, (r, absorbed)) in models.iter().zip(&resolved) {
        if let Some(sp) = m.state_path.as_ref().filter(|sp| m.update && m.by.is_none() && sp.exists()) {
            // Keep the saved fit current: fold in what it does not hold.
            let report = crate::cli::ReportArgs {
                singular: m.report.singular,
                alpha: m.report.alpha,
                format: m.format,
                cov_type: crate::second_pass::CovType::Nonrobust,
                cluster: None,
                no_second_pass: true,
                full_cov: m.full_cov,
                output: m.report_path.clone(),
            };
            let fold = app::FoldOptions {
                force: false,
                hold_tail: false,
                skip_folded: true,
                report: &report,
                engine: &eo,
                quiet: a.quiet,
                wait,
            };
            app::fold_into_state(sp, &job.inputs, &fold)?;
            continue;
        }
        let opened = model::open_inputs(&job.inputs, &csv)?;
        let read = opened.inputs.clone();
        let progress = std::sync::Arc::new(Progress::default());
        let _display = crate::progress::ProgressDisplay::start(progress.clone(), a.quiet);
        progress.set_label(&m.name);
        if let Some(by) = &m.by {
            let g = grouped::fit(r, by, opened, &eo, &progress)?;
            let fitted_at = model::now_unix();
            let mut reports = Vec::new();
            for group in &g.groups {
                let label = group.level.to_string();
                let res = model::results_of(&group.resolved, &group.acc, &m.report)
                    .map_err(|e| AppError::Data(format!("{}: {by} = {label}: {e}", m.name)))?;
                let mut info =
                    model::run_info(&group.resolved, &group.acc, group.inputs.clone(), fitted_at, g.elapsed_s);
                info.full_cov = m.full_cov;
                if let Some(rp) = &m.report_path {
                    let ext = rp.extension().map_or("txt".into(), |e| e.to_string_lossy().to_string());
                    outputs.push((Some(grouped::group_path(rp, &label, &ext)), report::render(&res, &info, m.format)));
                } else {
                    reports.push(GroupReport { level: label.clone(), results: res, info });
                }
                if let Some(sp) = &m.state_path {
                    // The state knows its group: updates fold only its rows.
                    let st = grouped::state_of(group, &read, prints, fitted_at, g.elapsed_s)?;
                    states.push((grouped::group_path(sp, &label, "gramfit"), st));
                }
            }
            if !reports.is_empty() {
                let mut text = render_grouped(by, &reports, m.format);
                if models.len() > 1 && m.format == Format::Text {
                    text = format!("### {}\n{text}", m.name);
                }
                outputs.push((None, text));
            }
            if g.rows_without_group > 0 {
                eprintln!(
                    "gramfit: note: {}: {} rows have no value in '{by}' and are in no group",
                    m.name, g.rows_without_group
                );
            }
            continue;
        }
        if let Some(columns) = absorbed {
            let t0 = std::time::Instant::now();
            let (acc, infos) = app::absorbed_pass(r, columns, opened, &eo, &progress)?;
            let (fitted_at, elapsed_s) = (model::now_unix(), t0.elapsed().as_secs_f64());
            let run = app::LevelRun { formula: &m.options.formula, inputs: infos.clone(), fitted_at, elapsed_s };
            let mut text = app::absorbed_iid_report(&acc, r, columns, &m.report, run, m.full_cov)
                .map(|r| r.render(m.format))
                .map_err(|e| AppError::Data(format!("{}: {e}", m.name)))?;
            if models.len() > 1 && m.report_path.is_none() && m.format == Format::Text {
                text = format!("### {}\n{text}", m.name);
            }
            outputs.push((m.report_path.clone(), text));
            if let Some(sp) = &m.state_path {
                let mut inputs = Vec::new();
                for (input, info) in read.iter().zip(&infos) {
                    inputs.push(growth::record_with(input, info, prints)?);
                }
                let (dense, part) = acc.into_parts();
                let st = State::new(
                    m.options.clone(),
                    r.column_types.clone(),
                    dense,
                    Some(part),
                    inputs,
                    fitted_at,
                    elapsed_s,
                );
                states.push((sp.clone(), st));
            }
            continue;
        }
        // A factor with too many levels for dense dummies: by blocks.
        let blocks = crate::factors::estimated::block_factors(&r.spec);
        let mut builder = r.builder();
        let limit = crate::factors::estimated::dense_levels();
        builder.level_limits = blocks.iter().map(|b| (b.factor, limit)).collect();
        let (pass, many) = match model::accumulate_by(&builder, opened, &eo, &progress) {
            Ok(pass) => {
                let many = pass.acc.check_level_limits(&builder).err().map(|e| match e {
                    crate::design::DesignError::ManyLevels { factor, .. } => factor,
                    _ => unreachable!("only the level limits are checked"),
                });
                (Some(pass), many)
            }
            Err(e) => match app::many_levels(&e) {
                Some(factor) => (None, Some(factor)),
                None => return Err(e.into()),
            },
        };
        if let Some(factor) = many {
            let bf = blocks.iter().find(|b| b.factor == factor).expect("a limit is set only for a candidate");
            let opened = model::open_inputs(&job.inputs, &csv)?;
            let (mut text, st) = app::blocks_for_job(r, bf, opened, &eo, &progress, &m.report, m.full_cov, m.format)
                .map_err(|e| AppError::Data(format!("{}: {e}", m.name)))?;
            if models.len() > 1 && m.report_path.is_none() && m.format == Format::Text {
                text = format!("### {}\n{text}", m.name);
            }
            outputs.push((m.report_path.clone(), text));
            if let Some(sp) = &m.state_path {
                states.push((sp.clone(), st));
            }
            continue;
        }
        let pass = pass.expect("a pass without too many levels");
        let fitted_at = model::now_unix();
        let res = model::results_of(r, &pass.acc, &m.report)?;
        let mut info = model::run_info(r, &pass.acc, pass.inputs.clone(), fitted_at, pass.elapsed_s);
        info.full_cov = m.full_cov;
        let mut text = report::render(&res, &info, m.format);
        if models.len() > 1 && m.report_path.is_none() && m.format == Format::Text {
            text = format!("### {}\n{text}", m.name);
        }
        outputs.push((m.report_path.clone(), text));
        if let Some(sp) = &m.state_path {
            let mut inputs = Vec::new();
            for (input, info) in read.iter().zip(&pass.inputs) {
                inputs.push(growth::record_with(input, info, prints)?);
            }
            let st = State::new(
                r.options.clone(),
                r.column_types.clone(),
                pass.acc,
                None,
                inputs,
                fitted_at,
                pass.elapsed_s,
            );
            states.push((sp.clone(), st));
        }
    }
    // All fits succeeded: now write, each file atomically, each state
    // under its lock (taken in path order, so two jobs cannot deadlock).
    let mut order: Vec<&PathBuf> = states.iter().map(|(sp, _)| sp).collect();
    order.sort();
    order.dedup();
    let _locks = order.iter().map(|sp| app::lock_state(sp, wait)).collect::<Result<Vec<_>, _>>()?;
    for (sp, st) in &states {
        state::save(st, sp)?;
    }
    for (path, text) in &outputs {
        if let Some(dir) = path.as_ref().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| AppError::Data(format!("{}: {e}", dir.display())))?;
        }
        app::emit(text, path.as_deref())?;
    }
    drop(_locks);
    // Then the predictions, with the states just written.
    let base = a.config.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let rel =
        |p: &str| if Path::new(p).is_absolute() { p.to_string() } else { base.join(p).to_string_lossy().to_string() };
    for p in &job.predict {
        let args = crate::cli::PredictArgs {
            state: rel(&p.state),
            inputs: p.inputs.iter().map(|i| rel(i)).collect(),
            output: p.output.as_ref().map(|o| base.join(o)),
            format: p.format,
            interval: p.interval.unwrap_or(crate::predict::Interval::Prediction),
            alpha: p.alpha.unwrap_or(0.05),
            keep: p.keep.clone(),
            unseen_level: p.unseen_level.unwrap_or(crate::cli::RowAction::Null),
            missing: p.missing.unwrap_or(crate::cli::RowAction::Null),
            singular: SingularPolicy::Drop,
            engine: crate::cli::EngineArgs { threads: Some(eo.threads), batch_size: eo.batch_size, quiet: a.quiet },
        };
        app::predict(&args)?;
    }
    Ok(())
}
