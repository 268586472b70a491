//! Per-level sums of an absorbed factor, and the cross-tabulation of two.
//!
//! For a factor with levels `l`, [`LevelSums`] keeps each level's row
//! count `n_l`, weight total `W_l = Σ_{i∈l} w_i` and weighted sums
//! `s_l = Σ_{i∈l} w_i z_i` of every accumulated column `z` (the design's
//! cells and the response), in double-double: `O(L·k)` numbers for `L`
//! levels and `k` columns, where a dense dummy coding would keep
//! `O((L + k)²)`. These are the factor's off-diagonal block of `ZᵀWZ`; its
//! diagonal block is `diag(W_l)` (the levels of one factor never meet on a
//! row), and the cross-tabulation [`CrossTab`] of two factors is the
//! off-diagonal block between them. Like every statistic here they merge
//! by addition: the empty value is the identity, and a column a part never
//! saw is a zero column.

use crate::dd::Dd;
use crate::design::{DesignBlock, LevelMap};
use crate::level::{ColumnKey, Level};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One level's count, weight total and weighted column sums.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LevelSum {
    pub n: u64,
    pub w: Dd,
    /// `Σ w z` per column of the owning [`LevelSums`]' `keys` (shorter:
    /// the rest are zero).
    pub s: Vec<Dd>,
}

/// The per-level sums of one factor. Levels are kept in order of first
/// appearance and found by hash ([`sorted`](Self::sorted) orders them).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(try_from = "SumsRepr", into = "SumsRepr")]
pub struct LevelSums {
    /// The columns summed, in order of first appearance.
    pub keys: Vec<ColumnKey>,
    index: HashMap<ColumnKey, usize>,
    levels: Vec<Level>,
    position: LevelMap<Level>,
    sums: Vec<LevelSum>,
}

/// A [`LevelSums`] as stored: its columns, then each level with its sums.
#[derive(Serialize, Deserialize)]
struct SumsRepr {
    keys: Vec<ColumnKey>,
    levels: Vec<(Level, LevelSum)>,
}

impl From<LevelSums> for SumsRepr {
    fn from(s: LevelSums) -> Self {
        SumsRepr { keys: s.keys, levels: s.levels.into_iter().zip(s.sums).collect() }
    }
}

/// Sums read from a state are checked before use: distinct keys and
/// levels, no more sums than keys, finite values, a positive count.
impl TryFrom<SumsRepr> for LevelSums {
    type Error = String;

    fn try_from(r: SumsRepr) -> Result<Self, String> {
        let mut out = LevelSums::default();
        for k in &r.keys {
            if out.index_of(k).is_some() {
                return Err("a column of the level sums appears twice".into());
            }
            out.key_index(k);
        }
        for (level, sum) in r.levels {
            if out.get(&level).is_some() {
                return Err(format!("level {level} appears twice in the level sums"));
            }
            if sum.n == 0 || sum.s.len() > out.keys.len() {
                return Err(format!(
                    "level {level} has {} rows and {} sums for {} columns",
                    sum.n,
                    sum.s.len(),
                    out.keys.len()
                ));
            }
            if !sum.w.is_finite() || sum.w.hi <= 0.0 || !sum.s.iter().all(|d| d.is_finite()) {
                return Err(format!("level {level} has a weight or sum that is not a finite number"));
            }
            let i = out.slot(&level);
            out.sums[i] = sum;
        }
        Ok(out)
    }
}

/// The value of row `r` of block column `j`: `hi + lo` in double-double.
fn cell(block: &DesignBlock, j: usize, r: usize) -> Dd {
    let n = block.nrows();
    let hi = block.values[j * n + r];
    match &block.lo[j] {
        Some(lo) => Dd::new(hi, lo[r]),
        None => Dd::from(hi),
    }
}

impl LevelSums {
    fn key_index(&mut self, key: &ColumnKey) -> usize {
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        self.keys.push(key.clone());
        self.index.insert(key.clone(), self.keys.len() - 1);
        self.keys.len() - 1
    }

    /// The slot of `level`, made when new.
    fn slot(&mut self, level: &Level) -> usize {
        if let Some(&i) = self.position.get(level) {
            return i as usize;
        }
        self.levels.push(level.clone());
        self.sums.push(LevelSum::default());
        self.position.insert(level.clone(), (self.levels.len() - 1) as u32);
        self.levels.len() - 1
    }

    /// Position of `key` among the summed columns.
    pub fn index_of(&self, key: &ColumnKey) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// Levels seen.
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// A level's sums.
    pub fn get(&self, level: &Level) -> Option<&LevelSum> {
        self.position.get(level).map(|&i| &self.sums[i as usize])
    }

