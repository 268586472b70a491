//! Every structural invariant of a state, checked when it is decoded and
//! before any arithmetic: the statistics' own (lengths, finite values,
//! counts; `SufficientStats`'s `TryFrom`), and those between the parts —
//! a formula that resolves against the recorded column types, a level
//! table per factor, column keys that name the formula's terms and
//! levels, row counts that add up, a second pass whose dimensions are the
//! design's. A violation is a message naming what is wrong.

use super::State;
use crate::level::{ColumnKey, Level};
use crate::model::Resolved;

impl State {
    /// Check the state's invariants (see the module's comment).
    pub fn validate(&self) -> Result<(), String> {
        self.model.csv.validate().map_err(|e| format!("CSV options: {e}"))?;
        let absorbed = crate::model::absorbed_model(&self.model).map_err(|e| format!("the formula: {e}"))?;
        let not_fitting =
            |e: String| format!("the formula '{}' does not fit the recorded columns: {e}", self.model.formula);
        let resolved = match (&absorbed, &self.absorbed) {
            (None, None) => {
                Resolved::new(self.model.clone(), self.column_types.clone()).map_err(|e| not_fitting(e.to_string()))?
            }
            (Some((main, columns)), Some(part)) if part.estimated_term.is_none() => {
                check_absorbed(part, columns, &self.accumulator)?;
                Resolved::new(main.clone(), self.column_types.clone()).map_err(|e| not_fitting(e.to_string()))?
            }
            (None, Some(part)) if part.estimated_term.is_some() => {
                let term = part.estimated_term.unwrap_or_default();
                let (_, rest, bf) = crate::factors::estimated::estimated_model(&self.model, &self.column_types, term)
                    .map_err(not_fitting)?;
                check_absorbed(part, &[bf.column], &self.accumulator)?;
                rest
            }
            (Some(_), Some(_)) => return Err("a factor estimated by blocks in a formula that absorbs".into()),
            (Some(_), None) => return Err("the formula absorbs fixed effects but the state has no level sums".into()),
            (None, Some(_)) => return Err("the state has level sums but the formula absorbs nothing".into()),
        };
        let spec = &resolved.spec;
        let acc = &self.accumulator;
        if acc.levels.len() != spec.factors.len() {
            return Err(format!("{} level tables for the formula's {} factors", acc.levels.len(), spec.factors.len()));
        }
        for (f, levels) in spec.factors.iter().zip(&acc.levels) {
            if !f.is_categorical() && !levels.is_empty() {
                return Err(format!("the numeric factor {} has levels", f.name));
            }
            if let Some((l, _)) = levels.iter().find(|(_, &n)| n == 0) {
                return Err(format!("level {l} of {} is counted on no row", f.name));
            }
            if levels.keys().any(|l| matches!(l, Level::Float(x) if !x.is_finite())) {
                return Err(format!("{} has a level that is not a finite number", f.name));
            }
            let rows: u64 = levels.values().fold(0u64, |a, &n| a.saturating_add(n));
            if rows > acc.rows_read {
                return Err(format!("the levels of {} count {rows} rows of {} read", f.name, acc.rows_read));
            }
        }
        if acc.rows_dropped > acc.rows_read || acc.stats.nobs() != acc.rows_read - acc.rows_dropped {
            return Err(format!(
                "{} rows read, {} dropped, but {} in the statistics",
                acc.rows_read,
                acc.rows_dropped,
                acc.stats.nobs()
            ));
        }
        let keys = acc.stats.keys();
        if acc.stats.nobs() > 0 && !keys.contains(&ColumnKey::Response) {
            return Err("the statistics have no response column".into());
        }
        for key in keys {
            let ColumnKey::Cell { term, levels } = key else { continue };
            let Some(factors) = spec.terms.get(*term as usize) else {
                return Err(format!("a column of term {term}, where the formula has {} terms", spec.terms.len()));
            };
            let cats: Vec<usize> = factors.iter().copied().filter(|&f| spec.factors[f].is_categorical()).collect();
            if levels.len() != cats.len() {
                return Err(format!(
                    "a column of term {term} with {} levels for its {} factors",
                    levels.len(),
                    cats.len()
                ));
            }
            for (l, &f) in levels.iter().zip(&cats) {
                if !acc.levels[f].contains_key(l) {
                    return Err(format!("a column for level {l} of {}, which no row has", spec.factors[f].name));
                }
            }
        }
        let design = crate::formula::columns::design(spec, &acc.level_sets(), keys).map_err(|e| e.to_string())?;
        if let Some(snap) = &self.residuals {
            let p = design.names().len();
            if let Some(v) = &snap.robust_cov {
                if v.len() != p * p || v.iter().any(|x| !x.is_finite()) {
                    return Err(format!("a robust covariance of {} entries for {p} coefficients", v.len()));
                }
            }
            if snap.undefined.iter().any(|&i| i >= p) {
                return Err("an undefined coefficient past the design's".into());
            }
        }
        for p in &self.inputs {
            if !(p.sha256.is_empty() || p.sha256.len() == 64 && p.sha256.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Err(format!("input {}: a SHA-256 of {} characters", p.path, p.sha256.len()));
            }
            if p.rows_dropped > p.rows_read {
                return Err(format!("input {}: more rows dropped than read", p.path));
            }
        }
        if let Some(g) = &self.model.group {
            if !self.column_types.iter().any(|(n, _)| *n == g.column) {
                return Err(format!("the group column '{}' is not among the recorded columns", g.column));
            }
        }
        Ok(())
    }
}

