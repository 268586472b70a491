//! Keeping a saved fit current: fold new files in (`update`, and follow
//! mode), take files out (`retract`), combine shards (`merge`), rerun the
//! second pass (`diagnose`). Each holds the state's lock for its whole
//! read–fold–write cycle, so that concurrent writers serialize and no
//! update is lost; each writes the state atomically.

use super::follow::Folded;
use crate::cli::{DiagnoseArgs, MergeArgs, ReportArgs, RetractArgs, UpdateArgs};
use crate::engine::{EngineOptions, Progress};
use crate::model::{self, Resolved};
use crate::progress::ProgressDisplay;
use crate::source::csv::ReadFrom;
use crate::source::Input;
use crate::state::growth::{self, Seen};
use crate::state::lock::{self, StateLock, Wait};
use crate::state::{self, Provenance, State, StateError};
use std::path::Path;
use std::sync::Arc;

use super::{check_cluster, emit, engine_options, render_state, report_options, AppError};

/// The command line as typed, for the lock's record of its holder.
pub(crate) fn command_line() -> String {
    let mut s = std::env::args().collect::<Vec<_>>().join(" ");
    if s.len() > 300 {
        let cut = (0..=300).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Take the lock of `state_path`, saying on stderr who holds it while
/// waiting and when a dead holder's lock is taken over.
pub(crate) fn lock_state(state_path: &Path, wait: Wait) -> Result<StateLock, AppError> {
    Ok(lock::lock(state_path, &command_line(), wait, &mut |n| eprintln!("gramfit: {n}")).map_err(StateError::from)?)
}

/// `gramfit diagnose STATE`: the second pass over the files a state
/// records (checked unchanged), stored in the state and reported.
pub fn diagnose(a: &DiagnoseArgs) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    let ro = report_options(&a.report)?;
    let cov = a.report.cov_type;
    check_cluster(cov, a.report.cluster.as_deref())?;
    let _lock = lock_state(&a.state, a.lock.wait().map_err(AppError::Usage)?)?;
    let mut st = state::load(&a.state)?;
    // (An absorbed state's formula is refused below, naming what takes it.)
    if st.absorbed.as_ref().is_some_and(|p| p.estimated_term.is_some()) {
        return Err(AppError::Usage(format!(
            "{}: diagnose is not available yet for a fit with a factor estimated by blocks; gramfit fit … gives its second pass",
            a.state.display()
        )));
    }
    if st.inputs.is_empty() {
        return Err(AppError::Data(format!("{}: the state records no input files to read again", a.state.display())));
    }
    let inputs = recorded_inputs(&st, &a.state)?;
    let resolved = Resolved::new(st.model.clone(), st.column_types.clone())?;
    let mut opened = model::open_inputs(&inputs.iter().map(|(i, _)| i.display()).collect::<Vec<_>>(), &st.model.csv)?;
    for (input, (recorded, _)) in opened.inputs.iter_mut().zip(&inputs) {
        input.from = recorded.from;
    }
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), a.engine.quiet);
    progress.set_label("diagnose (second pass)");
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
    st.stale_second_pass = None;
    state::save(&st, &a.state)?;
    emit(&render_state(&st, &a.report)?, a.report.output.as_deref())
}

/// The files a state records, each checked to hold what was folded in (a
/// file grown since is read only as far as it was folded: its residuals
/// must be those of the rows in the statistics).
fn recorded_inputs(st: &State, state_path: &Path) -> Result<Vec<(Input, u64)>, AppError> {
    let mut out = Vec::new();
    for p in &st.inputs {
        let path = Path::new(&p.path);
        let expanded = crate::source::expand(std::slice::from_ref(&p.path)).map_err(|e| {
            AppError::Data(format!("{}: recorded input {} cannot be read: {e}", state_path.display(), p.path))
        })?;
        let mut input = expanded
            .into_iter()
            .next()
            .ok_or_else(|| AppError::Data(format!("{}: recorded input {} is gone", state_path.display(), p.path)))?;
        let (_, sha) = state::fingerprint_prefix(path, p.size)?;
        if sha != p.sha256 {
            return Err(AppError::Data(format!(
                "{}: the recorded input {} has changed since it was folded in (its first {} bytes differ); its residuals would not match",
                state_path.display(),
                p.path,
                p.size
            )));
        }
        // Rows past those folded in (a file grown since, a pending tail)
        // stay out.
        let records = p.csv_end.map_or(p.file_rows.max(p.rows_read), |e| e.records);
        input.from = ReadFrom { limit: Some(records), ..ReadFrom::default() };
        out.push((input, p.rows_read));
    }
    Ok(out)
}

