//! Command-line definitions (clap). Behaviour lives in `app`.

use crate::design::MissingPolicy;
use crate::report::Format;
use crate::solve::SingularPolicy;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "gramfit",
    version,
    about = "Streaming, incremental linear regression from mergeable sufficient statistics",
    long_about = "gramfit fits statsmodels-style linear models (OLS and WLS, patsy formulas) on \
Parquet, Arrow IPC and CSV files of any size. Worker threads accumulate XᵀX, Xᵀy and yᵀy in \
double-double precision; the statistics merge exactly, persist in a state file and can be \
updated with new files, merged across shards and retracted.\n\n\
Results go to stdout, progress and errors to stderr. Exit codes: 0 success, 1 data or \
runtime error, 2 usage error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fit a model to input files and print its summary.
    Fit(FitArgs),
    /// Run a batch job described by a TOML config (see configs/).
    Run(RunArgs),
    /// Print the report of a saved state.
    Summary(SummaryArgs),
    /// Fold new input files into a saved state and print the new summary.
    Update(UpdateArgs),
    /// Merge states of the same model (e.g. fitted on shards) into one.
    Merge(MergeArgs),
    /// Take input files that were folded in before back out of a state.
    Retract(RetractArgs),
    /// Correlation matrix of columns (or of a formula's design columns), with an SVG heatmap.
    Corr(CorrArgs),
    /// Show the response and design matrix a formula builds, as patsy.dmatrices would.
    Design(DesignArgs),
    /// Run the second pass (residual diagnostics, robust errors) over the inputs recorded in a state.
    Diagnose(DiagnoseArgs),
    /// Predict the rows of files with a saved fit, with intervals (statsmodels' get_prediction).
    Predict(PredictArgs),
}

/// What to do with a row that cannot be predicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowAction {
    /// A null prediction, counted and reported.
    Null,
    /// Stop with an error naming the row.
    Error,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A state file; for a grouped fit, its states (a directory or a quoted glob): each row is
    /// predicted by its group's model.
    pub state: String,
    /// Files, directories or globs of rows to predict.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Write the predictions here (atomically); the format from --format or the extension
    /// (.parquet, .csv, .arrow, .json). Default: CSV on stdout.
    #[arg(long, short, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Output format (default: from the extension; Parquet for Parquet inputs).
    #[arg(long, value_enum)]
    pub format: Option<crate::output::TableFormat>,
    /// Columns: mean only; with the mean's standard error and confidence interval; or also the
    /// interval for a new observation (statsmodels' summary_frame).
    #[arg(long, value_enum, default_value_t = crate::predict::Interval::Prediction)]
    pub interval: crate::predict::Interval,
    /// Significance level of the intervals.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Input columns to write before the predictions (comma-separated), e.g. an id.
    #[arg(long, value_delimiter = ',', value_name = "COL,…")]
    pub keep: Vec<String>,
    /// A row with a level of a categorical the fit never saw.
    #[arg(long, value_enum, default_value_t = RowAction::Null)]
    pub unseen_level: RowAction,
    /// A row with a missing predictor.
    #[arg(long, value_enum, default_value_t = RowAction::Null)]
    pub missing: RowAction,
    /// Aliased columns: as the fit reports them (drop: left out; pinv: minimum-norm).
    #[arg(long, value_enum, default_value_t = SingularPolicy::Drop)]
    pub singular: SingularPolicy,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    /// A state whose recorded input files are still readable and unchanged.
    pub state: PathBuf,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// Options shared by commands that read data.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Rows per read batch (does not change any result).
    #[arg(long, value_name = "ROWS", default_value_t = 8192)]
    pub batch_size: usize,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Options that change only the report.
#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// What to do with aliased (linearly dependent) columns.
    #[arg(long, value_enum, default_value_t = SingularPolicy::Drop)]
    pub singular: SingularPolicy,
    /// Significance level of the confidence intervals.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Covariance type of the standard errors: nonrobust, HC0–HC3 or cluster (needs
    /// --cluster). Robust types use the normal reference distribution, as statsmodels.
    #[arg(long, value_enum, default_value_t = CovType::Nonrobust)]
    pub cov_type: CovType,
    /// Column whose levels are the clusters for --cov-type cluster (only with it).
    #[arg(long, value_name = "COL")]
    pub cluster: Option<String>,
    /// Skip the second pass over the data (residual diagnostics, robust errors).
    #[arg(long)]
    pub no_second_pass: bool,
    /// Write cov_params, the correlation matrix and the variance
    /// proportions in JSON however many columns the design has (left out
    /// past 300 columns).
    #[arg(long)]
    pub full_cov: bool,
    /// Write the report to this file (atomically) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub use crate::second_pass::CovType;

/// Waiting for another writer of the same state file.
#[derive(Args, Debug, Clone, Default)]
pub struct LockArgs {
    /// Wait at most this many seconds for another command writing the same state (default:
    /// as long as it takes, saying who holds it; 0: fail at once, naming the holder).
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<f64>,
}

impl LockArgs {
    pub fn wait(&self) -> Result<crate::state::lock::Wait, String> {
        use crate::state::lock::Wait;
        match self.wait {
            None => Ok(Wait::Forever),
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Wait::AtMost(std::time::Duration::from_secs_f64(s))),
            Some(s) => Err(format!("--wait takes a number of seconds ≥ 0, not {s}")),
        }
    }
}

