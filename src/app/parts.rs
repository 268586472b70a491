//! A fit in parts, for programs that hold the data and split it
//! themselves — the Python package's `Accumulator`, Spark's and Dask's
//! partitions: the first pass over one part as a state ([`first_pass`]),
//! states merged in a fixed order ([`merge_states`], what `gramfit merge`
//! does), the second pass over one part as residual sums
//! ([`residual_part`]: a plain model's residual moments and robust meat,
//! or an absorbed model's scores), and the parts' sums merged in row
//! order into the merged state's report ([`finish_parts`]).
//!
//! Why this reports what one `gramfit fit` over the parts in order
//! reports: the first pass's statistics merge exactly (fit(A ∪ B) =
//! merge(fit A, fit B), the merge laws the tests prove), and the second
//! pass's sums are those of the rows with the merged fit's β; they add,
//! and Durbin–Watson adds the difference across each seam between parts
//! merged in row order. The order of merging is the caller's: a fixed one
//! (by partition index) gives the same bits on every run.

use crate::cli::{FitArgs, ReportArgs};
use crate::engine::Progress;
use crate::factors::{AbsorbResiduals, AbsorbScores, ResidualPlan};
use crate::formula::absorb::{split_absorbed, Absorbed};
use crate::model::{self, Resolved};
use crate::report::Report;
use crate::residuals::ResidualStats;
use crate::source::SourceKind;
use crate::state::{growth, Provenance, State};
use std::ops::Range;
use std::sync::Arc;

use super::{check_cluster, engine_options, report_options, AppError};

/// The first pass over `a.inputs` as a state (no solve, no second pass,
/// nothing saved): a part of a fit to be merged with the others. With
/// `row_groups`, only those row groups of each Parquet input are read (a
/// file split into parts by row group).
pub fn first_pass(a: &FitArgs, row_groups: Option<Range<usize>>) -> Result<State, AppError> {
    refuse_unsupported(a)?;
    let eo = engine_options(&a.engine)?;
    let (options, absorbed) = model_options(a)?;
    let mut opened = model::open_inputs(&a.inputs, &options.csv)?;
    select_row_groups(&mut opened, row_groups)?;
    if let Some(ab) = &absorbed {
        return super::absorbed::first_pass_state(a, ab, options, opened, &eo);
    }
    let read = opened.inputs.clone();
    let resolved = model::resolve(options, &opened)?;
    let levels = dense_levels(&resolved);
    let mut builder = resolved.builder();
    builder.level_limits = levels.blocks.iter().map(|b| (b.factor, levels.limit)).collect();
    let pass = model::accumulate_by(&builder, opened, &eo, &Progress::default()).map_err(|e| {
        match super::estimated::many_levels(&e) {
            Some(f) => levels.refusal(f, &resolved.spec.factors[f].name, WHY_DENSE),
            None => e.into(),
        }
    })?;
    let mut st = State::new(
        resolved.options.clone(),
        resolved.column_types.clone(),
        pass.acc,
        None,
        Vec::new(),
        model::now_unix(),
        pass.elapsed_s,
    );
    for (input, info) in read.iter().zip(&pass.inputs) {
        st.inputs.push(growth::record(input, info)?);
    }
    Ok(st)
}

/// The first pass over one group's rows (a task of a grouped fit, such as
/// Spark's `applyInArrow`): a state that records its group (`by` = the
/// level), as `gramfit fit --by COL --save` writes one per group, so that
/// `update` later folds in only that group's rows. Refused unless the
/// rows hold exactly one level of `by`, and for absorbed fixed effects
/// (whose states record no group yet, as `fit --by` refuses them).
pub fn group_first_pass(a: &FitArgs, by: &str) -> Result<State, AppError> {
    refuse_unsupported(a)?;
    let eo = engine_options(&a.engine)?;
    let (options, absorbed) = model_options(a)?;
    if let Some(ab) = absorbed {
        return Err(AppError::Usage(format!(
            "a group's state of absorbed fixed effects ('| {}') would not record its group: fit them without saving, or put the factor in the formula as C(…)",
            ab.columns.join(" + ")
        )));
    }
    let opened = model::open_inputs(&a.inputs, &options.csv)?;
    let read = opened.inputs.clone();
    let resolved = model::resolve(options, &opened)?;
    let grouped = crate::grouped::fit(&resolved, by, opened, &eo, &Progress::default())?;
    let [group] = grouped.groups.as_slice() else {
        return Err(AppError::Data(format!(
            "a group's rows hold {} levels of '{by}' (one expected)",
            grouped.groups.len()
        )));
    };
    let prints = &mut crate::state::growth::Fingerprints::default();
    Ok(crate::grouped::state_of(group, &read, prints, model::now_unix(), grouped.elapsed_s)?)
}