    /// The levels and their sums, in the levels' order.
    pub fn sorted(&self) -> Vec<(&Level, &LevelSum)> {
        let mut v: Vec<(&Level, &LevelSum)> = self.levels.iter().zip(&self.sums).collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Add the rows of `block`: row `r` has level `table[codes[r]]`
    /// (every code valid), summed into its level row by row.
    pub fn add_block(&mut self, block: &DesignBlock, codes: &[u32], table: &[Level]) {
        debug_assert_eq!(codes.len(), block.nrows());
        let cols: Vec<usize> = block.keys.iter().map(|k| self.key_index(k)).collect();
        let m = self.keys.len();
        let mut slot_of = vec![u32::MAX; table.len()];
        let mut slots = Vec::with_capacity(codes.len());
        for (r, &c) in codes.iter().enumerate() {
            if slot_of[c as usize] == u32::MAX {
                slot_of[c as usize] = self.slot(&table[c as usize]) as u32;
            }
            let i = slot_of[c as usize] as usize;
            slots.push(i);
            let l = &mut self.sums[i];
            if l.s.len() < m {
                l.s.resize(m, Dd::ZERO);
            }
            l.n += 1;
            l.w += Dd::from(block.weights.as_ref().map_or(1.0, |w| w[r]));
        }
        for (j, &col) in cols.iter().enumerate() {
            for (r, &i) in slots.iter().enumerate() {
                let z = cell(block, j, r);
                let wz = match &block.weights {
                    Some(w) => Dd::from(w[r]) * z,
                    None => z,
                };
                self.sums[i].s[col] += wz;
            }
        }
    }

    /// Add another factor's sums (the same factor, other rows).
    pub fn merge(&mut self, other: &LevelSums) {
        let map: Vec<usize> = other.keys.iter().map(|k| self.key_index(k)).collect();
        for (level, part) in other.levels.iter().zip(&other.sums) {
            let i = self.slot(level);
            add_level(&mut self.sums[i], part, &map);
        }
    }

    /// Take out sums added before (`other`'s rows were among these):
    /// levels left without rows disappear. Fails, changing nothing, when
    /// `other` has a level or more rows than these sums.
    pub fn retract(&mut self, other: &LevelSums) -> Result<(), String> {
        for (level, part) in other.levels.iter().zip(&other.sums) {
            match self.get(level) {
                Some(l) if l.n >= part.n => {}
                _ => return Err(format!("level {level} has fewer rows than the data retracted")),
            }
        }
        let map: Vec<usize> = other.keys.iter().map(|k| self.key_index(k)).collect();
        for (level, part) in other.levels.iter().zip(&other.sums) {
            let i = self.slot(level);
            let l = &mut self.sums[i];
            l.n -= part.n;
            l.w -= part.w;
            for (j, &v) in part.s.iter().enumerate() {
                if l.s.len() <= map[j] {
                    l.s.resize(map[j] + 1, Dd::ZERO);
                }
                l.s[map[j]] -= v;
            }
        }
        if self.sums.iter().any(|l| l.n == 0) {
            let (levels, sums): (Vec<Level>, Vec<LevelSum>) =
                self.levels.drain(..).zip(self.sums.drain(..)).filter(|(_, l)| l.n > 0).unzip();
            self.position = levels.iter().enumerate().map(|(i, l)| (l.clone(), i as u32)).collect();
            self.levels = levels;
            self.sums = sums;
        }
        Ok(())
    }

    /// The sum of column `key` over level `l` (zero when never seen).
    pub fn sum(&self, l: &LevelSum, key: &ColumnKey) -> Dd {
        self.index_of(key).and_then(|i| l.s.get(i).copied()).unwrap_or(Dd::ZERO)
    }
}

/// `into += part`, `part`'s columns at `map`.
fn add_level(into: &mut LevelSum, part: &LevelSum, map: &[usize]) {
    into.n += part.n;
    into.w += part.w;
    for (j, &v) in part.s.iter().enumerate() {
        let col = map[j];
        if into.s.len() <= col {
            into.s.resize(col + 1, Dd::ZERO);
        }
        into.s[col] += v;
    }
}

/// One interned side of a [`CrossTab`]: levels in order of first
/// appearance, found by value.
#[derive(Clone, Debug, Default)]
struct Interned {
    levels: Vec<Level>,
    position: LevelMap<Level>,
}

impl Interned {
    fn slot(&mut self, level: &Level) -> u32 {
        if let Some(&i) = self.position.get(level) {
            return i;
        }
        self.levels.push(level.clone());
        self.position.insert(level.clone(), (self.levels.len() - 1) as u32);
        (self.levels.len() - 1) as u32
    }
}

/// A cell of a cross-tabulation: its levels, rows and weight.
pub type Cell<'a> = (&'a Level, &'a Level, u64, Dd);

/// Rows and weight per pair of levels of two factors: only the pairs met.
/// Levels are interned per side and pairs found by their two slots, so a
/// row costs two small-integer lookups; [`sorted`](Self::sorted) gives
/// the cells in the levels' order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<(Level, Level, u64, Dd)>", into = "Vec<(Level, Level, u64, Dd)>")]
pub struct CrossTab {
    a: Interned,
    b: Interned,
    cells: HashMap<(u32, u32), (u64, Dd), std::hash::BuildHasherDefault<crate::design::LevelHasher>>,
}

impl From<CrossTab> for Vec<(Level, Level, u64, Dd)> {
    fn from(t: CrossTab) -> Self {
        t.sorted().into_iter().map(|(a, b, n, w)| (a.clone(), b.clone(), n, w)).collect()
    }
}

impl TryFrom<Vec<(Level, Level, u64, Dd)>> for CrossTab {
    type Error = String;

