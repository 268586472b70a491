//! Follow mode: watch a directory and fold in each file as it settles —
//! and again each time it changes: a CSV file that grows is read on from
//! where its last read stopped (like `tail -f`), and a file that could not
//! be read is tried again once it changes, each attempt reported.

use crate::engine::INTERRUPTED;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::AppError;

/// What folding files into a state did, and whether a file's last line
/// was left pending (no line end yet).
#[derive(Debug, PartialEq)]
pub(crate) enum Folded {
    /// Rows were folded in and the state saved.
    Saved { tail_pending: bool },
    /// Nothing new was complete (a file grew by an unfinished line only).
    Nothing { tail_pending: bool },
}

/// Is this a file a follower may read (a data file not being written)?
fn followable(p: &Path) -> bool {
    let name = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    !name.starts_with('.')
        && ![".tmp", ".part", ".partial"].iter().any(|s| name.ends_with(s))
        && crate::source::expand(&[p.to_string_lossy().to_string()]).is_ok()
        && [".parquet", ".pq", ".arrow", ".ipc", ".feather", ".arrows", ".csv", ".tsv"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Watch `dir` and call `fold` with each file that settled since it was
/// last folded (new, grown, or changed after a failure), in the order they
/// settle (a watcher thread sends them through a channel), until Ctrl-C. A
/// file that fails is reported and tried again when it changes; the state
/// is never half-written because every save is atomic.
pub(crate) fn follow(
    dir: &Path,
    f: &crate::cli::FollowArgs,
    fold: &mut dyn FnMut(&Path, bool) -> Result<Folded, AppError>,
) -> Result<(), AppError> {
    if !dir.is_dir() {
        return Err(AppError::Usage(format!("--follow {}: not a directory", dir.display())));
    }
    let (tx, rx) = crossbeam_channel::unbounded::<PathBuf>();
    let poll = std::time::Duration::from_millis(f.poll_ms.max(10));
    let settle = std::time::Duration::from_millis(f.settle_ms);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let dir = dir.to_path_buf();
        let done = done.clone();
        std::thread::spawn(move || {
            // path → (size, mtime, unchanged since); and the (size, mtime)
            // last sent.
            let mut seen: HashMap<PathBuf, (u64, SystemTime, Instant)> = HashMap::new();
            let mut sent: HashMap<PathBuf, (u64, SystemTime)> = HashMap::new();
            while !done.load(Ordering::Relaxed) && !INTERRUPTED.load(Ordering::Relaxed) {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                    .unwrap_or_default();
                entries.sort();
                let now = Instant::now();
                for p in entries {
                    if !p.is_file() || !followable(&p) {
                        continue;
                    }
                    let Ok(md) = std::fs::metadata(&p) else { continue };
                    let key = (md.len(), md.modified().unwrap_or(std::time::UNIX_EPOCH));
                    if sent.get(&p) == Some(&key) {
                        continue;
                    }
                    let entry = seen.entry(p.clone()).or_insert((key.0, key.1, now));
                    if (entry.0, entry.1) != key {
                        *entry = (key.0, key.1, now);
                    } else if now.duration_since(entry.2) >= settle && key.0 > 0 {
                        if tx.send(p.clone()).is_err() {
                            return;
                        }
                        sent.insert(p, key);
                    }
                }
                std::thread::sleep(poll);
            }
        })
    };
    eprintln!("gramfit: following {} (Ctrl-C to stop)", dir.display());
    // Files whose last line was left pending: when it was, and the file's
    // (size, mtime) then. Unchanged for --tail-ms, the line is read as the
    // file's last row (a file that ends without a line end).
    let tail_wait = std::time::Duration::from_millis(f.tail_ms);
    let mut pending: HashMap<PathBuf, (Instant, Option<(u64, SystemTime)>)> = HashMap::new();
    let stamp = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)));
    loop {
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        let next = match rx.recv_timeout(poll) {
            Ok(path) => Some((path, true)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let due = pending.iter().find(|(p, (at, st))| at.elapsed() >= tail_wait && stamp(p) == *st);
                due.map(|(p, _)| (p.clone(), false))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        let Some((path, hold_tail)) = next else { continue };
        pending.remove(&path);
        match fold(&path, hold_tail) {
            Ok(Folded::Saved { tail_pending }) => {
                eprintln!("gramfit: folded in {}", path.display());
                if tail_pending {
                    pending.insert(path.clone(), (Instant::now(), stamp(&path)));
                }
            }
            Ok(Folded::Nothing { tail_pending }) => {
                if tail_pending {
                    pending.insert(path.clone(), (Instant::now(), stamp(&path)));
                }
            }
            Err(e) if INTERRUPTED.load(Ordering::Relaxed) => {
                eprintln!("gramfit: interrupted while reading {}; it was not added ({e})", path.display());
                break;
            }
            Err(e) => eprintln!("gramfit: error: {e} (skipped; tried again when it changes; still following)"),
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    // A clean stop, not an error.
    INTERRUPTED.store(false, Ordering::Relaxed);
    eprintln!("gramfit: stopped following {}", dir.display());
    Ok(())
}