/// [`first_pass`] with the factor of column `column` estimated by blocks
/// (per-level sums, not dense dummies: a factor of thousands of levels).
/// Every part of a fit must be read the same way: the caller decides for
/// all of them (the Python package's distributed fits do, from the
/// factor's count of levels in the data, past
/// [`dense_levels`](crate::factors::estimated::dense_levels)).
pub fn first_pass_by_blocks(a: &FitArgs, row_groups: Option<Range<usize>>, column: &str) -> Result<State, AppError> {
    refuse_unsupported(a)?;
    let eo = engine_options(&a.engine)?;
    let (options, absorbed) = model_options(a)?;
    if absorbed.is_some() {
        return Err(AppError::Usage("a model with absorbed fixed effects estimates no factor by blocks".into()));
    }
    let mut opened = model::open_inputs(&a.inputs, &options.csv)?;
    select_row_groups(&mut opened, row_groups)?;
    let resolved = model::resolve(options, &opened)?;
    let Some(bf) = crate::factors::estimated::block_factors(&resolved.spec).into_iter().find(|b| b.column == column)
    else {
        return Err(AppError::Usage(format!(
            "'{column}' is not a factor of this model that can be estimated by blocks (C({column}) as a term of its own, in a model with an intercept)"
        )));
    };
    super::estimated::first_pass_state(&resolved, &bf, opened, &eo)
}

/// The factors of `a`'s model that a fit in parts may estimate by blocks
/// (their source columns), in the formula's order: what a distributed
/// fit counts the levels of before its first pass.
pub fn block_candidates(a: &FitArgs) -> Result<Vec<String>, AppError> {
    let (options, absorbed) = model_options(a)?;
    if absorbed.is_some() {
        return Ok(Vec::new());
    }
    let opened = model::open_inputs(&a.inputs, &options.csv)?;
    let resolved = Resolved::new(options, model::column_types(&opened, &[])?)?;
    Ok(crate::factors::estimated::block_factors(&resolved.spec).into_iter().map(|b| b.column).collect())
}

/// Why a fit in parts sums a factor's dummies densely: a part read without
/// [`first_pass_by_blocks`] (an `Accumulator`'s batches, seen once; the
/// distributed fits count the levels first and choose blocks past
/// `dense_levels`).
const WHY_DENSE: &str =
    "a fit in parts that sums dummies (an Accumulator made without blocks='COLUMN', which it needs from its first batch)";

/// The limit on the levels of a factor whose dummies a fit in parts sums
/// densely: `fit`'s own limit where it cannot start over by blocks.
fn dense_levels(resolved: &Resolved) -> super::estimated::LevelPlan {
    super::estimated::LevelPlan {
        blocks: crate::factors::estimated::block_factors(&resolved.spec),
        limit: super::estimated::DENSE_LEVELS_MAX,
        why_dense: Some(WHY_DENSE),
    }
}

/// The model a fit's arguments describe (an absorbed one's formula before
/// its `|`), and the absorbed factors if any.
fn model_options(a: &FitArgs) -> Result<(model::ModelOptions, Option<Absorbed>), AppError> {
    let csv = a.csv.options().map_err(AppError::Usage)?;
    let absorbed = split_absorbed(&a.formula).map_err(model::FitError::from)?;
    let options = model::ModelOptions {
        formula: absorbed.as_ref().map_or_else(|| a.formula.clone(), |ab| ab.formula.clone()),
        weights: a.weights.clone(),
        missing: a.missing,
        csv,
        group: None,
    };
    Ok((options, absorbed))
}

/// The columns a fit of `a.inputs` reads (the model's, the weights', the
/// cluster column of a cluster-robust fit), in the first input's order of
/// mention: what a distributed fit selects before handing rows to its
/// tasks (an engine that decodes and converts only those).
pub fn model_columns(a: &FitArgs) -> Result<Vec<String>, AppError> {
    refuse_unsupported(a)?;
    let (options, absorbed) = model_options(a)?;
    let opened = model::open_inputs(&a.inputs, &options.csv)?;
    let mut columns = match &absorbed {
        Some(ab) => {
            let resolved = Resolved::new(options, model::column_types(&opened, &[])?)?;
            super::absorbed::model_columns(&resolved, &ab.columns)
        }
        None => model::resolve(options, &opened)?.builder().source_columns(),
    };
    if let Some(c) = a.report.cluster.as_deref().filter(|_| a.report.cov_type == crate::second_pass::CovType::Cluster) {
        if !columns.iter().any(|x| x == c) {
            columns.push(c.to_string());
        }
    }
    Ok(columns)
}

