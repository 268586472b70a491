//! Grouped fits: one model per level of a column, all from one pass over
//! the data — `gramfit fit … --by COL` and a batch job's `by`. Each
//! group's state records its group, so that later updates fold only its
//! rows (see `state::growth`).

use crate::accumulator::{ChunkSink, FitAccumulator};
use crate::design::{split_by_level, DesignBuilder, DesignError};
use crate::engine::{self, EngineOptions, Progress};
use crate::level::Level;
use crate::model::{self, FitError, Group, OpenedInputs, Resolved};
use crate::report::InputInfo;
use crate::residuals::ResidualStats;
use crate::source::Input;
use crate::state::{self, growth, State, StateError};
use arrow::array::RecordBatch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One group's fit.
pub struct GroupFit {
    pub level: Level,
    /// The model with its group set (a pass with it reads only the
    /// group's rows).
    pub resolved: Resolved,
    pub acc: FitAccumulator,
    /// Per input: the group's rows read and dropped, and where the read
    /// ended.
    pub inputs: Vec<InputInfo>,
}

/// The groups of a fit by `by`, in level order.
pub struct Grouped {
    pub by: String,
    pub groups: Vec<GroupFit>,
    /// Rows with no value in `by` (in no group).
    pub rows_without_group: u64,
    pub elapsed_s: f64,
}

/// Fit `resolved` per level of `by`, in one pass over `opened`.
pub fn fit(
    resolved: &Resolved,
    by: &str,
    opened: OpenedInputs,
    engine_opts: &EngineOptions,
    progress: &Progress,
) -> Result<Grouped, FitError> {
    let (grouped, infos, elapsed_s) = model::accumulate_grouped(resolved, by, opened, engine_opts, progress)?;
    let groups = grouped
        .groups
        .into_iter()
        .map(|(level, acc)| {
            let mut options = resolved.options.clone();
            options.group = Some(Group { column: by.to_string(), level: level.clone() });
            let resolved = Resolved { options, ..resolved.clone() };
            let inputs = infos
                .iter()
                .map(|info| {
                    let (rows_read, rows_dropped) =
                        info.groups.iter().find(|(l, _, _)| *l == level).map_or((0, 0), |(_, r, d)| (*r, *d));
                    InputInfo { rows_read, rows_dropped, groups: Vec::new(), ..info.clone() }
                })
                .collect();
            GroupFit { level, resolved, acc, inputs }
        })
        .collect();
    Ok(Grouped { by: by.to_string(), groups, rows_without_group: grouped.rows_without_group, elapsed_s })
}

/// Where a group's file goes: `{group}` in `pattern` replaced by the level,
/// a directory (existing, or written with a trailing `/`) gets
/// `LEVEL.gramfit` (or `LEVEL.EXT` after `ext`), any other path the level
/// before its extension (`out/rent.txt` → `out/rent-Queens.txt`). Levels
/// are made file-name safe.
pub fn group_path(pattern: &Path, level: &str, ext: &str) -> PathBuf {
    let safe: String =
        level.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
    let s = pattern.to_string_lossy();
    if s.contains("{group}") {
        return PathBuf::from(s.replace("{group}", &safe));
    }
    if pattern.is_dir() || s.ends_with('/') {
        return pattern.join(format!("{safe}.{ext}"));
    }
    let stem = pattern.file_stem().map(|x| x.to_string_lossy().to_string()).unwrap_or_default();
    let name = match pattern.extension() {
        Some(e) => format!("{stem}-{safe}.{}", e.to_string_lossy()),
        None => format!("{stem}-{safe}"),
    };
    pattern.with_file_name(name)
}

