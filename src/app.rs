//! The commands: each takes parsed arguments, does its work through the
//! library and writes results to stdout (or a file) — errors go back to
//! `main` with context.

use crate::cli::{
    CorrArgs, DesignArgs, DesignFormat, DiagnoseArgs, EngineArgs, FitArgs, MergeArgs, ReportArgs, RetractArgs,
    SummaryArgs, UpdateArgs,
};
use crate::design::MissingPolicy;
use crate::engine::{EngineOptions, Progress, INTERRUPTED};
use crate::formula::columns::design as design_columns;
use crate::level::{python_float_repr, ColumnKey};
use crate::model::{self, FitError, ModelOptions, ReportOptions, Resolved};
use crate::progress::ProgressDisplay;
use crate::report::{self, InputInfo, RunInfo};
use crate::residuals::CovType;
use crate::solve::NormalEquations;
use crate::state::{self, Provenance, State, StateError};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

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

fn report_options(a: &ReportArgs) -> Result<ReportOptions, AppError> {
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

fn provenance(path_display: &str, path: &Path, info: &InputInfo) -> Result<Provenance, AppError> {
    let (size, sha256) = if path_display == "<stdin>" { (0, String::new()) } else { state::fingerprint(path)? };
    Ok(Provenance {
        path: path_display.to_string(),
        size,
        sha256,
        rows_read: info.rows_read,
        rows_dropped: info.rows_dropped,
    })
}

fn render_state(st: &State, report: &ReportArgs) -> Result<String, AppError> {
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
    let inputs = st
        .inputs
        .iter()
        .map(|p| InputInfo { path: p.path.clone(), rows_read: p.rows_read, rows_dropped: p.rows_dropped, end: None })
        .collect();
    let info = model::run_info(&resolved, &st.accumulator, inputs, st.fitted_at, st.elapsed_s);
    Ok(report::render(&res, &info, report.format))
}

pub fn fit(a: &FitArgs) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    if let Some(dir) = &a.follow.follow {
        let Some(save) = &a.save else {
            return Err(AppError::Usage("--follow needs --save STATE (where the fit is kept current)".into()));
        };
        if !a.inputs.is_empty() {
            fit_once(a, &a.inputs, &eo)?;
        }
        return follow(dir, &a.follow, &mut |path: &Path| {
            let input = [path.to_string_lossy().to_string()];
            if save.exists() {
                fold_into_state(save, &input, false, &a.report, &eo, a.engine.quiet)
            } else {
                fit_once(a, &input, &eo)
            }
        });
    }
    fit_once(a, &a.inputs, &eo)
}

/// `--cluster` goes with `--cov-type cluster`, and only with it: given with
/// another covariance it would be read and not used.
fn check_cluster(cov: CovType, cluster: Option<&str>) -> Result<(), AppError> {
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

fn fit_once(a: &FitArgs, inputs: &[String], eo: &EngineOptions) -> Result<(), AppError> {
    let ro = report_options(&a.report)?;
    let csv = a.csv.options().map_err(AppError::Usage)?;
    let options =
        ModelOptions { formula: a.formula.clone(), weights: a.weights.clone(), missing: a.missing, csv: csv.clone() };
    let opened = model::open_inputs(inputs, &csv)?;
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
    let paths: Vec<(String, std::path::PathBuf)> =
        opened.inputs.iter().map(|i| (i.display(), i.path.clone())).collect();
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), a.engine.quiet);
    let (resolved, pass) = model::resolve_and_accumulate(options, opened, eo, &progress)?;
    let fitted_at = model::now_unix();
    let mut st = State {
        gramfit_version: env!("CARGO_PKG_VERSION").into(),
        model: resolved.options.clone(),
        column_types: resolved.column_types.clone(),
        accumulator: pass.acc,
        inputs: Vec::new(),
        fitted_at,
        elapsed_s: pass.elapsed_s,
        residuals: None,
    };
    if a.save.is_some() {
        for ((disp, p), info) in paths.iter().zip(&pass.inputs) {
            st.inputs.push(provenance(disp, p, info)?);
        }
    }
    let res = model::results_of(&resolved, &st.accumulator, &ro);
    // The second pass, when the first solved and the files can be reread.
    if res.is_ok() && rereadable && !a.report.no_second_pass {
        let t0 = std::time::Instant::now();
        let reopened = model::open_inputs(inputs, &csv)?;
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
    }
    // Save even when the solve refuses (a singular design with --singular
    // error): the statistics are worth keeping.
    if let Some(path) = &a.save {
        state::save(&st, path)?;
    }
    let mut res = res?;
    if let Some(snap) = &st.residuals {
        crate::results::apply_second_pass(&mut res, snap);
    } else if !rereadable || a.report.no_second_pass {
        res.gramfit_notes.push(no_second_pass_note(!rereadable));
    }
    let info = model::run_info(&resolved, &st.accumulator, pass.inputs, fitted_at, st.elapsed_s);
    emit(&report::render(&res, &info, a.report.format), a.report.output.as_deref())
}