    fn try_from(v: Vec<(Level, Level, u64, Dd)>) -> Result<Self, String> {
        let mut t = CrossTab::default();
        for (a, b, n, w) in v {
            if n == 0 || !w.is_finite() || w.hi <= 0.0 {
                return Err(format!("the cell ({a}, {b}) of the cross-tabulation has {n} rows and weight {}", w.hi));
            }
            let key = (t.a.slot(&a), t.b.slot(&b));
            if t.cells.insert(key, (n, w)).is_some() {
                return Err(format!("the cell ({a}, {b}) appears twice in the cross-tabulation"));
            }
        }
        Ok(t)
    }
}

impl CrossTab {
    /// Add the rows of a block: row `r` has levels `a.1[a.0[r]]` and
    /// `b.1[b.0[r]]`; weights `w` (1 when `None`).
    pub fn add_rows(&mut self, a: (&[u32], &[Level]), b: (&[u32], &[Level]), w: Option<&[f64]>) {
        let mut slot_a = vec![u32::MAX; a.1.len()];
        let mut slot_b = vec![u32::MAX; b.1.len()];
        for (r, (&ca, &cb)) in a.0.iter().zip(b.0).enumerate() {
            let (ca, cb) = (ca as usize, cb as usize);
            if slot_a[ca] == u32::MAX {
                slot_a[ca] = self.a.slot(&a.1[ca]);
            }
            if slot_b[cb] == u32::MAX {
                slot_b[cb] = self.b.slot(&b.1[cb]);
            }
            let e = self.cells.entry((slot_a[ca], slot_b[cb])).or_insert((0, Dd::ZERO));
            e.0 += 1;
            e.1 += Dd::from(w.map_or(1.0, |w| w[r]));
        }
    }

    pub fn merge(&mut self, other: &CrossTab) {
        let map_a: Vec<u32> = other.a.levels.iter().map(|l| self.a.slot(l)).collect();
        let map_b: Vec<u32> = other.b.levels.iter().map(|l| self.b.slot(l)).collect();
        // In the other's levels' order: the weight sums' bits do not
        // depend on the hash map's order.
        let mut keys: Vec<&(u32, u32)> = other.cells.keys().collect();
        keys.sort_unstable();
        for k in keys {
            let (n, w) = other.cells[k];
            let e = self.cells.entry((map_a[k.0 as usize], map_b[k.1 as usize])).or_insert((0, Dd::ZERO));
            e.0 += n;
            e.1 += w;
        }
    }

    /// Take out cells added before; cells left without rows disappear.
    pub fn retract(&mut self, other: &CrossTab) -> Result<(), String> {
        let find = |t: &CrossTab, a: &Level, b: &Level| -> Option<(u32, u32)> {
            Some((*t.a.position.get(a)?, *t.b.position.get(b)?))
        };
        for (a, b, n, _) in other.sorted() {
            if find(self, a, b).and_then(|k| self.cells.get(&k)).is_none_or(|c| c.0 < n) {
                return Err(format!("the pair ({a}, {b}) has fewer rows than the data retracted"));
            }
        }
        for (a, b, n, w) in other.sorted() {
            let k = find(self, a, b).expect("checked above");
            let c = self.cells.get_mut(&k).expect("checked above");
            c.0 -= n;
            c.1 -= w;
        }
        self.cells.retain(|_, c| c.0 > 0);
        Ok(())
    }

