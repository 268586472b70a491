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
use crate::source::csv::CsvOptions;
use crate::source::{self, SourceError, SourceKind};
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
    /// How CSV inputs are read (missing-value tokens, delimiter, decimal
    /// mark): they decide which cells are numbers.
    #[serde(default)]
    pub csv: CsvOptions,
    /// The group of one of a grouped fit's models (`by = "borough"`): only
    /// its rows are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
}

impl ModelOptions {
    /// A formula with the defaults: no weights, rows with a missing value
    /// dropped, CSV read as pandas reads it, all rows.
    pub fn new(formula: impl Into<String>) -> Self {
        ModelOptions {
            formula: formula.into(),
            weights: None,
            missing: MissingPolicy::default(),
            csv: CsvOptions::default(),
            group: None,
        }
    }
}

/// An absorbed model (`y ~ x | fe`): the model of the part before the `|`
/// and the absorbed columns; `None` for a formula without `|`.
pub fn absorbed_model(options: &ModelOptions) -> Result<Option<(ModelOptions, Vec<String>)>, FormulaError> {
    Ok(crate::formula::absorb::split_absorbed(&options.formula)?
        .map(|a| (ModelOptions { formula: a.formula, ..options.clone() }, a.columns)))
}

/// One level of a grouping column: a grouped fit's model of that group.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Group {
    pub column: String,
    pub level: crate::level::Level,
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
        let mut b = DesignBuilder::new(self.spec.clone(), self.options.weights.clone(), self.options.missing);
        b.only = self.options.group.as_ref().map(|g| (g.column.clone(), g.level.clone()));
        b
    }
}

pub use crate::source::OpenedInputs;

/// Expand and open the inputs (see [`source::open_inputs`]).
pub fn open_inputs(args: &[String], csv: &CsvOptions) -> Result<OpenedInputs, FitError> {
    let opened = source::open_inputs(args, csv)?;
    if opened.inputs.is_empty() {
        return Err(FitError::Other("no inputs given".into()));
    }
    Ok(opened)
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
    let resolved = resolve(options, &opened)?;
    let pass = accumulate(&resolved, opened, engine_opts, progress)?;
    Ok((resolved, pass))
}

/// Resolve the model against the first input's columns, and check the
/// others for the columns the model uses.
pub fn resolve(options: ModelOptions, opened: &OpenedInputs) -> Result<Resolved, FitError> {
    let first_types = column_types(opened, &[])?;
    let resolved = match Resolved::new(options.clone(), first_types) {
        Ok(r) => r,
        Err(e) => {
            // A formula that fails on a text column (a response, a
            // transform) may have met numbers the CSV reader took for text.
            let named: Vec<String> = opened
                .schemas
                .iter()
                .flatten()
                .flat_map(|s| s.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>())
                .filter(|c| crate::formula::mentions(&options.formula, c))
                .collect();
            check_csv_text(opened, &named)?;
            return Err(e);
        }
    };
    let needed = resolved.builder().source_columns();
    column_types(opened, &needed)?;
    check_csv_text_columns(&resolved, opened)?;
    Ok(resolved)
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
    check_csv_text(opened, &bare)
}