fn no_second_pass_note(stdin: bool) -> String {
    format!(
        "Omnibus, skew, kurtosis, Jarque-Bera and Durbin-Watson need a second pass over the data, which {}.",
        if stdin { "a stream on stdin cannot have" } else { "was not run" }
    )
}

pub fn summary(a: &SummaryArgs) -> Result<(), AppError> {
    let st = state::load(&a.state)?;
    emit(&render_state(&st, &a.report)?, a.report.output.as_deref())
}

/// `gramfit diagnose STATE`: the second pass over the files a state
/// records (checked unchanged by SHA-256), stored in the state and reported.
pub fn diagnose(a: &DiagnoseArgs) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    let ro = report_options(&a.report)?;
    let cov = a.report.cov_type;
    check_cluster(cov, a.report.cluster.as_deref())?;
    let mut st = state::load(&a.state)?;
    if st.inputs.is_empty() {
        return Err(AppError::Data(format!("{}: the state records no input files to read again", a.state.display())));
    }
    let mut paths = Vec::new();
    for p in &st.inputs {
        let path = Path::new(&p.path);
        let (_, sha) = state::fingerprint(path).map_err(|e| {
            AppError::Data(format!("{}: recorded input {} cannot be read: {e}", a.state.display(), p.path))
        })?;
        if sha != p.sha256 {
            return Err(AppError::Data(format!(
                "{}: the recorded input {} has changed since it was folded in (sha256 differs); its residuals would not match",
                a.state.display(),
                p.path
            )));
        }
        paths.push(p.path.clone());
    }
    let resolved = Resolved::new(st.model.clone(), st.column_types.clone())?;
    let opened = model::open_inputs(&paths, &st.model.csv)?;
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), a.engine.quiet);
    let snap = model::second_pass(
        &resolved,
        &st.accumulator,
        &ro,
        model::RobustOptions { cov, cluster: a.report.cluster.as_deref() },
        opened,
        &eo,
        &progress,
    )?;
    st.residuals = Some(snap);
    state::save(&st, &a.state)?;
    emit(&render_state(&st, &a.report)?, a.report.output.as_deref())
}

/// Fingerprint the inputs of an update or retract.
fn fingerprints(opened: &model::OpenedInputs) -> Result<Vec<(String, u64, String)>, AppError> {
    let mut out = Vec::new();
    for i in &opened.inputs {
        if i.is_stdin() {
            return Err(AppError::Usage(
                "update and retract need files (their content is fingerprinted), not stdin".into(),
            ));
        }
        let (size, sha) = state::fingerprint(&i.path)?;
        out.push((i.display(), size, sha));
    }
    Ok(out)
}

