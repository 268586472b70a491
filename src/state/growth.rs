//! What a file given to `update` is, against the inputs a state recorded:
//! new, already in, grown since it was folded in (read on from where the
//! last read stopped), or changed in a way that cannot be folded.
//!
//! A recorded input keeps its path, the size and SHA-256 of the bytes
//! folded in, and for CSV where the read stopped (the text offset after
//! the last complete record; an unterminated last line read as a row, or
//! left pending). A file whose first `size` bytes still hash to the
//! recorded SHA-256 has grown by appending: CSV is read on from the
//! offset, an Arrow IPC stream past the rows already read. Parquet and
//! Arrow IPC files are rewritten rather than appended (their footer moves),
//! so any change to them is refused, as is any other change to a file.

use super::{fingerprint_prefix, Provenance, StateError};
use crate::source::csv::{compression_of, Compression, ReadFrom};
use crate::source::{Input, SourceKind};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

/// A file given to `update`, against a state's recorded inputs.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// Not folded in before.
    New,
    /// This content is already in, recorded as `recorded`.
    AlreadyIn { recorded: String },
    /// Recorded as input `index` and grown since: read from `from`.
    Grown { index: usize, from: ReadFrom },
    /// Recorded and changed otherwise; `why` says how and what to do.
    Changed { why: String },
}

/// Classify `input` (whose whole-file fingerprint is `size`, `sha`)
/// against `recorded`. `hold_tail`: an unterminated last CSV line stays
/// pending (follow mode: the line may still be being written).
pub fn classify(
    recorded: &[Provenance],
    input: &Input,
    size: u64,
    sha: &str,
    hold_tail: bool,
) -> Result<Seen, StateError> {
    if let Some(p) = recorded.iter().find(|p| p.sha256 == sha && p.size == size) {
        return Ok(Seen::AlreadyIn { recorded: p.path.clone() });
    }
    let display = input.display();
    let Some(index) = recorded.iter().position(|p| p.path == display) else {
        return Ok(Seen::New);
    };
    let p = &recorded[index];
    let changed = |how: &str, todo: &str| Seen::Changed {
        why: format!("{display} has changed since it was folded in ({how}); {todo}"),
    };
    let refit =
        "to use the new content, fit the files again (or --force to fold it in as a new file, on top of the old rows)";
    if matches!(input.kind, SourceKind::Parquet | SourceKind::IpcFile) {
        return Ok(changed(
            "a Parquet or Arrow IPC file is rewritten, not appended, so its new content cannot be told from its old",
            "retract needs the old content; fit the files again, or --force to fold it in whole as a new file",
        ));
    }
    if size < p.size {
        return Ok(changed(&format!("it has {size} bytes where {} were folded in", p.size), refit));
    }
    let (_, prefix) = fingerprint_prefix(&input.path, p.size)?;
    if prefix != p.sha256 {
        return Ok(changed(&format!("its first {} bytes are not those folded in", p.size), refit));
    }
    if size == p.size {
        // The same bytes as folded in, under another SHA-256 of the whole:
        // only a pending (unread) tail can differ — and there is none.
        return Ok(Seen::AlreadyIn { recorded: p.path.clone() });
    }
    match input.kind {
        // (Parquet and IPC files were refused above.)
        SourceKind::Parquet | SourceKind::IpcFile | SourceKind::IpcStream | SourceKind::Memory => Ok(Seen::Grown {
            index,
            from: ReadFrom { offset: 0, records_before: p.file_rows.max(p.rows_read), hold_tail, limit: None },
        }),
        SourceKind::Csv => {
            let Some(end) = p.csv_end else {
                // Recorded by a version that kept no offsets.
                return Ok(changed("it grew, and the state records no offset to read on from", refit));
            };
            let plain = compression_of(&input.path)
                .map_err(|message| StateError::Io { path: display.clone(), message })?
                == Compression::None;
            let offset = if end.tail_pending || !end.unterminated_tail {
                end.complete_offset
            } else if plain && starts_with_line_end(input, p.size)? {
                // The last line, read as a row, was complete: new records
                // start after its terminator.
                p.size
            } else {
                return Ok(changed(
                    "its last line had no line end and was folded in as a row, and the new bytes continue it",
                    refit,
                ));
            };
            Ok(Seen::Grown { index, from: ReadFrom { offset, records_before: end.records, hold_tail, limit: None } })
        }
    }
}