fn select_row_groups(opened: &mut model::OpenedInputs, row_groups: Option<Range<usize>>) -> Result<(), AppError> {
    let Some(groups) = row_groups else {
        return Ok(());
    };
    for input in &mut opened.inputs {
        if input.kind != SourceKind::Parquet {
            return Err(AppError::Usage(format!("{}: row groups are parts of Parquet files only", input.display())));
        }
        input.row_groups = Some(groups.clone());
    }
    Ok(())
}

/// What parts do not take, said before any work (on a distributed fit's
/// driver, before its tasks run).
fn refuse_unsupported(a: &FitArgs) -> Result<(), AppError> {
    if a.by.is_some() {
        return Err(AppError::Usage("a fit in parts takes no --by: fit each group's parts apart".into()));
    }
    if split_absorbed(&a.formula).map_err(model::FitError::from)?.is_some() {
        super::absorbed::check_cov(&a.report)?;
    }
    Ok(())
}

/// `states` merged in the order given (the first's model; each must be a
/// state of the same model, and no fingerprinted input may be in two).
/// Inputs without a fingerprint (data lent from memory, stdin) that share
/// a name are listed once with their rows added: an accumulator updated a
/// thousand times does not list a thousand tables.
pub fn merge_states(states: Vec<(String, State)>) -> Result<State, AppError> {
    let mut states = states.into_iter();
    let Some((first_name, first)) = states.next() else {
        return Err(AppError::Usage("no states to merge".into()));
    };
    let mut out = first.clone();
    for (name, st) in states {
        check_same_model(&first_name, &first, &name, &st)?;
        for prov in &st.inputs {
            if !prov.sha256.is_empty() && out.inputs.iter().any(|q| q.sha256 == prov.sha256) {
                return Err(AppError::Data(format!(
                    "{name}: the input {} (sha256 {}…) is already in another state being merged; merging would count it twice",
                    prov.path,
                    &prov.sha256[..12.min(prov.sha256.len())]
                )));
            }
        }
        match &st.absorbed {
            Some(part) => {
                let acc = crate::factors::AbsorbAccumulator::from_parts(st.accumulator.clone(), part.clone());
                super::absorbed::Pass::Absorbed(Box::new(acc)).merge_into(&mut out)
            }
            None => out.accumulator.merge(&st.accumulator),
        }
        for prov in &st.inputs {
            add_provenance(&mut out.inputs, prov);
        }
        out.elapsed_s += st.elapsed_s;
    }
    out.fitted_at = model::now_unix();
    out.drop_second_pass();
    Ok(out)
}

/// [`merge_states`] for the parts of one fit ([`first_pass`]'s states):
/// refused when a factor summed densely has more levels than a fit in
/// parts takes — each part may be below the limit and all of them
/// together past it.
pub fn merge_parts(states: Vec<(String, State)>) -> Result<State, AppError> {
    let out = merge_states(states)?;
    if out.absorbed.is_none() {
        let resolved = Resolved::new(out.model.clone(), out.column_types.clone())?;
        let levels = dense_levels(&resolved);
        for b in &levels.blocks {
            if out.accumulator.levels.get(b.factor).map_or(0, |l| l.len()) > levels.limit {
                return Err(levels.refusal(b.factor, &resolved.spec.factors[b.factor].name, WHY_DENSE));
            }
        }
    }
    Ok(out)
}

fn add_provenance(inputs: &mut Vec<Provenance>, prov: &Provenance) {
    if prov.sha256.is_empty() {
        if let Some(q) = inputs.iter_mut().find(|q| q.sha256.is_empty() && q.path == prov.path) {
            q.rows_read += prov.rows_read;
            q.rows_dropped += prov.rows_dropped;
            q.file_rows += prov.file_rows;
            return;
        }
    }
    inputs.push(prov.clone());
}

