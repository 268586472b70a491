//! One model end to end: resolve the formula against the inputs, run the
//! engine, solve and infer. The CLI, batch jobs and state files all go
//! through here, so a saved state reports exactly what the fit did.

use crate::accumulator::FitAccumulator;
use crate::design::{DesignBuilder, MissingPolicy};
use crate::engine::{self, EngineError, EngineOptions, Progress};
use crate::formula::columns::{design, CodingError};
use crate::formula::{FormulaError, ModelSpec, SourceType};
use crate::report::{InputInfo, RunInfo};
use crate::results::{infer, InferenceOptions, OlsResults};
use crate::solve::{solve_normal_equations, NormalEquations, SingularPolicy, SolveError};
use crate::source::{self, Input, SourceError, SourceKind};
use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Everything that can go wrong fitting a model, by stage.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("formula: {0}")]
    Formula(#[from] FormulaError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Coding(#[from] CodingError),
    #[error("{0}")]
    Solve(#[from] SolveError),
    #[error("{0}")]
    Other(String),
}

/// Options that change the meaning of the numbers (kept in a state).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelOptions {
    pub formula: String,
    pub weights: Option<String>,
    pub missing: MissingPolicy,
}

/// Options that change only the report.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    pub singular: SingularPolicy,
    pub alpha: f64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { singular: SingularPolicy::Drop, alpha: 0.05 }
    }
}

/// A resolved model and the column types it was resolved against.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub options: ModelOptions,
    pub spec: Arc<ModelSpec>,
    pub column_types: Vec<(String, SourceType)>,
}

impl Resolved {
    pub fn new(options: ModelOptions, column_types: Vec<(String, SourceType)>) -> Result<Resolved, FitError> {
        let spec = ModelSpec::resolve(&options.formula, &column_types)?;
        if let Some(w) = &options.weights {
            let e = crate::design::weights_expr(w).map_err(|m| FitError::Other(format!("weights: {m}")))?;
            let mut cols = Vec::new();
            e.columns(&mut cols);
            for c in cols {
                match column_types.iter().find(|(n, _)| *n == c) {
                    None => {
                        let hint = crate::formula::closest(&c, column_types.iter().map(|(n, _)| n.as_str()))
                            .map(|c| format!("; did you mean '{c}'?"))
                            .unwrap_or_default();
                        return Err(FitError::Other(format!("weights: no column named '{c}' in the input{hint}")));
                    }
                    Some((_, SourceType::Numeric)) => {}
                    Some(_) => return Err(FitError::Other(format!("weights: the column '{c}' is not numeric"))),
                }
            }
        }
        Ok(Resolved { options, spec: Arc::new(spec), column_types })
    }

    pub fn builder(&self) -> DesignBuilder {
        DesignBuilder::new(self.spec.clone(), self.options.weights.clone(), self.options.missing)
    }
}

/// Schemas of the inputs (opening stdin's stream if `-` is among them).
pub struct OpenedInputs {
    pub inputs: Vec<Input>,
    pub schemas: Vec<Option<SchemaRef>>,
    pub stdin: Option<Box<dyn Iterator<Item = Result<arrow::array::RecordBatch, arrow::error::ArrowError>> + Send>>,
}

pub fn open_inputs(args: &[String]) -> Result<OpenedInputs, FitError> {
    let inputs = source::expand(args)?;
    if inputs.is_empty() {
        return Err(FitError::Other("no inputs given".into()));
    }
    let mut schemas = Vec::with_capacity(inputs.len());
    let mut stdin = None;
    for input in &inputs {
        if input.kind == SourceKind::IpcStream && input.is_stdin() {
            let r = arrow::ipc::reader::StreamReader::try_new(std::io::BufReader::new(std::io::stdin()), None)
                .map_err(|e| SourceError::Format {
                    path: "<stdin>".into(),
                    kind: "Arrow IPC stream",
                    message: e.to_string(),
                })?;
            schemas.push(Some(r.schema()));
            stdin = Some(Box::new(r) as Box<dyn Iterator<Item = _> + Send>);
        } else if input.kind == SourceKind::IpcStream {
            let f = std::fs::File::open(&input.path)
                .map_err(|e| SourceError::Io { path: input.display(), message: e.to_string() })?;
            let r = arrow::ipc::reader::StreamReader::try_new(std::io::BufReader::new(f), None).map_err(|e| {
                SourceError::Format { path: input.display(), kind: "Arrow IPC stream", message: e.to_string() }
            })?;
            schemas.push(Some(r.schema()));
        } else {
            schemas.push(Some(source::schema_of(input)?));
        }
    }
    Ok(OpenedInputs { inputs, schemas, stdin })
}