/// The model of a state (with its absorbed columns, if any), checked
/// against the columns of new inputs.
fn resolved_for_state(st: &State, opened: &model::OpenedInputs) -> Result<(Resolved, Option<Vec<String>>), AppError> {
    let (resolved, absorbed) = match super::absorbed::state_model(st)? {
        Some((r, columns)) => (r, Some(columns)),
        None => (Resolved::new(st.model.clone(), st.column_types.clone())?, None),
    };
    let mut needed = resolved.builder().source_columns();
    for c in absorbed.iter().flatten() {
        if !needed.contains(c) {
            needed.push(c.clone());
        }
    }
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
    Ok((resolved, absorbed))
}

pub fn update(a: &UpdateArgs) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    let wait = a.lock.wait().map_err(AppError::Usage)?;
    let fold = FoldOptions {
        force: a.force,
        hold_tail: false,
        skip_folded: false,
        report: &a.report,
        engine: &eo,
        quiet: a.engine.quiet,
        wait,
    };
    if !a.inputs.is_empty() {
        fold_into_state(&a.state, &a.inputs, &fold)?;
    }
    if let Some(dir) = &a.follow.follow {
        super::follow::follow(dir, &a.follow, &mut |path: &Path, hold_tail: bool| {
            fold_into_state(&a.state, &[path.to_string_lossy().to_string()], &FoldOptions { hold_tail, ..fold })
        })?;
    }
    Ok(())
}

/// How to fold files into a state.
#[derive(Clone, Copy)]
pub(crate) struct FoldOptions<'a> {
    /// Fold in content the state already holds (again).
    pub force: bool,
    /// Leave an unterminated last CSV line pending (follow mode).
    pub hold_tail: bool,
    /// Pass over inputs already folded in (a batch job run every night
    /// over a growing list of files) instead of refusing them.
    pub skip_folded: bool,
    pub report: &'a ReportArgs,
    pub engine: &'a EngineOptions,
    pub quiet: bool,
    pub wait: Wait,
}

/// Fold inputs into a saved state — new files whole, grown files from
/// where their last read stopped — under the state's lock; save and report.
pub(crate) fn fold_into_state(state_path: &Path, inputs: &[String], o: &FoldOptions<'_>) -> Result<Folded, AppError> {
    let _lock = lock_state(state_path, o.wait)?;
    let mut st = state::load(state_path)?;
    let mut opened = model::open_inputs(inputs, &st.model.csv)?;
    // Per input: the recorded input it grows, if any.
    let mut grows: Vec<Option<usize>> = Vec::new();
    let mut passed_over: Vec<usize> = Vec::new();
    for (at, input) in opened.inputs.iter_mut().enumerate() {
        if input.is_stdin() || input.kind == crate::source::SourceKind::Memory {
            return Err(AppError::Usage(
                "update needs files (their content is fingerprinted), not stdin or data in memory".into(),
            ));
        }
        let (size, sha) = state::fingerprint(&input.path)?;
        let seen = if o.force { Seen::New } else { growth::classify(&st.inputs, input, size, &sha, o.hold_tail)? };
        match seen {
            Seen::New => {
                input.from = ReadFrom { hold_tail: o.hold_tail, ..ReadFrom::default() };
                grows.push(None);
            }
            Seen::Grown { index, from } => {
                input.from = from;
                grows.push(Some(index));
            }
            Seen::AlreadyIn { .. } if o.skip_folded => passed_over.push(at),
            Seen::AlreadyIn { recorded } => {
                return Err(AppError::Data(format!(
                    "{}: this content is already folded into {} (as {recorded}, sha256 {}…); nothing was changed. Use --force to add it again",
                    input.display(),
                    state_path.display(),
                    &sha[..12]
                )));
            }
            Seen::Changed { why } => {
                return Err(AppError::Data(format!("{why}; nothing was changed")));
            }
        }
    }
    for &at in passed_over.iter().rev() {
        opened.inputs.remove(at);
        opened.schemas.remove(at);
    }
    if opened.inputs.is_empty() {
        eprintln!("gramfit: {}: every input is already in it; nothing was changed", state_path.display());
        return Ok(Folded::Nothing { tail_pending: false });
    }
    let (resolved, absorbed) = resolved_for_state(&st, &opened)?;
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), o.quiet);
    progress.set_label("update");
    let read: Vec<Input> = opened.inputs.clone();
    let (pass, pass_inputs, elapsed_s) =
        super::absorbed::pass_for_state(&resolved, absorbed.as_deref(), opened, o.engine, &progress)?;
    let new_rows: u64 = pass_inputs.iter().map(|i| i.file_rows).sum();
    let tail_pending = pass_inputs.iter().any(|i| i.end.is_some_and(|e| e.tail_pending));
    if new_rows == 0 && grows.iter().all(Option::is_some) {
        eprintln!("gramfit: {}: no new complete row to fold in; nothing was changed", inputs.join(", "));
        return Ok(Folded::Nothing { tail_pending });
    }
    pass.merge_into(&mut st);
    for ((input, info), grown) in read.iter().zip(&pass_inputs).zip(grows) {
        let mut p = growth::record(input, info)?;
        match grown {
            Some(i) => {
                let old = &st.inputs[i];
                p.rows_read += old.rows_read;
                p.rows_dropped += old.rows_dropped;
                p.file_rows += old.file_rows.max(old.rows_read);
                st.inputs[i] = p;
            }
            None => st.inputs.push(p),
        }
    }
    st.fitted_at = model::now_unix();
    st.elapsed_s = elapsed_s;
    st.drop_second_pass();
    state::save(&st, state_path)?;
    emit(&render_state(&st, o.report)?, o.report.output.as_deref())?;
    Ok(Folded::Saved { tail_pending })
}