/// Refuse to merge `st` into `first` unless they are states of the same
/// kind, model and column types.
fn check_same_model(first_name: &str, first: &State, name: &str, st: &State) -> Result<(), AppError> {
    let kind = |s: &State| s.absorbed.as_ref().map(|p| p.estimated_term);
    if kind(st) != kind(first) {
        return Err(AppError::Data(format!(
            "{name} and {first_name} are not states of the same kind: {}; fit them alike (the same levels threshold, or absorb the factor)",
            "one estimates a factor by blocks, the other as dense dummies"
        )));
    }
    if st.model != first.model {
        let (m, f) = (&st.model, &first.model);
        let what = if m.formula != f.formula {
            format!("formula '{}' vs '{}'", m.formula, f.formula)
        } else if m.weights != f.weights {
            format!("weights {:?} vs {:?}", m.weights, f.weights)
        } else if m.group != f.group {
            let g = |g: &Option<model::Group>| {
                g.as_ref().map_or("all rows".to_string(), |g| format!("the group {} = {}", g.column, g.level))
            };
            format!("{} vs {}", g(&m.group), g(&f.group))
        } else if m.csv != f.csv {
            format!("CSV reading options {:?} vs {:?}", m.csv, f.csv)
        } else {
            format!("missing-value policy {:?} vs {:?}", m.missing, f.missing)
        };
        return Err(AppError::Data(format!("{name} and {first_name} are not states of the same model: {what}")));
    }
    let (resolved, absorbed) = match super::absorbed::state_model(first)? {
        Some((r, columns)) => (r, columns),
        None => (Resolved::new(first.model.clone(), first.column_types.clone())?, Vec::new()),
    };
    for c in resolved.spec.source_columns().into_iter().chain(absorbed) {
        let t1 = first.column_types.iter().find(|(n, _)| *n == c).map(|x| x.1);
        let t2 = st.column_types.iter().find(|(n, _)| *n == c).map(|x| x.1);
        if t1 != t2 {
            return Err(AppError::Data(format!(
                "{name} and {first_name}: column '{c}' has type {t2:?} in one and {t1:?} in the other"
            )));
        }
    }
    Ok(())
}

/// A part's second-pass sums: a plain model's residual sums, or an
/// absorbed model's scores (the meat of its robust covariance).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum ResidualPart {
    Plain(Box<ResidualStats>),
    Absorbed(Box<AbsorbScores>),
}

impl ResidualPart {
    /// The rows the sums cover.
    pub fn rows(&self) -> u64 {
        match self {
            ResidualPart::Plain(s) => s.n,
            ResidualPart::Absorbed(s) => s.rows_used(),
        }
    }
}

/// The second pass's sums over `a.inputs` (a part of the rows, read with
/// the state's model) with the merged fit's β from `st`; the covariance
/// asked for is `a.report`'s; `row_groups` as in [`first_pass`].
pub fn residual_part(st: &State, a: &FitArgs, row_groups: Option<Range<usize>>) -> Result<ResidualPart, AppError> {
    let eo = engine_options(&a.engine)?;
    let mut opened = model::open_inputs(&a.inputs, &st.model.csv)?;
    select_row_groups(&mut opened, row_groups)?;
    let by_level = |plan: &Arc<ResidualPlan>, builder: &crate::design::DesignBuilder, opened| {
        let empty = || AbsorbResiduals::new(plan.clone());
        let (r, _) = crate::engine::accumulate_with(opened, builder, &empty, &eo, &Progress::default())
            .map_err(model::FitError::from)?;
        Ok::<_, AppError>(ResidualPart::Absorbed(Box::new(r.scores())))
    };
    match second_pass_kind(st, &a.report)? {
        Kind::Absorbed(pass) => by_level(&pass.plan, &pass.builder, opened),
        Kind::Blocks(pass) => by_level(&pass.plan, &pass.builder, opened),
        Kind::Plain(plain) => {
            let (resolved, pass) = *plain;
            let mut stats = pass.accumulate(&resolved, opened, &eo, &Progress::default())?;
            crate::accumulator::ChunkSink::finish(&mut stats);
            Ok(ResidualPart::Plain(Box::new(stats)))
        }
    }
}

