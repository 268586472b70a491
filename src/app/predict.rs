//! `gramfit predict STATE INPUT...`: every row of the inputs through a
//! saved fit (or a grouped fit's states, each row by its group's), written
//! as a table in input order.

use crate::cli::{PredictArgs, RowAction};
use crate::design::{DesignBuilder, MissingPolicy};
use crate::engine::{self, Progress};
use crate::model::{self, ReportOptions, Resolved};
use crate::output::{TableFormat, TableWriter};
use crate::predict::{self, Model, Models, Plan, PredictSink, Residuals, RowPolicy, Tail};
use crate::progress::ProgressDisplay;
use crate::source::SourceKind;
use crate::state::{self, State};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{engine_options, AppError};

/// The states `arg` names: a file, a directory's `.gramfit` files, or a
/// glob's matches.
fn load_states(arg: &str) -> Result<Vec<(PathBuf, State)>, AppError> {
    let p = Path::new(arg);
    let mut paths: Vec<PathBuf> = if p.is_dir() {
        std::fs::read_dir(p)
            .map_err(|e| AppError::Data(format!("{arg}: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.extension().is_some_and(|x| x == "gramfit"))
            .collect()
    } else if p.exists() {
        vec![p.to_path_buf()]
    } else {
        glob::glob(arg)
            .map_err(|e| AppError::Usage(format!("{arg}: bad glob pattern: {e}")))?
            .filter_map(Result::ok)
            .collect()
    };
    paths.sort();
    if paths.is_empty() {
        return Err(AppError::Data(format!("{arg}: no state file there")));
    }
    paths.into_iter().map(|p| state::load(&p).map(|s| (p, s)).map_err(AppError::from)).collect()
}

pub fn predict(a: &PredictArgs) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    if !(a.alpha > 0.0 && a.alpha < 1.0) {
        return Err(AppError::Usage(format!("--alpha must be between 0 and 1, not {}", a.alpha)));
    }
    let states = load_states(&a.state)?;
    let (first_path, first) = &states[0];
    if first.absorbed.is_some() {
        return predict_absorbed(a, &eo, first_path, first, states.len());
    }
    // One model, or one per group of the same grouped fit.
    let mut general = first.model.clone();
    general.group = None;
    for (p, st) in &states[1..] {
        let mut m = st.model.clone();
        m.group = None;
        if m != general || st.model.group.is_none() || first.model.group.is_none() {
            return Err(AppError::Data(format!(
                "{} and {}: several states predict together only as the states of one grouped fit (the same model, a group each)",
                first_path.display(),
                p.display()
            )));
        }
    }
    let group_column = (states.len() > 1).then(|| first.model.group.as_ref().map(|g| g.column.clone())).flatten();
    let resolved = Resolved::new(general.clone(), first.column_types.clone())?;
    // The predictors (not the response: with it, residuals) and the group
    // column.
    let mut needed =
        DesignBuilder::new(Arc::new(resolved.spec.without_response()), None, MissingPolicy::Drop).source_columns();
    needed.extend(group_column.iter().cloned());
    let opened = open_inputs(a, &first.model.csv, needed)?;
    let (with_response, with_weights) = optional_columns(&resolved, &opened);
    let report = ReportOptions { singular: a.singular, alpha: a.alpha };
    let missing = if a.missing == RowAction::Error { MissingPolicy::Error } else { MissingPolicy::Drop };
    let mut models = BTreeMap::new();
    for (path, st) in &states {
        let mut res = model::results_of(&resolved, &st.accumulator, &report)?;
        match (&st.residuals, st.stale_second_pass) {
            (Some(snap), _) if snap.robust_cov.is_some() => crate::results::apply_second_pass(&mut res, snap),
            (None, Some(cov)) => eprintln!(
                "gramfit: note: {}: its {} covariance is stale (the statistics changed since its second pass); the intervals use the nonrobust one — run `gramfit diagnose {} --cov-type {}` first to use it",
                path.display(),
                cov.name(),
                path.display(),
                cov.name()
            ),
            _ => {}
        }
        let acc = &st.accumulator;
        let design = crate::formula::columns::design(&resolved.spec, &acc.level_sets(), acc.stats.keys())
            .map_err(model::FitError::from)?;
        let m = Model::new(
            &resolved.spec,
            general.weights.as_deref(),
            design,
            &res,
            &acc.level_sets(),
            with_response,
            with_weights,
            missing,
        );
        models.insert(st.model.group.as_ref().map(|g| g.level.clone()), m);
    }
    let models = match group_column {
        Some(column) => {
            Models::ByGroup { column, models: models.into_iter().map(|(l, m)| (l.expect("a group"), m)).collect() }
        }
        None => Models::One(Box::new(models.into_values().next().expect("one model"))),
    };
    let residuals = if with_response { Residuals::Standardized } else { Residuals::None };
    let (schema, writer) = output(a, &opened, residuals)?;
    let plan = Arc::new(Plan {
        encoder: writer.encoder(),
        models,
        keep: a.keep.clone(),
        interval: a.interval,
        policy: RowPolicy {
            unseen_error: a.unseen_level == RowAction::Error,
            missing_error: a.missing == RowAction::Error,
        },
        residuals,
        schema: schema.clone(),
    });
    write_predictions(a, &eo, &resolved, plan, writer, opened)
}

/// `predict` with the state of an absorbed fit or of a fit by blocks:
/// each row's mean, its levels' effects recovered from the statistics; the
/// intervals of a fit by blocks from its level weights and within moments
/// (an absorbed fit gives means and raw residuals only).
fn predict_absorbed(
    a: &PredictArgs,
    eo: &crate::engine::EngineOptions,
    path: &Path,
    st: &State,
    n_states: usize,
) -> Result<(), AppError> {
    if n_states > 1 {
        return Err(AppError::Usage(format!(
            "{}: an absorbed fit predicts alone, not with other states",
            path.display()
        )));
    }
    let by_blocks = st.absorbed.as_ref().is_some_and(|p| p.estimated_term.is_some());
    if a.interval != predict::Interval::None && !by_blocks {
        return Err(AppError::Usage(format!(
            "{}: an absorbed fit (`| {}`) estimates no variance of its fixed effects (neither do fixest and pyfixest), so it gives no intervals; use --interval none, or put the factor in the formula as C(…) for intervals",
            path.display(),
            st.absorbed.as_ref().map_or(String::new(), |p| p.columns.join(" + "))
        )));
    }
    let (resolved, _) = super::absorbed::state_model(st)?.expect("an absorbed state");
    let acc =
        crate::factors::AbsorbAccumulator::from_parts(st.accumulator.clone(), st.absorbed.clone().expect("absorbed"));
    let design = crate::formula::columns::design(&resolved.spec, &acc.dense.level_sets(), acc.dense.stats.keys())
        .map_err(model::FitError::from)?;
    let fit = crate::factors::within_fit(
        &acc,
        &design,
        resolved.options.weights.is_some(),
        a.singular,
        // A fit by blocks estimated its singletons' levels; an absorbed
        // fit removed them.
        if by_blocks { crate::factors::Singletons::Keep } else { crate::factors::Singletons::Drop },
    )?;
    let mut m = crate::factors::AbsorbedModel::new(&fit, &design, &resolved.spec, &acc.dense.level_sets());
    // The dummy model's residual variance: its rank is the slopes' and
    // the levels'.
    let df_resid =
        fit.ne.nobs as f64 - (fit.sol.rank + fit.factors.iter().map(|f| f.levels.len()).sum::<usize>()) as f64;
    let scale = fit.sol.ssr.to_f64() / df_resid;
    if by_blocks {
        m = m.with_variance(&fit, scale);
    }
    let opened = open_inputs(a, &st.model.csv, m.source_columns())?;
    let (with_response, with_weights) = optional_columns(&resolved, &opened);
    let residuals = match (with_response, by_blocks) {
        (false, _) => Residuals::None,
        (true, true) => Residuals::Standardized,
        (true, false) => Residuals::Raw,
    };
    let weights = resolved.options.weights.as_deref();
    let q = Tail::quantile(a.alpha, true, df_resid);
    let tail = Tail::new(&resolved.spec, weights, scale, q, with_response, with_weights);
    let (schema, writer) = output(a, &opened, residuals)?;
    let plan = Arc::new(Plan {
        encoder: writer.encoder(),
        models: Models::Absorbed { model: Box::new(m), tail: Box::new(tail) },
        keep: a.keep.clone(),
        interval: a.interval,
        policy: RowPolicy {
            unseen_error: a.unseen_level == RowAction::Error,
            missing_error: a.missing == RowAction::Error,
        },
        residuals,
        schema,
    });
    write_predictions(a, eo, &resolved, plan, writer, opened)
}

/// The inputs, each holding the `needed` columns and the `--keep` ones:
/// else an error before any output is written.
fn open_inputs(
    a: &PredictArgs,
    csv: &crate::source::csv::CsvOptions,
    mut needed: Vec<String>,
) -> Result<model::OpenedInputs, AppError> {
    let opened = model::open_inputs(&a.inputs, csv)?;
    if opened.stdin.is_some() {
        return Err(AppError::Usage("predict reads files, not a stream on stdin".into()));
    }
    needed.extend(a.keep.iter().cloned());
    let present = model::column_types(&opened, &needed)?;
    if let Some(c) = needed.iter().find(|c| !present.iter().any(|(n, _)| n == *c)) {
        return Err(AppError::Data(format!(
            "{}: column '{c}' is missing (the model{} uses it)",
            opened.inputs[0].display(),
            if a.keep.contains(c) { "'s --keep" } else { "" }
        )));
    }
    Ok(opened)
}

/// Whether every input holds the response's columns (then residuals are
/// written) and the weights' (then an observation interval uses each
/// row's weight).
fn optional_columns(resolved: &Resolved, opened: &model::OpenedInputs) -> (bool, bool) {
    let mut response_cols = Vec::new();
    if let crate::formula::FactorKind::Numeric(e) = &resolved.spec.response.kind {
        e.columns(&mut response_cols);
    }
    let weights = resolved.options.weights.as_deref();
    let mut weight_cols = Vec::new();
    if let Some(w) = weights.and_then(|w| crate::design::weights_expr(w).ok()) {
        w.columns(&mut weight_cols);
    }
    (
        predict::all_have(&opened.schemas, &response_cols),
        weights.is_some() && predict::all_have(&opened.schemas, &weight_cols),
    )
}

/// Stream the inputs through `plan`, writing the rows in input order, and
/// tell how many were predicted as null and why.
fn write_predictions(
    a: &PredictArgs,
    eo: &crate::engine::EngineOptions,
    resolved: &Resolved,
    plan: Arc<Plan>,
    mut writer: TableWriter,
    opened: model::OpenedInputs,
) -> Result<(), AppError> {
    let builder = predict::reading_builder(&resolved.spec, plan.source_columns(), &plan.as_read_columns());
    let progress = Arc::new(Progress::default());
    let _display = ProgressDisplay::start(progress.clone(), a.engine.quiet);
    progress.set_label("predict");
    let (mut rows, mut missing_rows) = (0u64, 0u64);
    let mut unseen: BTreeMap<String, u64> = BTreeMap::new();
    let mut failed: Option<String> = None;
    let make = || PredictSink::new(Arc::clone(&plan));
    engine::stream(opened, &builder, &make, eo, &progress, &mut |_, sink: PredictSink| {
        if failed.is_some() {
            return;
        }
        let written = match sink.out.encoded {
            Some(group) => group.and_then(|g| writer.append(g)),
            None => sink.out.batches.iter().try_for_each(|b| writer.write(b)),
        };
        if let Err(e) = written {
            failed = Some(e);
            progress.stop.store(true, Ordering::Relaxed);
            return;
        }
        rows += sink.out.rows;
        missing_rows += sink.out.missing;
        for (k, v) in sink.out.unseen {
            *unseen.entry(k).or_insert(0) += v;
        }
    })
    .map_err(model::FitError::from)?;
    // A reader of standard output that stopped reading (`| head`) is not
    // an error.
    let broken_pipe = |e: &str| a.output.is_none() && e.contains("Broken pipe");
    if let Some(e) = failed {
        return if broken_pipe(&e) { Ok(()) } else { Err(AppError::Data(e)) };
    }
    if let Err(e) = writer.finish() {
        return if broken_pipe(&e) { Ok(()) } else { Err(AppError::Data(e)) };
    }
    let nulls: u64 = missing_rows + unseen.values().sum::<u64>();
    if nulls > 0 {
        let mut why: Vec<String> = Vec::new();
        if missing_rows > 0 {
            why.push(format!("{missing_rows} with a missing predictor"));
        }
        why.extend(unseen.iter().map(|(k, v)| format!("{v} with {k}, a level the fit never saw")));
        eprintln!("gramfit: {nulls} of {rows} rows predicted as null: {}", why.join("; "));
    }
    Ok(())
}

/// The output's schema (the kept columns, then the computed ones) and its
/// writer, in the format asked for or implied by the output's name
/// (Parquet for Parquet inputs, else CSV).
fn output(
    a: &PredictArgs,
    opened: &model::OpenedInputs,
    residuals: Residuals,
) -> Result<(arrow::datatypes::SchemaRef, TableWriter), AppError> {
    let first_schema = opened.schemas[0].clone().expect("a file's schema");
    let schema = Plan::schema(&first_schema, &a.keep, a.interval, residuals).map_err(AppError::Usage)?;
    let all_parquet = opened.inputs.iter().all(|i| i.kind == SourceKind::Parquet);
    let format = a
        .format
        .or_else(|| a.output.as_deref().and_then(TableFormat::of_path))
        .unwrap_or(if a.output.is_some() && all_parquet { TableFormat::Parquet } else { TableFormat::Csv });
    let computed = predict::column_names(a.interval, residuals);
    let writer = TableWriter::create(a.output.as_deref(), format, &schema, &computed).map_err(AppError::Data)?;
    Ok((schema, writer))
}