/// Column types for resolving the formula, checked across inputs.
pub fn column_types(opened: &OpenedInputs, needed: &[String]) -> Result<Vec<(String, SourceType)>, FitError> {
    let named: Vec<(String, SchemaRef)> =
        opened.inputs.iter().zip(&opened.schemas).filter_map(|(i, s)| s.clone().map(|s| (i.display(), s))).collect();
    Ok(source::check_columns(&named, needed)?)
}

/// The result of a pass over data.
pub struct Pass {
    pub acc: FitAccumulator,
    pub inputs: Vec<InputInfo>,
    pub elapsed_s: f64,
}

/// Resolve the model against the inputs and run the engine over them.
pub fn resolve_and_accumulate(
    options: ModelOptions,
    opened: OpenedInputs,
    engine_opts: &EngineOptions,
    progress: &Progress,
) -> Result<(Resolved, Pass), FitError> {
    // Resolve against the first input's columns, then check the others for
    // the columns the model uses.
    let first_types = column_types(&opened, &[])?;
    let resolved = Resolved::new(options, first_types)?;
    let needed = resolved.builder().source_columns();
    column_types(&opened, &needed)?;
    check_csv_text_columns(&resolved, &opened)?;
    let pass = accumulate(&resolved, opened, engine_opts, progress)?;
    Ok((resolved, pass))
}

/// A CSV text column that the model uses as a bare factor but that holds
/// numbers almost everywhere is a numeric column with a bad value: refuse
/// it, naming the value and line, rather than silently fit it as a
/// categorical with a level per number.
pub fn check_csv_text_columns(resolved: &Resolved, opened: &OpenedInputs) -> Result<(), FitError> {
    let bare: Vec<String> = resolved
        .spec
        .factors
        .iter()
        .chain(std::iter::once(&resolved.spec.response))
        .filter_map(|f| match &f.kind {
            crate::formula::FactorKind::Categorical { column, .. } if *column == f.name => Some(column.clone()),
            _ => None,
        })
        .collect();
    for (input, schema) in opened.inputs.iter().zip(&opened.schemas) {
        if input.kind != SourceKind::Csv {
            continue;
        }
        let Some(schema) = schema else { continue };
        if let Some((col, value, line)) = source::csv_numeric_outliers(input, schema, &bare)? {
            return Err(FitError::Other(format!(
                "{}: column '{col}' holds numbers but also the text '{value}' (line {line}); fix the value, or write C({col}) to treat the column as categorical",
                input.display()
            )));
        }
    }
    Ok(())
}

pub fn accumulate(
    resolved: &Resolved,
    opened: OpenedInputs,
    engine_opts: &EngineOptions,
    progress: &Progress,
) -> Result<Pass, FitError> {
    let start = Instant::now();
    let builder = resolved.builder();
    let (acc, inputs) =
        engine::accumulate(&opened.inputs, &opened.schemas, &builder, engine_opts, progress, opened.stdin)?;
    Ok(Pass { acc, inputs, elapsed_s: start.elapsed().as_secs_f64() })
}

/// One pass fitting the model per level of column `by`.
pub fn accumulate_grouped(
    resolved: &Resolved,
    by: &str,
    opened: OpenedInputs,
    engine_opts: &EngineOptions,
    progress: &Progress,
) -> Result<(crate::accumulator::GroupedAccumulator, Vec<InputInfo>, f64), FitError> {
    if !resolved.column_types.iter().any(|(n, _)| n == by) {
        let hint = crate::formula::closest(by, resolved.column_types.iter().map(|(n, _)| n.as_str()))
            .map(|c| format!("; did you mean '{c}'?"))
            .unwrap_or_default();
        return Err(FitError::Other(format!("by: no column named '{by}' in the input{hint}")));
    }
    let start = Instant::now();
    let mut builder = resolved.builder();
    builder.group_by = Some(by.to_string());
    let (acc, inputs) =
        engine::accumulate(&opened.inputs, &opened.schemas, &builder, engine_opts, progress, opened.stdin)?;
    Ok((acc, inputs, start.elapsed().as_secs_f64()))
}

