//! The first pass of an absorbed fit: the design's statistics as for any
//! fit, plus each absorbed factor's per-level sums and, for two factors,
//! their cross-tabulation.

use super::level_sums::{CrossTab, LevelSums};
use crate::accumulator::{ChunkSink, FitAccumulator};
use crate::design::{categorical_column, DesignBuilder, DesignError};
use crate::level::Level;
use arrow::array::{BooleanArray, RecordBatch};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Everything an absorbed fit accumulates. Same laws as
/// [`FitAccumulator`]: `merge` adds, the empty value is the identity.
#[derive(Clone, Debug)]
pub struct AbsorbAccumulator {
    /// The absorbed columns, in the order written.
    pub columns: Arc<Vec<String>>,
    /// The design's statistics over the rows kept (every absorbed column
    /// present).
    pub dense: FitAccumulator,
    /// Per absorbed column, its levels' sums.
    pub sums: Vec<LevelSums>,
    /// The two absorbed columns' cross-tabulation (two columns only).
    pub cross: Option<CrossTab>,
    /// Rows read, and rows dropped for a missing absorbed level (the
    /// design's own missing values are counted in `dense`).
    pub rows_read: u64,
    pub rows_missing_level: u64,
    /// A plain model's factor estimated by blocks: its term (see
    /// [`AbsorbedPart::estimated_term`]); kept through merges and
    /// retractions, which only add statistics.
    pub estimated_term: Option<usize>,
}

impl AbsorbAccumulator {
    pub fn new(columns: Arc<Vec<String>>, n_factors: usize) -> Self {
        let k = columns.len();
        AbsorbAccumulator {
            columns,
            dense: FitAccumulator::new(n_factors).binary_only(),
            sums: vec![LevelSums::default(); k],
            cross: (k == 2).then(CrossTab::default),
            rows_read: 0,
            rows_missing_level: 0,
            estimated_term: None,
        }
    }
}

/// What a state keeps of an absorbed fit besides the design's statistics
/// (`State::accumulator`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AbsorbedPart {
    pub columns: Vec<String>,
    pub sums: Vec<LevelSums>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross: Option<CrossTab>,
    pub rows_read: u64,
    pub rows_missing_level: u64,
    /// A plain model's factor estimated by blocks
    /// ([`super::estimated`]): its term in the state's formula, which
    /// has no `|` (the sums are of the rest of the model). `None`: an
    /// absorbed fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_term: Option<usize>,
}

impl AbsorbAccumulator {
    /// The design's statistics and the rest, as a state keeps them.
    pub fn into_parts(self) -> (FitAccumulator, AbsorbedPart) {
        let part = AbsorbedPart {
            columns: self.columns.to_vec(),
            sums: self.sums,
            cross: self.cross,
            rows_read: self.rows_read,
            rows_missing_level: self.rows_missing_level,
            estimated_term: self.estimated_term,
        };
        (self.dense, part)
    }

    pub fn from_parts(dense: FitAccumulator, part: AbsorbedPart) -> Self {
        AbsorbAccumulator {
            columns: Arc::new(part.columns),
            dense: dense.binary_only(),
            sums: part.sums,
            cross: part.cross,
            rows_read: part.rows_read,
            rows_missing_level: part.rows_missing_level,
            estimated_term: part.estimated_term,
        }
    }

    /// Take out data merged in before (see [`FitAccumulator::retract`]);
    /// on failure nothing is changed.
    pub fn retract(&mut self, other: &AbsorbAccumulator) -> Result<(), String> {
        let mut next = self.clone();
        next.dense.retract(&other.dense).map_err(|e| e.to_string())?;
        for (a, b) in next.sums.iter_mut().zip(&other.sums) {
            a.retract(b)?;
        }
        if let (Some(a), Some(b)) = (&mut next.cross, &other.cross) {
            a.retract(b)?;
        }
        next.rows_read = next.rows_read.checked_sub(other.rows_read).ok_or("more rows retracted than read")?;
        next.rows_missing_level -= other.rows_missing_level.min(next.rows_missing_level);
        *self = next;
        Ok(())
    }