fn resolved_for_state(st: &State, opened: &model::OpenedInputs) -> Result<Resolved, AppError> {
    let resolved = Resolved::new(st.model.clone(), st.column_types.clone())?;
    let needed = resolved.builder().source_columns();
    // The new files must have the model's columns with the state's types.
    let types = model::column_types(opened, &needed)?;
    for c in &needed {
        let new_t = types.iter().find(|(n, _)| n == c).map(|(_, t)| *t);
        let old_t = st.column_types.iter().find(|(n, _)| n == c).map(|(_, t)| *t);
        match (new_t, old_t) {
            (None, _) => {
                return Err(AppError::Data(format!(
                    "{}: column '{c}' is missing (the state's model uses it)",
                    opened.inputs[0].display()
                )))
            }
            (Some(n), Some(o)) if n != o => {
                return Err(AppError::Data(format!(
                    "{}: column '{c}' is {n:?} here but {o:?} in the state",
                    opened.inputs[0].display()
                )))
            }
            _ => {}
        }
    }
    Ok(resolved)
}

pub fn update(a: &UpdateArgs) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    if !a.inputs.is_empty() {
        fold_into_state(&a.state, &a.inputs, a.force, &a.report, &eo, a.engine.quiet)?;
    }
    if let Some(dir) = &a.follow.follow {
        follow(dir, &a.follow, &mut |path: &Path| {
            fold_into_state(&a.state, &[path.to_string_lossy().to_string()], a.force, &a.report, &eo, a.engine.quiet)
        })?;
    }
    Ok(())
}

/// Fold inputs into a saved state, save it, and report.
fn fold_into_state(
    state_path: &Path,
    inputs: &[String],
    force: bool,
    report: &ReportArgs,
    eo: &EngineOptions,
    quiet: bool,
) -> Result<(), AppError> {
    let mut st = state::load(state_path)?;
    let opened = model::open_inputs(inputs, &st.model.csv)?;
    let fps = fingerprints(&opened)?;
    if !force {
        for (path, _, sha) in &fps {
            if let Some(p) = st.inputs.iter().find(|p| &p.sha256 == sha) {
                return Err(AppError::Data(format!(
                    "{path}: this content is already folded into {} (as {}, sha256 {}…); nothing was changed. Use --force to add it again",
                    state_path.display(),
                    p.path,
                    &sha[..12]
                )));
            }
        }
    }
    let resolved = resolved_for_state(&st, &opened)?;
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), quiet);
    let pass = model::accumulate(&resolved, opened, eo, &progress)?;
    st.accumulator.merge(&pass.acc);
    for ((path, size, sha), info) in fps.into_iter().zip(&pass.inputs) {
        st.inputs.push(Provenance {
            path,
            size,
            sha256: sha,
            rows_read: info.rows_read,
            rows_dropped: info.rows_dropped,
        });
    }
    st.fitted_at = model::now_unix();
    st.elapsed_s = pass.elapsed_s;
    st.residuals = None;
    state::save(&st, state_path)?;
    emit(&render_state(&st, report)?, report.output.as_deref())
}