/// Whether the byte at `at` of a file is a line end.
fn starts_with_line_end(input: &Input, at: u64) -> Result<bool, StateError> {
    let io = |e: std::io::Error| StateError::Io { path: input.display(), message: e.to_string() };
    let mut f = std::fs::File::open(&input.path).map_err(io)?;
    f.seek(SeekFrom::Start(at)).map_err(io)?;
    let mut b = [0u8; 1];
    Ok(f.read(&mut b).map_err(io)? == 1 && matches!(b[0], b'\n' | b'\r'))
}

/// The record of a file just read: the bytes folded in (for a plain CSV
/// file, up to where its read stopped; otherwise the whole file) and where
/// a CSV read ended.
pub fn record(input: &Input, info: &crate::report::InputInfo) -> Result<Provenance, StateError> {
    record_with(input, info, &mut Fingerprints::default())
}

/// Fingerprints taken in this run, by file, bytes hashed and the file's
/// size and modification time when asked: the states of a grouped fit, and
/// of a batch job's models, record the same inputs, each hashed once
/// (SHA-256 of a 400 MB file is ~1 s); a file rewritten in between is
/// hashed again.
#[derive(Default)]
pub struct Fingerprints(HashMap<FingerprintKey, (u64, String)>);

/// A file, the bytes hashed of it, and its size and modification time.
type FingerprintKey = (std::path::PathBuf, u64, u64, Option<std::time::SystemTime>);

impl Fingerprints {
    fn of(&mut self, path: &std::path::Path, limit: u64) -> Result<(u64, String), StateError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| StateError::Io { path: path.display().to_string(), message: e.to_string() })?;
        let key = (path.to_path_buf(), limit, meta.len(), meta.modified().ok());
        if let Some(p) = self.0.get(&key) {
            return Ok(p.clone());
        }
        let p = fingerprint_prefix(path, limit)?;
        self.0.insert(key, p.clone());
        Ok(p)
    }
}

/// [`record`], fingerprints taken from (or added to) `prints`.
pub fn record_with(
    input: &Input,
    info: &crate::report::InputInfo,
    prints: &mut Fingerprints,
) -> Result<Provenance, StateError> {
    let display = input.display();
    let (rows_read, rows_dropped, end) = (info.rows_read, info.rows_dropped, info.end);
    let file_rows = info.file_rows;
    // A stream or a lent table has no bytes to fingerprint; some row
    // groups of a file (a part of a distributed fit) are not its bytes.
    if input.is_stdin() || input.kind == SourceKind::Memory || input.row_groups.is_some() {
        let path = match &input.row_groups {
            Some(g) => format!("{display} (row groups {}..{})", g.start, g.end),
            None => display,
        };
        let sha256 = String::new();
        return Ok(Provenance { path, size: 0, sha256, rows_read, rows_dropped, file_rows, csv_end: None });
    }
    let csv_end = end.map(|e| super::CsvEnd {
        complete_offset: e.complete_offset,
        records: e.records,
        unterminated_tail: e.unterminated_tail,
        tail_pending: e.tail_pending,
    });
    let plain_csv = input.kind == SourceKind::Csv
        && compression_of(&input.path).map_err(|message| StateError::Io { path: display.clone(), message })?
            == Compression::None;
    let (size, sha256) = match end {
        // Only what was read: the file may have grown since.
        Some(e) if plain_csv => prints.of(&input.path, e.end_offset)?,
        _ => prints.of(&input.path, u64::MAX)?,
    };
    Ok(Provenance { path: display, size, sha256, rows_read, rows_dropped, file_rows, csv_end })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file is hashed once per run, and again once it was rewritten in
    /// between (same size, a later modification time): a later model of a
    /// job never records the hash of what it did not read.
    #[test]
    fn fingerprints_are_taken_again_of_a_rewritten_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("a.csv");
        std::fs::write(&path, b"y,x\n1,2\n").expect("written");
        let mut prints = Fingerprints::default();
        let first = prints.of(&path, u64::MAX).expect("hashed");
        assert_eq!(first, fingerprint_prefix(&path, u64::MAX).expect("hashed"));
        assert_eq!(prints.of(&path, u64::MAX).expect("cached"), first);
        std::fs::write(&path, b"y,x\n3,4\n").expect("rewritten");
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
        std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(later)).expect("touched");
        let second = prints.of(&path, u64::MAX).expect("hashed again");
        assert_eq!(second.0, first.0, "the same size");
        assert_ne!(second.1, first.1, "the new content's hash");
        assert_eq!(second, fingerprint_prefix(&path, u64::MAX).expect("hashed"));
    }
}
