//! The report of a grouped fit (one model per level of a column): text
//! reports one after another, each headed by its level; JSON an object
//! keyed by level; CSV the coefficient table with a `group` column;
//! Markdown one statistics table (a column per group) and one coefficient
//! table with a `group` column.

use super::text::{coef_csv, md_coef_row};
use super::{render, Format, RunInfo};
use crate::numfmt::fmt_g;
use crate::results::OlsResults;

/// One group's part: its level (as text), results and run information.
#[derive(Clone, Debug)]
pub struct GroupReport {
    pub level: String,
    pub results: OlsResults,
    pub info: RunInfo,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The report of the groups of a fit by `by`, in `format`.
pub fn render_grouped(by: &str, groups: &[GroupReport], format: Format) -> String {
    match format {
        Format::Text => groups
            .iter()
            .map(|g| format!("### {by} = {}\n{}", g.level, render(&g.results, &g.info, Format::Text)))
            .collect::<Vec<_>>()
            .join("\n"),
        Format::Json => {
            let mut obj = serde_json::Map::new();
            for g in groups {
                let v: serde_json::Value =
                    serde_json::from_str(&render(&g.results, &g.info, Format::Json)).expect("a report is JSON");
                obj.insert(g.level.clone(), v);
            }
            let mut s = serde_json::to_string_pretty(&serde_json::Value::Object(obj)).expect("JSON serializes");
            s.push('\n');
            s
        }
        Format::Csv => {
            let mut s = String::new();
            for (i, g) in groups.iter().enumerate() {
                let table = coef_csv(&g.results);
                for (k, line) in table.lines().enumerate() {
                    if k == 0 {
                        if i == 0 {
                            s.push_str(&format!("group,{line}\n"));
                        }
                        continue;
                    }
                    s.push_str(&format!("{},{line}\n", csv_field(&g.level)));
                }
            }
            s
        }
        Format::Markdown => markdown(by, groups),
    }
}

fn markdown(by: &str, groups: &[GroupReport]) -> String {
    let Some(first) = groups.first() else { return String::new() };
    let mut s = format!("## {} regression by {by}: `{}`\n\n", first.results.model, first.info.formula);
    s.push_str("| statistic |");
    for g in groups {
        s.push_str(&format!(" {} |", g.level.replace('|', "\\|")));
    }
    s.push_str(&format!("\n|---|{}\n", "---:|".repeat(groups.len())));
    type Stat = fn(&OlsResults) -> String;
    let stats: [(&str, Stat); 8] = [
        ("No. Observations", |r| r.nobs.to_string()),
        ("Df Residuals", |r| r.df_resid.to_string()),
        ("R-squared", |r| format!("{:.6}", r.rsquared)),
        ("Adj. R-squared", |r| format!("{:.6}", r.rsquared_adj)),
        ("F-statistic", |r| fmt_g(r.fvalue, 0, 6, false)),
        ("Prob (F-statistic)", |r| fmt_g(r.f_pvalue, 0, 4, false)),
        ("Log-Likelihood", |r| fmt_g(r.llf, 0, 6, false)),
        ("Cond. No.", |r| fmt_g(r.diagnostics.condition_number, 0, 4, false)),
    ];
    for (name, f) in stats {
        s.push_str(&format!("| {name} |"));
        for g in groups {
            s.push_str(&format!(" {} |", f(&g.results)));
        }
        s.push('\n');
    }
    s.push_str("\n| group | | coef | std err | t | P>\\|t\\| | [0.025 | 0.975] |\n");
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|\n");
    for g in groups {
        let lead = format!("{} | ", g.level.replace('|', "\\|"));
        for i in 0..g.results.names.len() {
            s.push_str(&md_coef_row(&g.results, i, &lead));
        }
    }
    for g in groups {
        let notes: Vec<&String> = g.results.notes.iter().chain(g.results.gramfit_notes.iter()).collect();
        if !notes.is_empty() {
            s.push_str(&format!("\n**Notes, {by} = {}**\n\n", g.level));
            for (i, n) in notes.iter().enumerate() {
                s.push_str(&format!("{}. {}\n", i + 1, n.replace('\n', " ")));
            }
        }
    }
    s
}