/// Is this a file a follower may read (a data file not being written)?
fn followable(p: &Path) -> bool {
    let name = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    !name.starts_with('.')
        && ![".tmp", ".part", ".partial"].iter().any(|s| name.ends_with(s))
        && crate::source::expand(&[p.to_string_lossy().to_string()]).is_ok()
        && [".parquet", ".pq", ".arrow", ".ipc", ".feather", ".arrows", ".csv", ".tsv"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Watch `dir` and call `fold` with each new complete file, in the order
/// they settle (a watcher thread sends them through a channel), until
/// Ctrl-C. A file that fails is reported and skipped; the state is never
/// half-written because every save is atomic.
fn follow(
    dir: &Path,
    f: &crate::cli::FollowArgs,
    fold: &mut dyn FnMut(&Path) -> Result<(), AppError>,
) -> Result<(), AppError> {
    if !dir.is_dir() {
        return Err(AppError::Usage(format!("--follow {}: not a directory", dir.display())));
    }
    let (tx, rx) = crossbeam_channel::unbounded::<std::path::PathBuf>();
    let poll = std::time::Duration::from_millis(f.poll_ms.max(10));
    let settle = std::time::Duration::from_millis(f.settle_ms);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let dir = dir.to_path_buf();
        let done = done.clone();
        std::thread::spawn(move || {
            // path → (size, mtime, unchanged since)
            let mut seen: HashMap<std::path::PathBuf, (u64, std::time::SystemTime, std::time::Instant)> =
                HashMap::new();
            let mut sent: std::collections::HashSet<std::path::PathBuf> = std::collections::HashSet::new();
            while !done.load(Ordering::Relaxed) && !INTERRUPTED.load(Ordering::Relaxed) {
                let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
                    .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                    .unwrap_or_default();
                entries.sort();
                let now = std::time::Instant::now();
                for p in entries {
                    if sent.contains(&p) || !p.is_file() || !followable(&p) {
                        continue;
                    }
                    let Ok(md) = std::fs::metadata(&p) else { continue };
                    let key = (md.len(), md.modified().unwrap_or(std::time::UNIX_EPOCH));
                    let entry = seen.entry(p.clone()).or_insert((key.0, key.1, now));
                    if (entry.0, entry.1) != key {
                        *entry = (key.0, key.1, now);
                    } else if now.duration_since(entry.2) >= settle && key.0 > 0 {
                        if tx.send(p.clone()).is_err() {
                            return;
                        }
                        sent.insert(p);
                    }
                }
                std::thread::sleep(poll);
            }
        })
    };
    eprintln!("gramfit: following {} (Ctrl-C to stop)", dir.display());
    loop {
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        match rx.recv_timeout(poll) {
            Ok(path) => match fold(&path) {
                Ok(()) => eprintln!("gramfit: folded in {}", path.display()),
                Err(e) if INTERRUPTED.load(Ordering::Relaxed) => {
                    eprintln!("gramfit: interrupted while reading {}; it was not added ({e})", path.display());
                    break;
                }
                Err(e) => eprintln!("gramfit: error: {e} (skipped; still following)"),
            },
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    // A clean stop, not an error.
    INTERRUPTED.store(false, Ordering::Relaxed);
    eprintln!("gramfit: stopped following {}", dir.display());
    Ok(())
}

pub fn retract(a: &RetractArgs) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    let mut st = state::load(&a.state)?;
    let opened = model::open_inputs(&a.inputs, &st.model.csv)?;
    let fps = fingerprints(&opened)?;
    let mut remove = Vec::new();
    for (path, _, sha) in &fps {
        match st.inputs.iter().position(|p| &p.sha256 == sha && !remove.contains(&p.sha256)) {
            Some(i) => remove.push(st.inputs[i].sha256.clone()),
            None => {
                return Err(AppError::Data(format!(
                    "{path}: this content was never folded into {}; nothing was changed",
                    a.state.display()
                )))
            }
        }
    }
    let resolved = resolved_for_state(&st, &opened)?;
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), a.engine.quiet);
    let pass = model::accumulate(&resolved, opened, &eo, &progress)?;
    st.accumulator.retract(&pass.acc).map_err(|e| AppError::Data(format!("{}: {e}", a.state.display())))?;
    for sha in remove {
        if let Some(i) = st.inputs.iter().position(|p| p.sha256 == sha) {
            st.inputs.remove(i);
        }
    }
    st.fitted_at = model::now_unix();
    st.elapsed_s = pass.elapsed_s;
    st.residuals = None;
    state::save(&st, &a.state)?;
    emit(&render_state(&st, &a.report)?, a.report.output.as_deref())
}