    /// Rows dropped: a missing level, or a missing value in the design.
    pub fn rows_dropped(&self) -> u64 {
        self.dense.rows_dropped + self.rows_missing_level
    }
}

/// The rows of `chunk` whose absorbed columns all have a level: the
/// sub-batch (`None`: all rows), and each column's codes and levels on it.
pub(super) type Coded = (Option<(RecordBatch, Vec<usize>)>, Vec<(Vec<u32>, Vec<Level>)>);

/// Level codes of `columns` on `chunk`, and the rows where all have one.
pub(super) fn code_rows(chunk: &RecordBatch, columns: &[String]) -> Result<Coded, DesignError> {
    let mut coded: Vec<(Vec<u32>, Vec<Level>)> =
        columns.iter().map(|c| categorical_column(chunk, c)).collect::<Result<_, _>>()?;
    let n = chunk.num_rows();
    let keep: Vec<bool> = (0..n).map(|r| coded.iter().all(|(codes, _)| codes[r] != u32::MAX)).collect();
    if keep.iter().all(|&k| k) {
        return Ok((None, coded));
    }
    let rows: Vec<usize> = (0..n).filter(|&r| keep[r]).collect();
    let sub = arrow::compute::filter_record_batch(chunk, &BooleanArray::from(keep))
        .map_err(|e| DesignError::arrow("dropping rows with a missing level", &columns.join(", "), e))?;
    for (codes, _) in coded.iter_mut() {
        *codes = rows.iter().map(|&r| codes[r]).collect();
    }
    Ok((Some((sub, rows)), coded))
}

/// Codes of the block's rows (the batch rows it kept).
pub(super) fn block_codes(codes: &[u32], kept: Option<&[usize]>) -> Vec<u32> {
    match kept {
        Some(k) => k.iter().map(|&r| codes[r]).collect(),
        None => codes.to_vec(),
    }
}

impl ChunkSink for AbsorbAccumulator {
    fn add_chunk(
        &mut self,
        builder: &DesignBuilder,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<(), DesignError> {
        let (sub, coded) = code_rows(chunk, &self.columns)?;
        if let (Some((_, rows)), crate::design::MissingPolicy::Error) = (&sub, builder.missing) {
            // The first row without a level, and the column it lacks.
            // `rows` is sorted: the first index it skips.
            let r = rows.iter().enumerate().find(|&(i, &r)| i != r).map_or(rows.len(), |(i, _)| i);
            let column = self
                .columns
                .iter()
                .find(|c| categorical_column(chunk, c).is_ok_and(|(codes, _)| codes[r] == u32::MAX))
                .cloned()
                .unwrap_or_default();
            return Err(DesignError::Missing { column, row: r, at: at(r) });
        }
        self.rows_read += chunk.num_rows() as u64;
        let block = match &sub {
            Some((batch, rows)) => {
                self.rows_missing_level += (chunk.num_rows() - rows.len()) as u64;
                builder.block(batch, &|r| at(rows[r]))?
            }
            None => builder.block(chunk, at)?,
        };
        self.dense.update(&block);
        let codes: Vec<Vec<u32>> = coded.iter().map(|(c, _)| block_codes(c, block.kept.as_deref())).collect();
        for ((sums, (_, table)), codes) in self.sums.iter_mut().zip(&coded).zip(&codes) {
            sums.add_block(&block, codes, table);
        }
        if let Some(cross) = &mut self.cross {
            cross.add_rows((&codes[0], &coded[0].1), (&codes[1], &coded[1].1), block.weights.as_deref());
        }
        Ok(())
    }

    fn merge(&mut self, other: &Self) {
        self.dense.merge(&other.dense);
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            a.merge(b);
        }
        if let (Some(a), Some(b)) = (&mut self.cross, &other.cross) {
            a.merge(b);
        }
        self.rows_read += other.rows_read;
        self.rows_missing_level += other.rows_missing_level;
    }

    fn rows(&self) -> (u64, u64) {
        (self.rows_read, self.dense.rows_dropped + self.rows_missing_level)
    }
}
