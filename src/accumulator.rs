//! The accumulated state of one model: the sufficient statistics plus what
//! the design needs beyond them (the categorical levels seen, with counts)
//! and the row bookkeeping for the report. Same laws as
//! [`SufficientStats`]: `update`, `merge`, `retract`, the empty value is the
//! identity.

use crate::design::{split_by_level, DesignBlock, DesignBuilder, DesignError};
use crate::level::ColumnKey;
use crate::level::Level;
use crate::stats::columns::RawMoments;
use crate::stats::kernel::raw_moments_of_matrix;
use crate::stats::{RawSums, StatsError, SufficientStats};
use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FitAccumulator {
    pub stats: SufficientStats,
    /// Per right-hand factor: levels seen and on how many rows (empty for
    /// numeric factors).
    #[serde(with = "level_counts")]
    pub levels: Vec<BTreeMap<Level, u64>>,
    /// Rows read from the inputs, including dropped ones.
    pub rows_read: u64,
    /// Rows dropped for a missing value.
    pub rows_dropped: u64,
    /// Unweighted chunks of the current work unit not yet folded into
    /// `stats` (see [`RawSums`]); folded by `merge` (how the engine combines
    /// units, so nothing leaves the engine pending) and by the other
    /// updates. Never serialized: only the engine's units hold any.
    #[serde(skip)]
    pending: RawSums,
    /// Read every column as the doubles it holds, never as decimals
    /// (`stats::reals`): set where other sums of the same values are kept
    /// beside these (an absorbed fit's per-level sums).
    #[serde(skip)]
    binary_only: bool,
}

mod level_counts {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[BTreeMap<Level, u64>], s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<Vec<(&Level, &u64)>> = v.iter().map(|m| m.iter().collect()).collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BTreeMap<Level, u64>>, D::Error> {
        let pairs: Vec<Vec<(Level, u64)>> = Vec::deserialize(d)?;
        Ok(pairs.into_iter().map(|p| p.into_iter().collect()).collect())
    }
}

impl FitAccumulator {
    pub fn new(n_factors: usize) -> Self {
        FitAccumulator { levels: vec![BTreeMap::new(); n_factors], ..Default::default() }
    }

    /// This accumulator, reading every column as the doubles it holds
    /// (see the field `binary_only`).
    pub fn binary_only(self) -> Self {
        FitAccumulator { binary_only: true, ..self }
    }

    /// Add per-factor level counts (from a block or another accumulator).
    fn add_level_counts<'a, M>(&mut self, counts: &'a [M])
    where
        &'a M: IntoIterator<Item = (&'a Level, &'a u64)>,
    {
        if self.levels.len() < counts.len() {
            self.levels.resize(counts.len(), BTreeMap::new());
        }
        for (fi, m) in counts.iter().enumerate() {
            for (l, &k) in m {
                *self.levels[fi].entry(l.clone()).or_insert(0) += k;
            }
        }
    }

    /// Fold the pending chunks into the statistics.
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let part = self.pending.take();
            self.stats.merge(&part);
        }
    }

    /// Fold a chunk's raw sums: unweighted ones join the pending run (a
    /// new run where it is full or of the other kind, exact or not),
    /// weighted ones (after the run, to keep the order) are merged as a
    /// state.
    fn add_raw(&mut self, keys: &[ColumnKey], raw: RawMoments, n: usize, weights: Option<&[f64]>) {
        if n == 0 {
            return;
        }
        if weights.is_none() {
            if !self.pending.accepts(&raw) {
                self.flush();
            }
            self.pending.add(keys, &raw, n);
        } else {
            self.flush();
            self.stats.merge(&SufficientStats::from_raw(keys, n, raw, weights));
        }
    }

    /// Fold one block of design rows in, as a state of its own.
    pub fn update(&mut self, block: &DesignBlock) {
        self.fold_block(block, false);
    }

    /// `pending`: the sums may join the pending run — only in the
    /// engine's units, which leave it through `merge`.
    fn fold_block(&mut self, block: &DesignBlock, pending: bool) {
        let lo: Vec<Option<&[f64]>> = block.lo.iter().map(|l| l.as_deref()).collect();
        let (n, weights) = (block.nrows(), block.weights.as_deref());
        let raw = raw_moments_of_matrix(&block.values, n, &lo, &block.integral, !self.binary_only, weights);
        if pending {
            self.add_raw(&block.keys, raw, n, weights);
        } else if n > 0 {
            self.flush();
            self.stats.merge(&SufficientStats::from_raw(&block.keys, n, raw, weights));
        }
        self.add_level_counts(&block.levels);
        self.rows_read += block.rows_in as u64;
        self.rows_dropped += block.rows_dropped as u64;
    }

    pub fn merge(&mut self, other: &FitAccumulator) {
        self.flush();
        self.stats.merge(&other.stats);
        if !other.pending.is_empty() {
            self.stats.merge(&other.pending.clone().take());
        }
        self.add_level_counts(&other.levels);
        self.rows_read += other.rows_read;
        self.rows_dropped += other.rows_dropped;
    }

    /// Take out data that was merged in before; levels left with no rows
    /// disappear.
    pub fn retract(&mut self, other: &FitAccumulator) -> Result<(), StatsError> {
        self.flush();
        let folded;
        let other = if other.pending.is_empty() {
            other
        } else {
            folded = {
                let mut o = other.clone();
                o.flush();
                o
            };
            &folded
        };
        if other.rows_read > self.rows_read {
            return Err(StatsError::RetractTooMany(other.rows_read, self.rows_read));
        }
        self.stats.retract(&other.stats)?;
        for (fi, m) in other.levels.iter().enumerate() {
            for (l, &k) in m {
                if let Some(c) = self.levels.get_mut(fi).and_then(|lv| lv.get_mut(l)) {
                    *c = c.saturating_sub(k);
                }
            }
            if let Some(lv) = self.levels.get_mut(fi) {
                lv.retain(|_, c| *c > 0);
            }
        }
        self.rows_read -= other.rows_read;
        self.rows_dropped -= other.rows_dropped.min(self.rows_dropped);
        Ok(())
    }

    /// The sorted level sets, as the design needs them.
    pub fn level_sets(&self) -> Vec<std::collections::BTreeSet<Level>> {
        self.levels.iter().map(|m| m.keys().cloned().collect()).collect()
    }
}