/// Refuse the first CSV text column among `columns` that holds numbers
/// (see [`source::csv::text_in_numbers`]), saying which values made it
/// text and how to read it.
fn check_csv_text(opened: &OpenedInputs, columns: &[String]) -> Result<(), FitError> {
    use source::csv::TextInNumbers;
    for (input, schema) in opened.inputs.iter().zip(&opened.schemas) {
        if input.kind != SourceKind::Csv {
            continue;
        }
        let Some(schema) = schema else { continue };
        let found = source::csv::text_in_numbers(&input.path, &opened.csv, schema, columns)
            .map_err(|message| SourceError::Format { path: input.display(), kind: "CSV", message })?;
        match found {
            None => {}
            Some(TextInNumbers::Mixed { column, values }) => {
                let values: Vec<String> = values.iter().map(|(v, line)| format!("'{v}' (line {line})")).collect();
                return Err(FitError::Other(format!(
                    "{}: column '{column}' holds numbers but also the text {}, which made it a text column; fix the values, name them as missing (--na-values), or write C({column}) to treat the column as categorical",
                    input.display(),
                    values.join(", ")
                )));
            }
            Some(TextInNumbers::DecimalComma { column, example: (v, line) }) => {
                return Err(FitError::Other(format!(
                    "{}: column '{column}' holds numbers written with a decimal comma ('{v}', line {line}), read as text; read the file with --decimal ','",
                    input.display()
                )));
            }
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
    accumulate_by(&resolved.builder(), opened, engine_opts, progress)
}

/// [`accumulate`] with a builder of the caller's.
pub fn accumulate_by(
    builder: &crate::design::DesignBuilder,
    opened: OpenedInputs,
    engine_opts: &EngineOptions,
    progress: &Progress,
) -> Result<Pass, FitError> {
    let start = Instant::now();
    let (acc, inputs) = engine::accumulate(opened, builder, engine_opts, progress)?;
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
    let (acc, inputs) = engine::accumulate(opened, &builder, engine_opts, progress)?;
    Ok((acc, inputs, start.elapsed().as_secs_f64()))
}

/// The covariance type of the standard errors and, for `cluster`, the
/// column of clusters.
#[derive(Clone, Copy, Debug)]
pub struct RobustOptions<'a> {
    pub cov: crate::second_pass::CovType,
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
) -> Result<crate::second_pass::ResidualSnapshot, FitError> {
    let pass = SecondPass::of(resolved, acc, report, robust)?;
    let stats = pass.accumulate(resolved, opened, engine_opts, progress)?;
    Ok(pass.snapshot(&stats))
}

/// A second pass set up from a first pass's statistics: what it needs (β,
/// `(XᵀWX)⁻¹`, the design) and the residual degrees of freedom of its
/// robust covariance. The pass over the rows ([`SecondPass::accumulate`])
/// may run in parts whose sums merge in row order (a distributed fit);
/// [`SecondPass::snapshot`] turns the merged sums into what a state keeps.
pub struct SecondPass {
    pub spec: crate::second_pass::SecondPassSpec,
    df_resid: f64,
}

impl SecondPass {
    pub fn of(
        resolved: &Resolved,
        acc: &FitAccumulator,
        report: &ReportOptions,
        robust: RobustOptions<'_>,
    ) -> Result<SecondPass, FitError> {
        use crate::second_pass::{CovType, SecondPassSpec};
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
        Ok(SecondPass { spec, df_resid: acc.stats.nobs() as f64 - sol.rank as f64 })
    }

    /// The residual sums of `opened`'s rows, in row order.
    pub fn accumulate(
        &self,
        resolved: &Resolved,
        opened: OpenedInputs,
        engine_opts: &EngineOptions,
        progress: &Progress,
    ) -> Result<crate::residuals::ResidualStats, FitError> {
        let mut builder = resolved.builder();
        builder.second_pass = Some(Arc::new(self.spec.clone()));
        let (stats, _) = engine::accumulate(opened, &builder, engine_opts, progress)?;
        Ok(stats)
    }

    /// What a state keeps of the pass, from the sums of all its rows.
    pub fn snapshot(&self, st: &crate::residuals::ResidualStats) -> crate::second_pass::ResidualSnapshot {
        use crate::second_pass::CovType;
        let cov = self.spec.cov;
        crate::second_pass::ResidualSnapshot {
            cov_type: cov,
            diagnostics: st.diagnostics(),
            robust_cov: crate::residuals::robust_cov(st, &self.spec, cov, self.df_resid),
            undefined: if matches!(cov, CovType::Hc2 | CovType::Hc3) { st.undefined_hc23() } else { Vec::new() },
            leverage_one: st.leverage_one,
            n_clusters: st.clusters.len(),
        }
    }
}

pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Solve and infer from an accumulated state.
pub fn results_of(resolved: &Resolved, acc: &FitAccumulator, report: &ReportOptions) -> Result<OlsResults, FitError> {
    // Computing only: faer's eigenvalues cannot poll for Ctrl-C, so a
    // signal a second old ends the process here (see `interrupt`).
    let _exit_safe = crate::interrupt::ExitSafe::enter();
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
            numeric_columns: Some(numeric_columns(&design)),
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

/// Per design column (the intercept first): whether it belongs to no
/// factor (none of its cells has a level).
fn numeric_columns(design: &crate::formula::columns::Design) -> Vec<bool> {
    let cells = design.columns.iter().map(|c| {
        c.cells.iter().all(|k| matches!(k, crate::level::ColumnKey::Cell { levels, .. } if levels.is_empty()))
    });
    std::iter::repeat_n(true, usize::from(design.intercept)).chain(cells).collect()
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
        full_cov: false,
    }
}