pub fn merge(a: &MergeArgs) -> Result<(), AppError> {
    let mut states = Vec::new();
    for p in &a.states {
        states.push((p, state::load(p)?));
    }
    let (first_path, first) = &states[0];
    let mut out = first.clone();
    for (p, st) in &states[1..] {
        if st.model != first.model {
            let what = if st.model.formula != first.model.formula {
                format!("formula '{}' vs '{}'", st.model.formula, first.model.formula)
            } else if st.model.weights != first.model.weights {
                format!("weights {:?} vs {:?}", st.model.weights, first.model.weights)
            } else {
                format!("missing-value policy {:?} vs {:?}", st.model.missing, first.model.missing)
            };
            return Err(AppError::Data(format!(
                "{} and {} are not states of the same model: {what}",
                p.display(),
                first_path.display()
            )));
        }
        let resolved = Resolved::new(first.model.clone(), first.column_types.clone())?;
        for c in resolved.spec.source_columns() {
            let t1 = first.column_types.iter().find(|(n, _)| *n == c).map(|x| x.1);
            let t2 = st.column_types.iter().find(|(n, _)| *n == c).map(|x| x.1);
            if t1 != t2 {
                return Err(AppError::Data(format!(
                    "{} and {}: column '{c}' has type {t2:?} in one and {t1:?} in the other",
                    p.display(),
                    first_path.display()
                )));
            }
        }
        for prov in &st.inputs {
            if !prov.sha256.is_empty() && out.inputs.iter().any(|q| q.sha256 == prov.sha256) {
                return Err(AppError::Data(format!(
                    "{}: the input {} (sha256 {}…) is already in another state being merged; merging would count it twice",
                    p.display(),
                    prov.path,
                    &prov.sha256[..12.min(prov.sha256.len())]
                )));
            }
        }
        out.accumulator.merge(&st.accumulator);
        out.inputs.extend(st.inputs.iter().cloned());
        out.elapsed_s += st.elapsed_s;
    }
    out.fitted_at = model::now_unix();
    out.residuals = None;
    state::save(&out, &a.out)?;
    emit(&render_state(&out, &a.report)?, a.report.output.as_deref())
}

/// `gramfit design`: the response and design matrix rows, patsy-style.
pub fn design(a: &DesignArgs) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    let csv = a.csv.options().map_err(AppError::Usage)?;
    let options = ModelOptions { formula: a.formula.clone(), weights: None, missing: a.missing, csv: csv.clone() };
    let opened = model::open_inputs(&a.inputs, &csv)?;
    if opened.stdin.is_some() {
        return Err(AppError::Usage("design reads its inputs twice and cannot take stdin".into()));
    }
    let inputs = opened.inputs.clone();
    let schemas = opened.schemas.clone();
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), a.engine.quiet);
    // First pass: levels (patsy codes with the levels of all the data).
    let (resolved, pass) = model::resolve_and_accumulate(options, opened, &eo, &progress)?;
    let design =
        design_columns(&resolved.spec, &pass.acc.level_sets(), pass.acc.stats.keys()).map_err(FitError::from)?;
    let names = design.names();
    let yname = resolved.spec.response.name.clone();
    let builder = resolved.builder();
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let limit = if a.head == 0 { usize::MAX } else { a.head };
    'outer: for (i, input) in inputs.iter().enumerate() {
        let mut cols = resolved.spec.source_columns();
        cols.dedup();
        let batches: crate::source::Batches = if input.kind == crate::source::SourceKind::Parquet {
            let meta = crate::source::parquet_metadata(input).map_err(FitError::from)?;
            // Row groups one after another, each opened when reached.
            let input = input.clone();
            let (float_pages, batch_size) = (eo.float_pages, eo.batch_size);
            Box::new((0..meta.metadata().num_row_groups()).flat_map(move |rg| {
                match crate::source::parquet_row_group(&input, &meta, rg, &cols, &[], float_pages, batch_size) {
                    Ok(r) => Box::new(r) as crate::source::Batches,
                    Err(e) => Box::new(std::iter::once(Err(arrow::error::ArrowError::ExternalError(Box::new(e))))),
                }
            }))
        } else {
            let read = crate::source::SequentialRead {
                csv: &csv,
                columns: &cols,
                batch_size: eo.batch_size,
                from: Default::default(),
                end: None,
            };
            crate::source::sequential_batches(input, schemas[i].clone(), &read).map_err(FitError::from)?
        };
        for b in batches {
            let b = b.map_err(|e| AppError::Data(format!("{}: {e}", input.display())))?;
            let block = builder
                .block(&b, &|r| format!("row {r}"))
                .map_err(|e| AppError::Data(format!("{}: {e}", input.display())))?;
            let pos: HashMap<&ColumnKey, usize> = block.keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
            let y = pos[&ColumnKey::Response];
            for r in 0..block.nrows() {
                let mut row = vec![block.value(y, r)];
                if design.intercept {
                    row.push(1.0);
                }
                for c in &design.columns {
                    let mut v = 0.0;
                    for cell in &c.cells {
                        if let Some(&j) = pos.get(cell) {
                            v += block.value(j, r);
                        }
                    }
                    row.push(v);
                }
                rows.push(row);
                if rows.len() >= limit {
                    break 'outer;
                }
            }
        }
    }
    let mut header = vec![yname];
    header.extend(names);
    let text = match a.format {
        DesignFormat::Csv => {
            let mut s = header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",");
            s.push('\n');
            for r in &rows {
                s.push_str(&r.iter().map(|v| python_float_repr(*v)).collect::<Vec<_>>().join(","));
                s.push('\n');
            }
            s
        }
        DesignFormat::Text => {
            let cells: Vec<Vec<String>> =
                rows.iter().map(|r| r.iter().map(|v| python_float_repr(*v)).collect()).collect();
            let widths: Vec<usize> = (0..header.len())
                .map(|j| cells.iter().map(|r| r[j].len()).chain([header[j].chars().count()]).max().unwrap_or(0))
                .collect();
            let mut s = String::new();
            let line =
                |v: &[String]| v.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect::<Vec<_>>().join("  ");
            s.push_str(&line(&header));
            s.push('\n');
            for r in &cells {
                s.push_str(&line(r));
                s.push('\n');
            }
            s.push_str(&format!(
                "[{} of {} rows used ({} dropped for missing values); {} design columns]\n",
                rows.len(),
                pass.acc.rows_read - pass.acc.rows_dropped,
                pass.acc.rows_dropped,
                header.len() - 1
            ));
            s
        }
    };
    emit(&text, None)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `gramfit corr`: correlations streamed from the same statistics.