/// What the engine folds chunks of rows into: one model's accumulator, or
/// one per group. `empty` is the identity of `merge`.
pub trait ChunkSink: Sized + Send {
    /// Fold one chunk of source rows in; `at(row)` locates a row for errors.
    fn add_chunk(
        &mut self,
        builder: &DesignBuilder,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<(), DesignError>;
    fn merge(&mut self, other: &Self);
    /// The end of a work unit: fold any working state (tables kept across
    /// chunks) into the statistics. Unit results wait for the ordered
    /// merge, so they must be compact: memory stays bounded by the units in
    /// flight, not by the file.
    fn finish(&mut self) {}
    /// Rows read and rows dropped.
    fn rows(&self) -> (u64, u64);
    /// Rows read and dropped per group, for a grouped pass (else empty).
    fn rows_by_group(&self) -> Vec<(Level, u64, u64)> {
        Vec::new()
    }
}

/// A sink whose empty value (the identity of `merge`) the builder alone
/// determines: what [`crate::engine::accumulate`] folds into.
pub trait EmptySink: ChunkSink {
    fn empty(builder: &DesignBuilder) -> Self;
}

impl EmptySink for FitAccumulator {
    fn empty(builder: &DesignBuilder) -> Self {
        FitAccumulator::new(builder.spec.factors.len())
    }
}

impl FitAccumulator {
    /// The first factor past its limit in `builder.level_limits`.
    pub fn check_level_limits(&self, builder: &DesignBuilder) -> Result<(), DesignError> {
        for &(factor, _) in &builder.level_limits {
            builder.check_levels(factor, self.levels.get(factor).map_or(0, |l| l.len()))?;
        }
        Ok(())
    }
}

impl ChunkSink for FitAccumulator {
    fn add_chunk(
        &mut self,
        builder: &DesignBuilder,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<(), DesignError> {
        if let Some(part) = builder.direct_part(chunk, at)? {
            let n = part.rows_in - part.rows_dropped;
            self.add_raw(&part.keys, part.raw, n, None);
            self.add_level_counts(&part.levels);
            self.rows_read += part.rows_in as u64;
            self.rows_dropped += part.rows_dropped as u64;
        } else {
            let block = builder.block(chunk, at)?;
            self.fold_block(&block, true);
        }
        self.check_level_limits(builder)
    }
    fn merge(&mut self, other: &Self) {
        FitAccumulator::merge(self, other)
    }
    fn rows(&self) -> (u64, u64) {
        (self.rows_read, self.rows_dropped)
    }
}

/// One accumulator per level of a grouping column (`by = "borough"`): one
/// pass over the data fits a model per group. Rows whose group is missing
/// are counted and dropped.
#[derive(Clone, Debug, Default)]
pub struct GroupedAccumulator {
    pub groups: BTreeMap<Level, FitAccumulator>,
    pub rows_read: u64,
    pub rows_without_group: u64,
}

impl EmptySink for GroupedAccumulator {
    fn empty(_builder: &DesignBuilder) -> Self {
        GroupedAccumulator::default()
    }
}

impl ChunkSink for GroupedAccumulator {
    fn add_chunk(
        &mut self,
        builder: &DesignBuilder,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<(), DesignError> {
        let by = builder.group_by.as_deref().expect("a grouped pass has a grouping column");
        let n = builder.spec.factors.len();
        let groups = &mut self.groups;
        let codes = split_by_level(chunk, by, |level, sub, rows| {
            // A group's rows as a chunk of their own: read in place where
            // the model allows, their sums joining the group's pending run.
            let acc = groups.entry(level.clone()).or_insert_with(|| FitAccumulator::new(n));
            acc.add_chunk(builder, sub, &|r| at(rows[r]))
        })?;
        self.rows_read += chunk.num_rows() as u64;
        self.rows_without_group += codes.iter().filter(|&&c| c == u32::MAX).count() as u64;
        Ok(())
    }
    fn merge(&mut self, other: &Self) {
        for (level, acc) in &other.groups {
            // Merged into an empty accumulator when new here, so that a
            // unit's pending sums are folded into the statistics either way.
            let n = acc.levels.len();
            self.groups.entry(level.clone()).or_insert_with(|| FitAccumulator::new(n)).merge(acc);
        }
        self.rows_read += other.rows_read;
        self.rows_without_group += other.rows_without_group;
    }
    fn rows(&self) -> (u64, u64) {
        let dropped: u64 = self.groups.values().map(|g| g.rows_dropped).sum();
        (self.rows_read, dropped + self.rows_without_group)
    }
    fn rows_by_group(&self) -> Vec<(Level, u64, u64)> {
        self.groups.iter().map(|(l, g)| (l.clone(), g.rows_read, g.rows_dropped)).collect()
    }
}
