//! Tables lent by a program that embeds gramfit (the Python package: a
//! DataFrame, an Arrow table or stream) for the length of one call.
//!
//! The lender imports its record batches (zero-copy, through the Arrow C
//! stream interface), [`lend`]s them and passes the name it gets back
//! (`memory:N`) as an input, where a path would go: every command-line
//! option then means what it means for files. A lent table is read like an
//! Arrow IPC stream (one reader hands batches to the workers) and, unlike a
//! stream on stdin, can be read again: the second pass reads the same
//! batches. The table is withdrawn when the [`Lent`] guard drops.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The prefix of a lent table's name.
pub const PREFIX: &str = "memory:";

/// Record batches held in memory, with what messages call them.
#[derive(Debug)]
pub struct MemoryTable {
    /// What messages call the table, e.g. `<pandas DataFrame>`.
    pub label: String,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl MemoryTable {
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }
}

static TABLES: Mutex<BTreeMap<u64, Arc<MemoryTable>>> = Mutex::new(BTreeMap::new());
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A lent table's registration: the table is withdrawn when this drops.
#[derive(Debug)]
pub struct Lent {
    id: u64,
    name: String,
}

impl Lent {
    /// The name to pass as an input (`memory:N`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Ok(mut t) = TABLES.lock() {
            t.remove(&self.id);
        }
    }
}

/// Lend `table` until the returned guard drops.
pub fn lend(table: MemoryTable) -> Lent {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    TABLES.lock().unwrap_or_else(|e| e.into_inner()).insert(id, Arc::new(table));
    Lent { id, name: format!("{PREFIX}{id}") }
}

/// The table lent under `name`, if `name` is a lent table's name.
pub fn lent(name: &str) -> Option<Arc<MemoryTable>> {
    let id: u64 = name.strip_prefix(PREFIX)?.parse().ok()?;
    TABLES.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
}

/// Whether `name` has the form of a lent table's name (lent or not).
pub fn is_memory_name(name: &str) -> bool {
    name.strip_prefix(PREFIX).is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}