/// An absorbed fit's level sums against its formula and statistics: one
/// table per absorbed column, a cross-tabulation exactly for two, and
/// every kept row counted once per factor (and per cell).
fn check_absorbed(
    part: &crate::factors::AbsorbedPart,
    columns: &[String],
    dense: &crate::accumulator::FitAccumulator,
) -> Result<(), String> {
    if part.columns != columns {
        return Err(format!("level sums of {:?} for the absorbed columns {columns:?}", part.columns));
    }
    if part.sums.len() != columns.len() || part.cross.is_some() != (columns.len() == 2) {
        return Err(format!("{} level tables for {} absorbed columns", part.sums.len(), columns.len()));
    }
    let kept = dense.stats.nobs();
    for (c, sums) in columns.iter().zip(&part.sums) {
        let rows = sums.sorted().iter().fold(0u64, |a, (_, l)| a.saturating_add(l.n));
        if rows != kept {
            return Err(format!("the levels of '{c}' count {rows} rows, the statistics {kept}"));
        }
    }
    if let Some(cross) = &part.cross {
        // Every cell's levels are levels of the two factors, and each
        // level's cells count its rows.
        let mut per_level: [std::collections::HashMap<&Level, u64>; 2] = Default::default();
        for (a, b, n, _) in cross.sorted() {
            for (f, l) in [(0, a), (1, b)] {
                if part.sums[f].get(l).is_none() {
                    return Err(format!("the cross-tabulation has a level {l} of '{}' that has no sums", columns[f]));
                }
                let c = per_level[f].entry(l).or_insert(0);
                *c = c.saturating_add(n);
            }
        }
        for f in 0..2 {
            for (l, sum) in part.sums[f].sorted() {
                let n = per_level[f].get(l).copied().unwrap_or(0);
                if n != sum.n {
                    return Err(format!("level {l} of '{}' has {} rows, its cross-tabulation {n}", columns[f], sum.n));
                }
            }
        }
    }
    if part.rows_read != dense.rows_read.saturating_add(part.rows_missing_level) {
        return Err(format!(
            "{} rows read, {} without a level, {} in the statistics' count",
            part.rows_read, part.rows_missing_level, dense.rows_read
        ));
    }
    Ok(())
}