/// How CSV inputs are read (saved in a state with the fit).
#[derive(Args, Debug, Clone, Default)]
pub struct CsvArgs {
    /// CSV field separator (default: sniffed from the header among , ; tab |); `tab` or `\t`
    /// for a tab.
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
    pub delimiter: Option<char>,
    /// CSV decimal mark: '.' (default) or ',' (numbers written `1234,56`).
    #[arg(long, value_name = "CHAR", default_value_t = '.')]
    pub decimal: char,
    /// CSV cells read as missing, comma-separated; replaces pandas' default list (empty, NA,
    /// N/A, NaN, NULL, null, #N/A, None, …). `--na-values ''` leaves only empty cells missing.
    #[arg(long, value_name = "A,B,…")]
    pub na_values: Option<String>,
}

fn parse_delimiter(s: &str) -> Result<char, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok('\t'),
        _ => {
            let mut c = s.chars();
            match (c.next(), c.next()) {
                (Some(d), None) => Ok(d),
                _ => Err(format!("a delimiter is one character (or `tab`), not '{s}'")),
            }
        }
    }
}

impl CsvArgs {
    /// The options these flags give, checked.
    pub fn options(&self) -> Result<crate::source::csv::CsvOptions, String> {
        let o = crate::source::csv::CsvOptions {
            delimiter: self.delimiter,
            decimal: self.decimal,
            na_values: self.na_values.as_ref().map(|v| v.split(',').map(str::to_string).collect()),
        };
        o.validate()?;
        Ok(o)
    }
}

/// Watching a directory for new files.
#[derive(Args, Debug, Clone)]
pub struct FollowArgs {
    /// Watch this directory and fold in each new complete file as it appears, until Ctrl-C.
    /// A file is complete when its size and modification time have not changed for
    /// --settle-ms; files named .* or *.tmp, *.part, *.partial are never read (write
    /// elsewhere or under such a name, then rename into place).
    #[arg(long, value_name = "DIR")]
    pub follow: Option<PathBuf>,
    /// How often to look at the directory, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub poll_ms: u64,
    /// How long a file must stay unchanged before it is read, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub settle_ms: u64,
    /// A CSV file's last line without a line end is left pending (the writer may not have
    /// finished it) until a line end follows, or until the file has not changed for this long;
    /// then it is read as the file's last row.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub tail_ms: u64,
}

#[derive(Args, Debug)]
pub struct FitArgs {
    /// Input files, directories or globs (Parquet, Arrow IPC, CSV); `-` reads an Arrow IPC stream from stdin.
    #[arg(required_unless_present = "follow", value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// The model, in patsy/statsmodels formula syntax, e.g. "rent ~ size_sqft + C(borough)".
    #[arg(long, short = 'f')]
    pub formula: String,
    /// Weights: a column or a numeric expression such as "1/(1+min_to_subway)"; weighted least
    /// squares minimising Σ w·e² (statsmodels WLS).
    #[arg(long, value_name = "COL")]
    pub weights: Option<String>,
    /// Rows with a missing value: drop them (patsy's default) or fail.
    #[arg(long, value_enum, default_value_t = MissingPolicy::Drop)]
    pub missing: MissingPolicy,
    /// Save the fit's statistics to this state file (for summary, update, merge, retract).
    /// With --by: a directory (one LEVEL.gramfit per group) or a pattern with {group}.
    #[arg(long, value_name = "STATE")]
    pub save: Option<PathBuf>,
    /// Fit the model once per level of this column, in one pass over the data (a report and a
    /// state per group; each state folds only its group's rows when updated).
    #[arg(long, value_name = "COL", conflicts_with = "follow")]
    pub by: Option<String>,
    #[command(flatten)]
    pub follow: FollowArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub csv: CsvArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The batch job's TOML file.
    pub config: PathBuf,
    /// Override the job's thread count.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Override the job's output format.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// A state file written by `fit --save`, `update`, `merge` or `retract`.
    pub state: PathBuf,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    pub state: PathBuf,
    /// New input files to fold in.
    #[arg(required_unless_present = "follow", value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Fold in files whose content is already in the state.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub follow: FollowArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// States of the same model.
    #[arg(required = true, num_args = 2.., value_name = "STATE")]
    pub states: Vec<PathBuf>,
    /// Where to write the merged state.
    #[arg(long, short, value_name = "OUT")]
    pub out: PathBuf,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct RetractArgs {
    pub state: PathBuf,
    /// Input files folded in before, to take out.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Args, Debug)]
pub struct CorrArgs {
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Comma-separated numeric columns.
    #[arg(long, value_delimiter = ',', conflicts_with = "formula", required_unless_present = "formula")]
    pub columns: Vec<String>,
    /// Use a formula's design columns and response instead.
    #[arg(long, short = 'f')]
    pub formula: Option<String>,
    /// Draw an annotated heatmap to this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Flag pairs with |r| at or above this.
    #[arg(long, default_value_t = 0.75)]
    pub threshold: f64,
    /// Output format (text, json, markdown or csv).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub csv: CsvArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DesignFormat {
    Text,
    Csv,
}

#[derive(Args, Debug)]
pub struct DesignArgs {
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    #[arg(long, short = 'f')]
    pub formula: String,
    /// Rows to show (0 = all).
    #[arg(long, default_value_t = 10)]
    pub head: usize,
    #[arg(long, value_enum, default_value_t = DesignFormat::Text)]
    pub format: DesignFormat,
    #[arg(long, value_enum, default_value_t = MissingPolicy::Drop)]
    pub missing: MissingPolicy,
    #[command(flatten)]
    pub csv: CsvArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}