pub fn retract(a: &RetractArgs) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    let _lock = lock_state(&a.state, a.lock.wait().map_err(AppError::Usage)?)?;
    let mut st = state::load(&a.state)?;
    let mut opened = model::open_inputs(&a.inputs, &st.model.csv)?;
    let mut remove: Vec<usize> = Vec::new();
    for input in opened.inputs.iter_mut() {
        if input.is_stdin() || input.kind == crate::source::SourceKind::Memory {
            return Err(AppError::Usage(
                "retract needs files (their content is fingerprinted), not stdin or data in memory".into(),
            ));
        }
        let (size, sha) = state::fingerprint(&input.path)?;
        let found = st.inputs.iter().enumerate().position(|(i, p)| {
            !remove.contains(&i) && (p.sha256 == sha && p.size == size || pending_tail_only(p, input, size))
        });
        match found {
            Some(i) => {
                // A pending tail was never folded in: it stays out.
                let p = &st.inputs[i];
                let records = p.csv_end.map_or(p.file_rows.max(p.rows_read), |e| e.records);
                input.from = ReadFrom { limit: Some(records), ..ReadFrom::default() };
                remove.push(i);
            }
            None => {
                return Err(AppError::Data(format!(
                    "{}: this content was never folded into {} (a file that grew since must be retracted as it was folded); nothing was changed",
                    input.display(),
                    a.state.display()
                )))
            }
        }
    }
    let (resolved, absorbed) = resolved_for_state(&st, &opened)?;
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), a.engine.quiet);
    progress.set_label("retract");
    let (pass, pass_inputs, elapsed_s) =
        super::absorbed::pass_for_state(&resolved, absorbed.as_deref(), opened, &eo, &progress)?;
    for (info, &i) in pass_inputs.iter().zip(&remove) {
        if info.rows_read != st.inputs[i].rows_read {
            return Err(AppError::Data(format!(
                "{}: {} rows read now, {} when it was folded in; nothing was changed",
                info.path, info.rows_read, st.inputs[i].rows_read
            )));
        }
    }
    pass.retract_from(&mut st).map_err(|e| AppError::Data(format!("{}: {e}", a.state.display())))?;
    remove.sort_unstable();
    for i in remove.into_iter().rev() {
        st.inputs.remove(i);
    }
    st.fitted_at = model::now_unix();
    st.elapsed_s = elapsed_s;
    st.drop_second_pass();
    state::save(&st, &a.state)?;
    if st.accumulator.rows_read == 0 {
        // Nothing to report, and nothing wrong: the state waits for files.
        eprintln!("gramfit: {}: every input was retracted; the state holds no rows now", a.state.display());
        return Ok(());
    }
    emit(&render_state(&st, &a.report)?, a.report.output.as_deref())
}

/// `p` recorded this file as it is now but for an unterminated last line
/// left pending (never folded in).
fn pending_tail_only(p: &Provenance, input: &Input, size: u64) -> bool {
    p.path == input.display()
        && p.csv_end.is_some_and(|e| e.tail_pending)
        && size > p.size
        && state::fingerprint_prefix(&input.path, p.size).is_ok_and(|(_, sha)| sha == p.sha256)
        && !tail_has_line_end(input, p.size)
}

/// Whether the bytes of a file after `at` hold a line end.
fn tail_has_line_end(input: &Input, at: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(&input.path) else { return true };
    let mut rest = Vec::new();
    f.seek(SeekFrom::Start(at)).and_then(|_| f.read_to_end(&mut rest)).map_or(true, |_| rest.contains(&b'\n'))
}

pub fn merge(a: &MergeArgs) -> Result<(), AppError> {
    // The output may be one of the inputs: its lock covers the whole merge.
    let _lock = lock_state(&a.out, a.lock.wait().map_err(AppError::Usage)?)?;
    let mut states = Vec::new();
    for p in &a.states {
        states.push((p.display().to_string(), state::load(p)?));
    }
    let out = super::parts::merge_states(states)?;
    state::save(&out, &a.out)?;
    emit(&render_state(&out, &a.report)?, a.report.output.as_deref())
}
