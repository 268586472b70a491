//! Looking at data and fits: a saved fit's report, the design matrix, the
//! correlation heatmap.

use crate::cli::{CorrArgs, DesignArgs, DesignFormat, SummaryArgs};
use crate::design::MissingPolicy;
use crate::engine::Progress;
use crate::formula::columns::design as design_columns;
use crate::level::{python_float_repr, ColumnKey};
use crate::model::{self, FitError, ModelOptions};
use crate::progress::ProgressDisplay;
use crate::report::RunInfo;
use crate::solve::NormalEquations;
use crate::state;
use std::collections::HashMap;
use std::sync::Arc;

use super::{emit, engine_options, render_state, AppError};

/// `gramfit summary STATE`: the report of a saved fit (no lock: the file
/// is replaced atomically, so it is read whole, old or new).
pub fn summary(a: &SummaryArgs) -> Result<(), AppError> {
    let st = state::load(&a.state)?;
    emit(&render_state(&st, &a.report)?, a.report.output.as_deref())
}

/// `gramfit design`: the response and design matrix rows, patsy-style.
pub fn design(a: &DesignArgs) -> Result<(), AppError> {
    let eo = engine_options(&a.engine)?;
    let csv = a.csv.options().map_err(AppError::Usage)?;
    let options =
        ModelOptions { formula: a.formula.clone(), weights: None, missing: a.missing, csv: csv.clone(), group: None };
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
                bytes: None,
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
    let options = ModelOptions { formula, weights: None, missing: MissingPolicy::Drop, csv: csv.clone(), group: None };
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