/// The covariance type of the standard errors and, for `cluster`, the
/// column of clusters.
#[derive(Clone, Copy, Debug)]
pub struct RobustOptions<'a> {
    pub cov: crate::residuals::CovType,
    pub cluster: Option<&'a str>,
}

/// The second pass: stream the inputs again with β from `acc` and return
/// the residual diagnostics and (for a robust `cov`) the robust covariance.
pub fn second_pass(
    resolved: &Resolved,
    acc: &FitAccumulator,
    report: &ReportOptions,
    robust: RobustOptions<'_>,
    opened: OpenedInputs,
    engine_opts: &EngineOptions,
    progress: &Progress,
) -> Result<crate::residuals::ResidualSnapshot, FitError> {
    use crate::residuals::{robust_cov, CovType, ResidualSnapshot, ResidualStats, SecondPassSpec};
    let RobustOptions { cov, cluster } = robust;
    // Clusters matter only to a cluster-robust covariance; another one
    // does not read the column.
    let cluster = cluster.filter(|_| cov == CovType::Cluster);
    let design = design(&resolved.spec, &acc.level_sets(), acc.stats.keys())?;
    let ne = NormalEquations::from_state(acc, &design);
    let sol = solve_normal_equations(&ne, report.singular)?;
    if let Some(c) = cluster {
        if !resolved.column_types.iter().any(|(n, _)| n == c) {
            let hint = crate::formula::closest(c, resolved.column_types.iter().map(|(n, _)| n.as_str()))
                .map(|c| format!("; did you mean '{c}'?"))
                .unwrap_or_default();
            return Err(FitError::Other(format!("--cluster: no column named '{c}' in the input{hint}")));
        }
    }
    let spec = SecondPassSpec {
        design,
        params: sol.params.iter().map(|b| b.map_or(0.0, |d| d.to_f64())).collect(),
        xtx_inv: sol.normalized_cov.iter().map(|d| d.to_f64()).collect(),
        cluster: cluster.map(String::from),
        cov,
    };
    let mut builder = resolved.builder();
    builder.second_pass = Some(Arc::new(spec.clone()));
    let (st, _): (ResidualStats, _) =
        engine::accumulate(&opened.inputs, &opened.schemas, &builder, engine_opts, progress, opened.stdin)?;
    let df_resid = acc.stats.nobs() as f64 - sol.rank as f64;
    Ok(ResidualSnapshot {
        cov_type: cov,
        diagnostics: st.diagnostics(),
        robust_cov: robust_cov(&st, &spec, cov, df_resid),
        undefined: if matches!(cov, CovType::Hc2 | CovType::Hc3) { st.undefined_hc23() } else { Vec::new() },
        leverage_one: st.leverage_one,
        n_clusters: st.clusters.len(),
    })
}

pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Solve and infer from an accumulated state.
pub fn results_of(resolved: &Resolved, acc: &FitAccumulator, report: &ReportOptions) -> Result<OlsResults, FitError> {
    let design = design(&resolved.spec, &acc.level_sets(), acc.stats.keys())?;
    let ne = NormalEquations::from_state(acc, &design);
    let sol = solve_normal_equations(&ne, report.singular)?;
    let mut res = infer(
        &ne,
        &sol,
        &InferenceOptions {
            alpha: report.alpha,
            weighted: resolved.options.weights.is_some(),
            response: resolved.spec.response.name.clone(),
        },
    );
    if acc.rows_dropped > 0 {
        res.gramfit_notes.push(format!(
            "{} of {} rows were dropped for a missing value in a column the model uses.",
            acc.rows_dropped, acc.rows_read
        ));
    }
    Ok(res)
}

/// The run information a report shows.
pub fn run_info(
    resolved: &Resolved,
    acc: &FitAccumulator,
    inputs: Vec<InputInfo>,
    fitted_at: u64,
    elapsed_s: f64,
) -> RunInfo {
    RunInfo {
        formula: resolved.options.formula.clone(),
        inputs,
        rows_read: acc.rows_read,
        rows_dropped: acc.rows_dropped,
        fitted_at,
        elapsed_s,
        weights: resolved.options.weights.clone(),
    }
}
