//! The state file: a fit's sufficient statistics, persisted.
//!
//! Layout (all integers little-endian, so files are portable):
//!
//! ```text
//! offset  size  field
//! 0       8     magic "GRAMFIT\0"
//! 8       4     format version (u32, see below)
//! 12      8     payload length in bytes (u64)
//! 20      n     payload: `State` in CBOR (RFC 8949; every f64 word
//!               exact) from version 5, UTF-8 JSON before
//! 20+n    4     CRC-32 (IEEE) of bytes 0 .. 20+n
//! ```
//!
//! The same bytes are a state file and a state on the wire (a shard's
//! statistics sent to be merged).
//!
//! The size is O(p²) in the number of accumulated columns and independent of
//! the rows. Writes go to a temporary file in the same directory, are
//! fsynced, renamed over the target and the directory is fsynced, so a crash
//! at any moment leaves either the old or the new file, complete. A damaged
//! or truncated file fails the length or checksum test and is refused; a
//! newer format version is refused with the version named.
//!
//! A state is an input like any file — from another machine, another
//! version, a merge of shards — so decoding checks every structural
//! invariant before any arithmetic ([`State::validate`]): a checksum that
//! matches contents that do not agree with themselves is refused as
//! "damaged or inconsistent", never a panic.
//!
//! Versions: 1 (the first release), 2 (grouped states record their group,
//! inputs record where a growing file was read up to, CSV reading
//! options), 3 (an absorbed fit's per-level sums, `absorbed`) and 4 (a
//! plain model's factor estimated by blocks: the same sums, marked with
//! the factor's term), all JSON; 5, the same fields in CBOR, every kind
//! of state (100,000 levels' sums: 16.5 MB of JSON, 7.5 MB of CBOR; as
//! fast to read). Versions 2 to 4 were written
//! as the oldest version that read the state right (plain 2, absorbed 3,
//! by blocks 4), so that older builds refused what they would misread;
//! every version-5 state is refused by them alike. Older files load,
//! upgraded in memory (new fields take their defaults), and are written
//! back as version 5. Writers take the state's lock ([`lock`]) for their
//! whole read–fold–write cycle.

pub mod growth;
pub mod lock;
mod validate;

use crate::accumulator::FitAccumulator;
use crate::formula::SourceType;
use crate::model::ModelOptions;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"GRAMFIT\0";

/// The version written: a CBOR payload.
pub const FORMAT_VERSION: u32 = 5;

/// The last version with a JSON payload.
pub const LAST_JSON_VERSION: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}: not a gramfit state file (bad magic bytes)")]
    NotState { path: String },
    #[error(
        "{path}: written by a newer gramfit (state format version {found}; this build reads up to {FORMAT_VERSION})"
    )]
    NewerVersion { path: String, found: u32 },
    #[error("{path}: the state file is damaged or truncated ({detail})")]
    Damaged { path: String, detail: String },
    #[error("{path}: the state file is damaged or inconsistent ({detail})")]
    Inconsistent { path: String, detail: String },
    #[error(transparent)]
    Lock(#[from] lock::LockError),
}

/// One input folded into a state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    pub path: String,
    /// Bytes of the file folded in (its first `size` bytes: all of it,
    /// unless an unterminated last CSV line was left pending).
    pub size: u64,
    /// SHA-256 of those bytes, hex.
    pub sha256: String,
    pub rows_read: u64,
    pub rows_dropped: u64,
    /// Rows of the file read so far (of which `rows_read` were the
    /// model's: a grouped state reads its group's); 0 in version-1 states,
    /// where the two are the same.
    #[serde(default)]
    pub file_rows: u64,
    /// For a CSV file: where its read ended (the text offset after its
    /// last complete record, the records read, an unterminated last line);
    /// a file that grows is read on from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_end: Option<CsvEnd>,
}

/// Where the read of a CSV file ended (see [`crate::source::csv::ReadEnd`]).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CsvEnd {
    /// Text offset after the last complete (terminated) record read.
    pub complete_offset: u64,
    /// Records read after the header.
    pub records: u64,
    /// The last line had no terminator and was read as a row (a file read
    /// whole), or was left pending (`tail_pending`: a file being written).
    pub unterminated_tail: bool,
    pub tail_pending: bool,
}

/// What a state file holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub gramfit_version: String,
    pub model: ModelOptions,
    /// Column types the formula was resolved against.
    pub column_types: Vec<(String, SourceType)>,
    pub accumulator: FitAccumulator,
    pub inputs: Vec<Provenance>,
    /// Unix seconds of the last change, and the wall time of the last pass.
    pub fitted_at: u64,
    pub elapsed_s: f64,
    /// The second pass over these statistics' inputs, if one ran since the
    /// last change (residual diagnostics and the robust covariance).
    #[serde(default)]
    pub residuals: Option<crate::second_pass::ResidualSnapshot>,
    /// The covariance type of a robust second pass that a later change
    /// (update, retract, merge) made stale: `predict` says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_second_pass: Option<crate::second_pass::CovType>,
    /// An absorbed fit's per-level sums (`y ~ x | fe`); `accumulator` then
    /// holds the design's statistics over the rows with every level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absorbed: Option<crate::factors::AbsorbedPart>,
}

impl State {
    /// A state just fitted by this build: no second pass yet.
    pub fn new(
        model: ModelOptions,
        column_types: Vec<(String, SourceType)>,
        accumulator: FitAccumulator,
        absorbed: Option<crate::factors::AbsorbedPart>,
        inputs: Vec<Provenance>,
        fitted_at: u64,
        elapsed_s: f64,
    ) -> State {
        State {
            gramfit_version: env!("CARGO_PKG_VERSION").into(),
            model,
            column_types,
            accumulator,
            inputs,
            fitted_at,
            elapsed_s,
            residuals: None,
            stale_second_pass: None,
            absorbed,
        }
    }

