//! patsy's design columns: which columns a model has, their order and names
//! (`patsy/build.py: _make_subterm_infos`, `patsy/redundancy.py`).
//!
//! **Streaming levels.** The accumulated statistics hold, for every term, the
//! *full* cell expansion: one column per combination of levels of the term's
//! categorical factors that occurred (times its numeric factors). A level
//! first seen in the last file simply adds columns, and since every earlier
//! row had zero there, growing the state is exact. Only here, at solve time,
//! are the reference levels chosen and the coded columns formed, in patsy's
//! order: with Treatment coding every coded column is a *sum* of full cells
//! (`b[T.y]` in the term `a:b` coded without `a` is Σₗ `a[l]:b[y]`), so the
//! moments of the design are exact linear combinations of the state's.
//!
//! Ordering: terms are bucketed by the set of numeric factors they contain,
//! buckets in order of first appearance with the purely categorical bucket
//! first; within a bucket, terms are stably sorted by their number of
//! factors. Within a term, patsy picks for each categorical factor either
//! reduced-rank (`[T.level]`, reference dropped) or full-rank (`[level]`)
//! coding so that the columns are not redundant with lower-order terms in
//! the same bucket, and enumerates columns with the left-most factor varying
//! fastest.

use super::ModelSpec;
use crate::level::{ColumnKey, Level};
use std::collections::{BTreeSet, HashMap, HashSet};

/// One design column: its patsy name and the state cells it sums.
#[derive(Clone, Debug, PartialEq)]
pub struct DesignColumn {
    pub name: String,
    pub cells: Vec<ColumnKey>,
}

/// The model's design: an optional intercept followed by coded columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Design {
    pub intercept: bool,
    pub columns: Vec<DesignColumn>,
}

impl Design {
    /// The design column (not counting the intercept) that each cell key
    /// is summed into.
    pub fn key_columns(&self) -> std::collections::HashMap<ColumnKey, usize> {
        let mut out = std::collections::HashMap::new();
        for (c, col) in self.columns.iter().enumerate() {
            for key in &col.cells {
                out.insert(key.clone(), c);
            }
        }
        out
    }

    /// All column names, `Intercept` first when present.
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(self.columns.len() + 1);
        if self.intercept {
            v.push("Intercept".to_string());
        }
        v.extend(self.columns.iter().map(|c| c.name.clone()));
        v
    }
}

/// An error choosing the coding (a reference level that does not exist).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CodingError(pub String);

/// A subterm: factors with their coding (`true` = full rank). Kept sorted.
type Subterm = Vec<(usize, bool)>;

fn subsets_sorted(items: &[usize]) -> Vec<Vec<usize>> {
    let n = items.len();
    let mut subsets: Vec<Vec<usize>> =
        (0u32..(1 << n)).map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect::<Vec<usize>>()).collect();
    // Short before long; ties by the positions in the original order.
    subsets.sort();
    subsets.sort_by_key(|s| s.len());
    subsets.into_iter().map(|s| s.into_iter().map(|i| items[i]).collect()).collect()
}

fn can_absorb(long: &Subterm, short: &Subterm) -> bool {
    long.len() == short.len() + 1 && short.iter().all(|e| long.contains(e))
}

fn absorb(long: &Subterm, short: &Subterm) -> Subterm {
    let diff: Vec<&(usize, bool)> = long.iter().filter(|e| !short.contains(e)).collect();
    let mut out = short.clone();
    out.push((diff[0].0, true));
    out.sort();
    out
}