/// The report of the merged state `st` with the parts' second-pass sums
/// (merged in the order given: row order). A plain model's sums, and a
/// factor by blocks' nonrobust ones, are kept in `st` as its second pass
/// (a state keeps no robust covariance of absorbed fixed effects or by
/// blocks). `report`'s covariance options must be those the parts were
/// summed for.
pub fn finish_parts(st: &mut State, parts: &[ResidualPart], report: &ReportArgs) -> Result<Report, AppError> {
    let rows: u64 = parts.iter().map(ResidualPart::rows).sum();
    if rows != st.accumulator.stats.nobs() {
        return Err(AppError::Data(format!(
            "the second pass's parts hold {rows} rows, the fit {}: the parts must be the fit's rows, each once",
            st.accumulator.stats.nobs()
        )));
    }
    let kind = || AppError::Data("the second pass's parts are not of this fit's kind (plain or absorbed)".into());
    let merged = |plan: &Arc<ResidualPlan>| -> Result<AbsorbResiduals, AppError> {
        let mut all = AbsorbResiduals::new(plan.clone());
        for p in parts {
            let ResidualPart::Absorbed(s) = p else { return Err(kind()) };
            let r = AbsorbResiduals::from_scores(plan.clone(), (**s).clone()).map_err(AppError::Data)?;
            crate::accumulator::ChunkSink::merge(&mut all, &r);
        }
        Ok(all)
    };
    match second_pass_kind(st, report)? {
        Kind::Absorbed(pass) => {
            let all = merged(&pass.plan)?;
            pass.report(st, &all, report.full_cov)
        }
        Kind::Blocks(pass) => {
            let all = merged(&pass.plan)?;
            pass.report(st, &all, report.full_cov)
        }
        Kind::Plain(plain) => {
            let (_, pass) = *plain;
            let mut all = ResidualStats::default();
            for p in parts {
                let ResidualPart::Plain(s) = p else { return Err(kind()) };
                crate::accumulator::ChunkSink::merge(&mut all, s);
            }
            st.residuals = Some(pass.snapshot(&all));
            st.stale_second_pass = None;
            super::state_report(st, report)
        }
    }
}

/// The second pass of each kind of state.
enum Kind {
    Plain(Box<(Resolved, model::SecondPass)>),
    Absorbed(Box<super::absorbed::StateSecondPass>),
    Blocks(Box<super::estimated::StateSecondPass>),
}

fn second_pass_kind(st: &State, report: &ReportArgs) -> Result<Kind, AppError> {
    Ok(match &st.absorbed {
        Some(p) if p.estimated_term.is_some() => {
            Kind::Blocks(Box::new(super::estimated::StateSecondPass::of(st, report)?))
        }
        Some(_) => Kind::Absorbed(Box::new(super::absorbed::StateSecondPass::of(st, report)?)),
        None => Kind::Plain(Box::new(second_pass_of(st, report)?)),
    })
}

fn second_pass_of(st: &State, report: &ReportArgs) -> Result<(Resolved, model::SecondPass), AppError> {
    check_cluster(report.cov_type, report.cluster.as_deref())?;
    let ro = report_options(report)?;
    let resolved = Resolved::new(st.model.clone(), st.column_types.clone())?;
    let robust = model::RobustOptions { cov: report.cov_type, cluster: report.cluster.as_deref() };
    let pass = model::SecondPass::of(&resolved, &st.accumulator, &ro, robust)?;
    Ok((resolved, pass))
}

/// A second pass's sums as bytes (a Spark task's or a Dask task's result):
/// a magic, a version, the CBOR payload and a CRC-32 of all before it.
pub fn encode_residual_part(stats: &ResidualPart) -> Vec<u8> {
    let mut payload = Vec::new();
    ciborium::into_writer(stats, &mut payload).expect("residual sums serialize to memory");
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(PART_MAGIC);
    out.extend_from_slice(&PART_VERSION.to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&crc32fast::hash(&out).to_le_bytes());
    out
}

/// Bytes from [`encode_residual_part`], checked.
pub fn decode_residual_part(bytes: &[u8]) -> Result<ResidualPart, AppError> {
    let bad = |why: &str| AppError::Data(format!("not a gramfit second-pass part: {why}"));
    if bytes.len() < 16 || &bytes[..8] != PART_MAGIC {
        return Err(bad("no gramfit header"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(bad("checksum mismatch"));
    }
    let version = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
    if version != PART_VERSION {
        return Err(bad(&format!("version {version}, this build reads {PART_VERSION}")));
    }
    ciborium::from_reader(&body[12..]).map_err(|e| bad(&e.to_string()))
}

const PART_MAGIC: &[u8; 8] = b"GFRESID\0";
/// 2: a plain or an absorbed model's sums (1: a plain model's only).
const PART_VERSION: u32 = 2;