    /// Drop the second pass after a change to the statistics, remembering
    /// a robust covariance it held.
    pub fn drop_second_pass(&mut self) {
        if let Some(snap) = self.residuals.take() {
            if snap.robust_cov.is_some() {
                self.stale_second_pass = Some(snap.cov_type);
            }
        }
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> StateError {
    StateError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// SHA-256 and size of a file, streamed.
pub fn fingerprint(path: &Path) -> Result<(u64, String), StateError> {
    fingerprint_prefix(path, u64::MAX)
}

/// SHA-256 and size of a file's first `limit` bytes (fewer if it is
/// shorter), streamed.
pub fn fingerprint_prefix(path: &Path, limit: u64) -> Result<(u64, String), StateError> {
    let f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut f = f.take(limit);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((size, hex))
}

/// Serialize a state to bytes in the file layout.
pub fn encode(state: &State) -> Vec<u8> {
    let mut payload = Vec::new();
    ciborium::into_writer(state, &mut payload).expect("a state serializes to memory");
    let mut out = Vec::with_capacity(payload.len() + 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Parse bytes in the file layout; `path` is for messages.
pub fn decode(bytes: &[u8], path: &Path) -> Result<State, StateError> {
    let p = || path.display().to_string();
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(StateError::NotState { path: p() });
    }
    if bytes.len() < 24 {
        return Err(StateError::Damaged {
            path: p(),
            detail: format!("{} bytes, shorter than the header", bytes.len()),
        });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let expected = 20u64.checked_add(len).and_then(|x| x.checked_add(4));
    if expected != Some(bytes.len() as u64) {
        return Err(StateError::Damaged {
            path: p(),
            detail: format!(
                "the header announces {len} bytes of payload, the file has {}",
                bytes.len().saturating_sub(24)
            ),
        });
    }
    let body = &bytes[..bytes.len() - 4];
    let stored = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().expect("4 bytes"));
    let actual = crc32fast::hash(body);
    if stored != actual {
        return Err(StateError::Damaged {
            path: p(),
            detail: format!("checksum mismatch: stored {stored:08x}, computed {actual:08x}"),
        });
    }
    if version > FORMAT_VERSION {
        return Err(StateError::NewerVersion { path: p(), found: version });
    }
    if version == 0 {
        return Err(StateError::Inconsistent { path: p(), detail: "format version 0 does not exist".into() });
    }
    // Every version has the same fields (older ones lack some, which take
    // their defaults); the encoding changed at version 5.
    let payload = &body[20..];
    let state: State = if version <= LAST_JSON_VERSION {
        serde_json::from_slice(payload).map_err(|e| e.to_string())
    } else {
        ciborium::from_reader(payload).map_err(|e| e.to_string())
    }
    .map_err(|e| StateError::Inconsistent { path: p(), detail: format!("payload: {e}") })?;
    state.validate().map_err(|detail| StateError::Inconsistent { path: p(), detail })?;
    Ok(state)
}

pub fn load(path: &Path) -> Result<State, StateError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    decode(&bytes, path)
}

/// Write atomically: temp file in the same directory, fsync, rename, fsync
/// the directory.
pub fn save(state: &State, path: &Path) -> Result<(), StateError> {
    write_atomic(path, &encode(state))
}

/// Write any file atomically (reports use this too). A path that is not a
/// regular file — `/dev/null`, `/dev/stdout`, a named pipe — is written in
/// place (renaming over it would replace the device or pipe with a plain
/// file); a symbolic link is followed, so the link stays and its target is
/// replaced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            let written = std::fs::OpenOptions::new().write(true).open(path).and_then(|mut f| f.write_all(bytes));
            return written.map_err(|e| io(path, e));
        }
    }
    // Follow links (a dangling one too: its target is created), up to
    // the 40 levels the kernel allows.
    let mut resolved = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&resolved) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&resolved).map_err(|e| io(path, e))?;
                resolved = match resolved.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => break,
        }
    }
    let path = resolved.as_path();
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            gramfit_version: "test".into(),
            model: ModelOptions {
                formula: "y ~ x".into(),
                weights: None,
                missing: Default::default(),
                csv: Default::default(),
                group: None,
            },
            column_types: vec![("y".into(), SourceType::Numeric), ("x".into(), SourceType::Numeric)],
            accumulator: FitAccumulator::new(1),
            inputs: vec![],
            fitted_at: 1,
            elapsed_s: 0.5,
            residuals: None,
            stale_second_pass: None,
            absorbed: None,
        }
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let bytes = encode(&sample());
        let p = Path::new("s.gramfit");
        assert!(decode(&bytes, p).is_ok());
        for i in [0usize, 9, 15, 25, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode(&b, p).is_err(), "flip at {i} accepted");
        }
        for n in [0usize, 7, 20, bytes.len() - 1] {
            assert!(decode(&bytes[..n], p).is_err(), "truncation to {n} accepted");
        }
        let mut newer = bytes.clone();
        newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let crc = crc32fast::hash(&newer[..newer.len() - 4]);
        let l = newer.len();
        newer[l - 4..].copy_from_slice(&crc.to_le_bytes());
        let e = decode(&newer, p).unwrap_err().to_string();
        assert!(e.contains(&format!("version {}", FORMAT_VERSION + 1)), "{e}");
    }
}