/// The state of one group: its model (group recorded), statistics and
/// inputs (`read`, the inputs as they were read; their fingerprints
/// from `prints`, shared by the groups of one fit).
pub fn state_of(
    g: &GroupFit,
    read: &[Input],
    prints: &mut growth::Fingerprints,
    fitted_at: u64,
    elapsed_s: f64,
) -> Result<State, StateError> {
    let mut inputs = Vec::new();
    for (input, info) in read.iter().zip(&g.inputs) {
        inputs.push(growth::record_with(input, info, prints)?);
    }
    Ok(State::new(
        g.resolved.options.clone(),
        g.resolved.column_types.clone(),
        g.acc.clone(),
        None,
        inputs,
        fitted_at,
        elapsed_s,
    ))
}

/// Save `st` to `path` (its directory made) — for callers holding its lock.
pub fn save(st: &State, path: &Path) -> Result<(), StateError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StateError::Io { path: dir.display().to_string(), message: e.to_string() })?;
    }
    state::save(st, path)
}

/// The second pass of every group in one read of the inputs: each
/// chunk's rows of a group go to that group's residual sums, through the
/// group's own builder (its β, `(XᵀX)⁻¹` and design), as a pass of the
/// group alone would add them. Groups not in `builders` are passed over.
pub struct GroupedResiduals {
    by: String,
    builders: Arc<BTreeMap<Level, DesignBuilder>>,
    groups: BTreeMap<Level, ResidualStats>,
    rows_read: u64,
}

impl GroupedResiduals {
    pub fn new(by: &str, builders: Arc<BTreeMap<Level, DesignBuilder>>) -> Self {
        GroupedResiduals { by: by.to_string(), builders, groups: BTreeMap::new(), rows_read: 0 }
    }

    /// The residual sums of group `level` (empty when it had no rows).
    pub fn take(&mut self, level: &Level) -> ResidualStats {
        self.groups.remove(level).unwrap_or_default()
    }
}

impl ChunkSink for GroupedResiduals {
    fn add_chunk(
        &mut self,
        _builder: &DesignBuilder,
        chunk: &RecordBatch,
        at: &dyn Fn(usize) -> String,
    ) -> Result<(), DesignError> {
        let (builders, groups) = (&self.builders, &mut self.groups);
        split_by_level(chunk, &self.by, |level, sub, rows| match builders.get(level) {
            Some(builder) => groups.entry(level.clone()).or_default().add_chunk(builder, sub, &|r| at(rows[r])),
            None => Ok(()),
        })?;
        self.rows_read += chunk.num_rows() as u64;
        Ok(())
    }

    fn merge(&mut self, other: &Self) {
        for (level, st) in &other.groups {
            self.groups.entry(level.clone()).or_default().merge(st);
        }
        self.rows_read += other.rows_read;
    }

    fn finish(&mut self) {
        for st in self.groups.values_mut() {
            st.finish();
        }
    }

    fn rows(&self) -> (u64, u64) {
        (self.rows_read, 0)
    }
}

/// The second passes of `passes` (per group: its model and pass set-up)
/// in one read of `opened`; the residual sums in the order of `passes`.
pub fn second_passes(
    by: &str,
    passes: &[(&GroupFit, &model::SecondPass)],
    opened: OpenedInputs,
    engine_opts: &EngineOptions,
    progress: &Progress,
) -> Result<Vec<ResidualStats>, FitError> {
    let Some((first, _)) = passes.first() else { return Ok(Vec::new()) };
    let builders: BTreeMap<Level, DesignBuilder> = passes
        .iter()
        .map(|(g, pass)| {
            let mut b = g.resolved.builder();
            b.second_pass = Some(Arc::new(pass.spec.clone()));
            (g.level.clone(), b)
        })
        .collect();
    // The read's builder: every group's columns (the same model), no
    // group selected, the grouping column read.
    let mut reader = builders[&first.level].clone();
    reader.only = None;
    reader.group_by = Some(by.to_string());
    let builders = Arc::new(builders);
    let empty = || GroupedResiduals::new(by, builders.clone());
    let (mut all, _) = engine::accumulate_with(opened, &reader, &empty, engine_opts, progress)?;
    Ok(passes.iter().map(|(g, _)| all.take(&g.level)).collect())
}