    /// The cells, in the order of their levels (first, then second).
    pub fn sorted(&self) -> Vec<Cell<'_>> {
        let mut v: Vec<Cell<'_>> = self
            .cells
            .iter()
            .map(|(&(a, b), &(n, w))| (&self.a.levels[a as usize], &self.b.levels[b as usize], n, w))
            .collect();
        v.sort_unstable_by(|x, y| x.0.cmp(y.0).then_with(|| x.1.cmp(y.1)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(keys: Vec<ColumnKey>, cols: &[&[f64]], weights: Option<Vec<f64>>) -> DesignBlock {
        let mut b = DesignBlock::default();
        b.lo = vec![None; keys.len()];
        b.integral = vec![false; keys.len()];
        b.keys = keys;
        b.values = cols.concat();
        b.weights = weights;
        b.rows_in = cols[0].len();
        b
    }

    /// Sums of two blocks merged equal the sums of their rows in one
    /// block, exactly (small integers), including a column only the second
    /// block has (zero on the first's rows).
    #[test]
    fn merge_of_parts_is_the_sum_of_the_whole() {
        let x = ColumnKey::Cell { term: 0, levels: vec![] };
        let y = ColumnKey::Response;
        let table = [Level::Str("a".into()), Level::Str("b".into())];
        let mut one = LevelSums::default();
        one.add_block(&block(vec![y.clone()], &[&[1.0, 2.0, 3.0]], None), &[0, 1, 0], &table);
        let mut two = LevelSums::default();
        two.add_block(&block(vec![x.clone(), y.clone()], &[&[5.0, 7.0], &[4.0, 8.0]], None), &[1, 1], &table);
        one.merge(&two);
        let mut whole = LevelSums::default();
        let b = block(vec![y.clone(), x.clone()], &[&[1.0, 2.0, 3.0, 4.0, 8.0], &[0.0, 0.0, 0.0, 5.0, 7.0]], None);
        whole.add_block(&b, &[0, 1, 0, 1, 1], &table);
        for level in &table {
            let (p, q) = (one.get(level).unwrap(), whole.get(level).unwrap());
            assert_eq!((p.n, p.w), (q.n, q.w));
            for k in [&x, &y] {
                assert_eq!(one.sum(p, k), whole.sum(q, k), "{level:?} {k:?}");
            }
        }
        assert_eq!(one.sum(one.get(&table[1]).unwrap(), &y), Dd::from(14.0));
    }

    #[test]
    fn cross_tab_counts_pairs_with_weights() {
        let a = [Level::Int(1), Level::Int(2)];
        let b = [Level::Str("x".into())];
        let mut t = CrossTab::default();
        t.add_rows((&[0, 1, 0], &a), (&[0, 0, 0], &b), Some(&[0.5, 2.0, 0.25]));
        let x = Level::Str("x".into());
        assert_eq!(t.sorted(), [(&Level::Int(1), &x, 2, Dd::from(0.75)), (&Level::Int(2), &x, 1, Dd::from(2.0))]);
    }

    use proptest::prelude::*;

    proptest! {
        /// Laws: sums of rows split anywhere and merged equal the sums of
        /// the whole (small integers: exactly); retracting a part gives
        /// the other part's sums, and levels left with no row disappear.
        #[test]
        fn merge_and_retract_laws(rows in proptest::collection::vec((0u32..6, -50i32..50, 0u32..4), 1..60), cut in 0usize..60) {
            let table: Vec<Level> = (0..6).map(Level::Int).collect();
            let y = ColumnKey::Response;
            let sums = |rows: &[(u32, i32, u32)]| {
                let mut s = LevelSums::default();
                if !rows.is_empty() {
                    let v: Vec<f64> = rows.iter().map(|r| r.1 as f64).collect();
                    let w: Vec<f64> = rows.iter().map(|r| 0.5 + r.2 as f64).collect();
                    let codes: Vec<u32> = rows.iter().map(|r| r.0).collect();
                    s.add_block(&block(vec![y.clone()], &[&v], Some(w)), &codes, &table);
                }
                s
            };
            let cut = cut.min(rows.len());
            let (a, b) = (sums(&rows[..cut]), sums(&rows[cut..]));
            let whole = sums(&rows);
            let mut merged = a.clone();
            merged.merge(&b);
            let flat = |s: &LevelSums| -> Vec<(Level, u64, Dd, Dd)> {
                s.sorted().into_iter().map(|(l, x)| (l.clone(), x.n, x.w, s.sum(x, &ColumnKey::Response))).collect()
            };
            prop_assert_eq!(flat(&merged), flat(&whole));
            merged.retract(&b).unwrap();
            prop_assert_eq!(flat(&merged), flat(&a));
        }
    }
}
