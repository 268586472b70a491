//! Reports of a fit: statsmodels-style text, JSON with statsmodels'
//! attribute names, Markdown and CSV of the coefficient table.

pub mod absorbed;
pub mod corr;
pub mod grouped;
pub mod json;
pub mod text;

use crate::results::OlsResults;
use serde::{Deserialize, Serialize};

/// A fit's report, ready to render in any format: what `gramfit fit`
/// prints, and what a library caller keeps.
#[derive(Clone, Debug)]
pub enum Report {
    /// A plain fit (a factor estimated by blocks included).
    Plain { results: Box<OlsResults>, info: RunInfo },
    /// A fit with absorbed fixed effects.
    Absorbed { results: Box<crate::factors::AbsorbedResults>, info: RunInfo },
    /// One plain fit per level of `by`.
    Grouped { by: String, groups: Vec<grouped::GroupReport> },
}

impl Report {
    pub fn render(&self, format: Format) -> String {
        match self {
            Report::Plain { results, info } => render(results, info, format),
            Report::Absorbed { results, info } => absorbed::render(results, info, format),
            Report::Grouped { by, groups } => grouped::render_grouped(by, groups, format),
        }
    }
}

/// Output formats for a fit's report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Text,
    Json,
    Markdown,
    Csv,
}

/// Where the numbers came from: shown in gramfit's own block and in JSON.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub formula: String,
    pub inputs: Vec<InputInfo>,
    pub rows_read: u64,
    pub rows_dropped: u64,
    /// Seconds since the Unix epoch when the fit was (last) computed.
    pub fitted_at: u64,
    /// Wall time of the pass over the data, seconds.
    pub elapsed_s: f64,
    pub weights: Option<String>,
    /// Write the O(p²) blocks (`cov_params`, the correlation matrix, the
    /// variance proportions) whatever the number of columns (`--full-cov`).
    #[serde(skip)]
    pub full_cov: bool,
}

/// Past this many design columns the JSON report leaves out its O(p²)
/// blocks unless asked for (`--full-cov`): 300 columns make ~3 MB of
/// them, 1,500 columns ~250 MB.
pub const FULL_COV_COLUMNS: usize = crate::diagnostics::WIDE_DESIGN_COLUMNS;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct InputInfo {
    pub path: String,
    pub rows_read: u64,
    pub rows_dropped: u64,
    /// Where the read of a CSV file ended (for a file that grows).
    #[serde(skip)]
    pub end: Option<crate::source::csv::ReadEnd>,
    /// Rows of the file read in this pass, whether or not they were used
    /// (a grouped state's group is a part of them).
    #[serde(skip)]
    pub file_rows: u64,
    /// Rows read and dropped per group, in a grouped pass.
    #[serde(skip)]
    pub groups: Vec<(crate::level::Level, u64, u64)>,
}

/// Render a report in the given format.
pub fn render(res: &OlsResults, info: &RunInfo, format: Format) -> String {
    match format {
        Format::Text => text::summary(res, info),
        Format::Json => json::to_json(res, info),
        Format::Markdown => text::markdown(res, info),
        Format::Csv => text::coef_csv(res),
    }
}
