//! One writer at a time per state file.
//!
//! Every command that writes a state takes an exclusive lock on a lock file
//! beside it (`rent.gramfit.lock`) for its whole read–fold–write cycle, so
//! that concurrent `update`s serialize instead of renaming their results
//! over one another. The lock is the operating system's (`flock`, through
//! `File::try_lock`): it dies with its process, so a holder killed by
//! SIGKILL never leaves a lock that blocks forever. The file records who
//! holds it (host, pid, command, start time) for the messages of those who
//! wait, and is removed on release.
//!
//! Protocol (no lost lock, no two holders): open or create the file, take
//! the lock, then check that the path still names the file locked (a
//! releasing holder unlinks it while still holding it, so a waiter that
//! then gets the lock on the unlinked file starts again). A file found
//! with a holder's record while the lock was free was left by a process
//! that died holding it: taken over, with a note. Readers (`summary`)
//! take no lock: states are replaced by atomic renames, so a reader sees
//! the old or the new file, whole.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for a lock held by another writer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Wait {
    /// Until it is free (the default), saying who holds it.
    Forever,
    /// At most this long; `Duration::ZERO` fails at once.
    AtMost(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{state}: locked by {holder}; {waited}")]
    Held { state: String, holder: String, waited: String },
    #[error("{path}: cannot take the lock: {message}")]
    Io { path: String, message: String },
}

/// Who holds a lock, as its file records it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    pub command: String,
    /// Unix seconds.
    pub started: u64,
}

impl Holder {
    fn me(command: &str) -> Holder {
        Holder { host: hostname(), pid: std::process::id(), command: command.to_string(), started: now() }
    }

    fn describe(&self) -> String {
        let here = if self.host == hostname() { String::new() } else { " (another host)".to_string() };
        format!("'{}' (pid {} on {}{here}, since {})", self.command, self.pid, self.host, clock(self.started))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// UTC `HH:MM:SS` of a Unix time (enough to tell waits apart).
fn clock(t: u64) -> String {
    format!("{:02}:{:02}:{:02} UTC", t / 3600 % 24, t / 60 % 60, t % 60)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The lock file of a state: `STATE.lock` beside it.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "state".into());
    name.push(".lock");
    state.with_file_name(name)
}

/// A held lock; released (file removed, lock dropped) when dropped.
#[derive(Debug)]
pub struct StateLock {
    file: Option<File>,
    path: PathBuf,
}

impl Drop for StateLock {
    fn drop(&mut self) {
        if let Some(f) = self.file.take() {
            // Unlink while holding: a waiter on this file sees it gone.
            let _ = std::fs::remove_file(&self.path);
            let _ = f.unlock();
        }
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> LockError {
    LockError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// Whether `f` is still the file at `path` (same device and inode).
#[cfg(unix)]
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_f: &File, path: &Path) -> bool {
    path.exists()
}

fn read_holder(f: &mut File) -> Option<Holder> {
    let mut s = String::new();
    f.seek(SeekFrom::Start(0)).ok()?;
    f.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

/// Take the lock of `state` for `command` (as the user typed it), waiting
/// as `wait` says. `notice` receives what the user should read: who holds
/// the lock while waiting, a lock taken over from a dead holder.
pub fn lock(state: &Path, command: &str, wait: Wait, notice: &mut dyn FnMut(String)) -> Result<StateLock, LockError> {
    let path = lock_path(state);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let start = Instant::now();
    let mut told: Option<Holder> = None;
    let mut last_told = Instant::now();
    loop {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        match f.try_lock() {
            Ok(()) => {
                if !same_file(&f, &path) {
                    // Released and unlinked by its holder meanwhile.
                    continue;
                }
                if let Some(dead) = read_holder(&mut f) {
                    notice(format!(
                        "{}: took over the lock left by {}, which ended without releasing it",
                        state.display(),
                        dead.describe()
                    ));
                }
                let me = serde_json::to_string(&Holder::me(command)).expect("a holder serializes");
                f.set_len(0).map_err(|e| io(&path, e))?;
                f.seek(SeekFrom::Start(0)).map_err(|e| io(&path, e))?;
                f.write_all(me.as_bytes()).and_then(|()| f.sync_data()).map_err(|e| io(&path, e))?;
                return Ok(StateLock { file: Some(f), path });
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = read_holder(&mut f);
                let who = holder.as_ref().map_or_else(|| "another gramfit".to_string(), Holder::describe);
                let waited = start.elapsed();
                match wait {
                    Wait::AtMost(limit) if waited >= limit => {
                        let waited = if limit.is_zero() {
                            "not waiting (--wait 0)".to_string()
                        } else {
                            format!("gave up after waiting {:.1} s (--wait)", waited.as_secs_f64())
                        };
                        return Err(LockError::Held { state: state.display().to_string(), holder: who, waited });
                    }
                    _ => {}
                }
                if told.as_ref() != holder.as_ref() || last_told.elapsed() >= Duration::from_secs(60) {
                    notice(format!("{}: waiting for the lock held by {who}", state.display()));
                    told = holder;
                    last_told = Instant::now();
                }
                drop(f);
                let pause = Duration::from_millis(50);
                let pause = match wait {
                    Wait::AtMost(limit) => pause.min(limit.saturating_sub(waited)).max(Duration::from_millis(1)),
                    Wait::Forever => pause,
                };
                std::thread::sleep(pause);
                if crate::engine::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(LockError::Held {
                        state: state.display().to_string(),
                        holder: who,
                        waited: "interrupted while waiting".into(),
                    });
                }
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_waits_or_fails_at_once_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.gramfit");
        let mut notes = Vec::new();
        let held = lock(&state, "gramfit update s.gramfit a.csv", Wait::Forever, &mut |n| notes.push(n)).unwrap();
        assert!(lock_path(&state).exists());
        let e = lock(&state, "other", Wait::AtMost(Duration::ZERO), &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("locked by 'gramfit update s.gramfit a.csv' (pid"), "{e}");
        assert!(e.contains("not waiting (--wait 0)"), "{e}");
        let t = Instant::now();
        let e = lock(&state, "other", Wait::AtMost(Duration::from_millis(200)), &mut |_| {}).unwrap_err().to_string();
        assert!(t.elapsed() >= Duration::from_millis(200) && e.contains("gave up after waiting"), "{e}");
        // Released from another thread while a writer waits: it gets it.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        let mut waiting = Vec::new();
        let again = lock(&state, "third", Wait::Forever, &mut |n| waiting.push(n)).unwrap();
        releaser.join().unwrap();
        assert!(waiting.iter().any(|n| n.contains("waiting for the lock held by")), "{waiting:?}");
        drop(again);
        assert!(!lock_path(&state).exists(), "released: the lock file is removed");
        assert!(notes.is_empty());
    }

    #[test]
    fn a_lock_left_by_a_dead_holder_is_taken_over_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.gramfit");
        let dead = Holder { host: hostname(), pid: 999_999, command: "gramfit update".into(), started: 1 };
        std::fs::write(lock_path(&state), serde_json::to_string(&dead).unwrap()).unwrap();
        let mut notes = Vec::new();
        let l = lock(&state, "me", Wait::AtMost(Duration::ZERO), &mut |n| notes.push(n)).unwrap();
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("took over the lock left by 'gramfit update' (pid 999999"), "{notes:?}");
        drop(l);
    }
}