pub fn corr(a: &CorrArgs) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    let formula = match &a.formula {
        Some(f) => f.clone(),
        None => {
            if a.columns.len() < 2 {
                return Err(AppError::Usage("--columns needs at least two columns".into()));
            }
            let q = |c: &String| format!("Q('{}')", c.replace('\'', "\\'"));
            format!("{} ~ {}", q(&a.columns[0]), a.columns[1..].iter().map(q).collect::<Vec<_>>().join(" + "))
        }
    };
    let csv = a.csv.options().map_err(AppError::Usage)?;
    let options = ModelOptions { formula, weights: None, missing: MissingPolicy::Drop, csv: csv.clone() };
    let opened = model::open_inputs(&a.inputs, &csv)?;
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), a.engine.quiet);
    let (resolved, pass) = model::resolve_and_accumulate(options, opened, &eo, &progress)?;
    let design =
        design_columns(&resolved.spec, &pass.acc.level_sets(), pass.acc.stats.keys()).map_err(FitError::from)?;
    let ne = NormalEquations::from_state(&pass.acc, &design);
    // Names: response first (as given), then the design columns.
    let off = usize::from(ne.intercept);
    let k = ne.k();
    let mut names = vec![if a.formula.is_some() { resolved.spec.response.name.clone() } else { a.columns[0].clone() }];
    let mut order = vec![k];
    for j in 0..k {
        let n = ne.names[off + j].clone();
        names.push(match &a.formula {
            Some(_) => n,
            None => a.columns[1 + j].clone(),
        });
        order.push(j);
    }
    let m = k + 1;
    let c = |i: usize, j: usize| ne.comoment[i * m + j].to_f64();
    let matrix: Vec<Vec<Option<f64>>> = order
        .iter()
        .map(|&i| {
            order
                .iter()
                .map(|&j| {
                    let (a, b) = (c(i, i), c(j, j));
                    (a > 0.0 && b > 0.0).then(|| c(i, j) / (a.sqrt() * b.sqrt()))
                })
                .collect()
        })
        .collect();
    let cm = crate::report::corr::CorrMatrix {
        names,
        matrix,
        nobs: pass.acc.rows_read - pass.acc.rows_dropped,
        threshold: a.threshold,
    };
    if let Some(svg) = &a.svg {
        state::write_atomic(svg, cm.svg().as_bytes())?;
    }
    let info = RunInfo { formula: resolved.options.formula.clone(), ..Default::default() };
    let _ = info;
    emit(&cm.render(a.format), None)
}