/// patsy's `pick_contrasts_for_term`.
fn pick_contrasts(categorical: &[usize], used: &mut Vec<Subterm>) -> Vec<Subterm> {
    let mut subterms: Vec<Subterm> = Vec::new();
    for subset in subsets_sorted(categorical) {
        let mut st: Subterm = subset.iter().map(|&f| (f, false)).collect();
        st.sort();
        if !used.contains(&st) {
            subterms.push(st);
        }
    }
    used.extend(subterms.iter().cloned());
    // _simplify_subterms: greedily absorb left to right.
    'outer: loop {
        for short_i in 0..subterms.len() {
            for long_i in short_i + 1..subterms.len() {
                if can_absorb(&subterms[long_i], &subterms[short_i]) {
                    subterms[long_i] = absorb(&subterms[long_i], &subterms[short_i]);
                    subterms.remove(short_i);
                    continue 'outer;
                }
            }
        }
        break;
    }
    subterms
}

/// Choose the design columns of `spec`, given each factor's levels (for
/// categorical factors; sorted) and the state's cell keys.
pub fn design(spec: &ModelSpec, levels: &[BTreeSet<Level>], keys: &[ColumnKey]) -> Result<Design, CodingError> {
    let is_num = |f: usize| !spec.factors[f].is_categorical();
    // Buckets by numeric-factor set; `None` stands for the intercept term.
    let mut all_terms: Vec<Option<usize>> = Vec::new();
    if spec.intercept {
        all_terms.push(None);
    }
    all_terms.extend((0..spec.terms.len()).map(Some));
    let factors_of = |t: Option<usize>| -> Vec<usize> { t.map_or(Vec::new(), |t| spec.terms[t].clone()) };
    let mut buckets: Vec<(Vec<usize>, Vec<Option<usize>>)> = Vec::new();
    for &t in &all_terms {
        let mut nums: Vec<usize> = factors_of(t).into_iter().filter(|&f| is_num(f)).collect();
        nums.sort_unstable();
        match buckets.iter_mut().find(|(b, _)| *b == nums) {
            Some((_, ts)) => ts.push(t),
            None => buckets.push((nums, vec![t])),
        }
    }
    if let Some(pos) = buckets.iter().position(|(b, _)| b.is_empty()) {
        let b = buckets.remove(pos);
        buckets.insert(0, b);
    }

    let reference = |f: usize| -> Result<Option<Level>, CodingError> {
        let lv = &levels[f];
        match &spec.factors[f].kind {
            super::FactorKind::Categorical { reference: Some(lit), .. } => {
                lv.iter().find(|l| l.matches_literal(lit)).cloned().map(Some).ok_or_else(|| {
                    CodingError(format!(
                        "the reference level {lit} of {} is not one of its levels ({})",
                        spec.factors[f].name,
                        lv.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
                    ))
                })
            }
            _ => Ok(lv.iter().next().cloned()),
        }
    };

    // The keys by term, and as a set: a column's cells are found by
    // lookup, not by a scan of every key (a factor of 100,000 levels).
    let mut term_keys: HashMap<u32, Vec<&ColumnKey>> = HashMap::new();
    for k in keys {
        if let ColumnKey::Cell { term, .. } = k {
            term_keys.entry(*term).or_default().push(k);
        }
    }
    let key_set: HashSet<&ColumnKey> = keys.iter().collect();
    let mut out = Design { intercept: false, columns: Vec::new() };
    for (_, mut terms) in buckets {
        terms.sort_by_key(|t| factors_of(*t).len());
        let mut used: Vec<Subterm> = Vec::new();
        for t in terms {
            let tf = factors_of(t);
            let cats: Vec<usize> = tf.iter().copied().filter(|&f| !is_num(f)).collect();
            for st in pick_contrasts(&cats, &mut used) {
                let Some(term) = t else {
                    out.intercept = true;
                    continue;
                };
                // Per factor of the subterm (term order): the choices.
                enum Piece {
                    Num(usize),
                    Cat { f: usize, levels: Vec<Level>, full: bool },
                }
                let mut pieces: Vec<Piece> = Vec::new();
                for &f in &tf {
                    if is_num(f) {
                        pieces.push(Piece::Num(f));
                    } else if let Some(&(_, full)) = st.iter().find(|(g, _)| *g == f) {
                        let mut lv: Vec<Level> = levels[f].iter().cloned().collect();
                        if !full {
                            let r = reference(f)?;
                            lv.retain(|l| Some(l) != r.as_ref());
                        }
                        pieces.push(Piece::Cat { f, levels: lv, full });
                    }
                }
                let counts: Vec<usize> = pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Num(_) => 1,
                        Piece::Cat { levels, .. } => levels.len(),
                    })
                    .collect();
                let total: usize = counts.iter().product();
                for idx in 0..total {
                    // Left-most fastest.
                    let mut rem = idx;
                    let mut name_parts = Vec::new();
                    let mut fixed: Vec<(usize, &Level)> = Vec::new();
                    for (p, &c) in pieces.iter().zip(&counts) {
                        let k = rem % c;
                        rem /= c;
                        match p {
                            Piece::Num(f) => name_parts.push(spec.factors[*f].name.clone()),
                            Piece::Cat { f, levels, full } => {
                                let l = &levels[k];
                                let name = &spec.factors[*f].name;
                                name_parts.push(if *full { format!("{name}[{l}]") } else { format!("{name}[T.{l}]") });
                                fixed.push((*f, l));
                            }
                        }
                    }
                    let cells = if fixed.len() == cats.len() {
                        // Every level fixed: one cell, if it occurred.
                        let levels = cats
                            .iter()
                            .map(|c| fixed.iter().find(|(f, _)| f == c).expect("every factor fixed").1.clone())
                            .collect();
                        let key = ColumnKey::Cell { term: term as u32, levels };
                        if key_set.contains(&key) {
                            vec![key]
                        } else {
                            Vec::new()
                        }
                    } else {
                        term_keys
                            .get(&(term as u32))
                            .into_iter()
                            .flatten()
                            .filter(|k| match k {
                                ColumnKey::Cell { levels, .. } => fixed.iter().all(|(f, l)| {
                                    let pos = cats.iter().position(|c| c == f).expect("categorical factor of term");
                                    &levels[pos] == *l
                                }),
                                ColumnKey::Response => false,
                            })
                            .map(|&k| k.clone())
                            .collect()
                    };
                    out.columns.push(DesignColumn { name: name_parts.join(":"), cells });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formula::SourceType;

    fn names(formula: &str, cols: &[(&str, SourceType)], levels_of: &[(&str, &[&str])]) -> Vec<String> {
        let cols: Vec<(String, SourceType)> = cols.iter().map(|(n, t)| (n.to_string(), *t)).collect();
        let spec = ModelSpec::resolve(formula, &cols).unwrap();
        let levels: Vec<BTreeSet<Level>> = spec
            .factors
            .iter()
            .map(|f| {
                levels_of
                    .iter()
                    .find(|(n, _)| *n == f.name)
                    .map(|(_, l)| l.iter().map(|s| Level::Str(s.to_string())).collect())
                    .unwrap_or_default()
            })
            .collect();
        design(&spec, &levels, &[]).unwrap().names()
    }

    #[test]
    fn patsy_orders_and_codes_interactions() {
        use SourceType::*;
        let cols = [("y", Numeric), ("x", Numeric), ("a", Text), ("b", Text)];
        let lv: &[(&str, &[&str])] = &[("a", &["a1", "a2"]), ("b", &["b1", "b2"])];
        assert_eq!(names("y ~ x + a", &cols, lv), ["Intercept", "a[T.a2]", "x"]);
        assert_eq!(names("y ~ a:b", &cols, lv), ["Intercept", "b[T.b2]", "a[T.a2]:b[b1]", "a[T.a2]:b[b2]"]);
        assert_eq!(names("y ~ x:a", &cols, lv), ["Intercept", "x:a[a1]", "x:a[a2]"]);
        assert_eq!(names("y ~ a - 1", &cols, lv), ["a[a1]", "a[a2]"]);
        assert_eq!(names("y ~ a*x", &cols, lv), ["Intercept", "a[T.a2]", "x", "a[T.a2]:x"]);
    }
}
