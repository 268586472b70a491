//! Ctrl-C and SIGTERM.
//!
//! Passes and solves poll [`INTERRUPTED`] (at every chunk, at every column
//! of a solve) and stop cleanly: nothing is saved, the exit code is 130.
//! A computation that cannot poll — faer's eigenvalues and singular values
//! of a design with thousands of columns — runs inside [`ExitSafe`]: if it
//! is still running a second after the signal, the process exits with 130
//! at once, after removing the temporary directories registered with
//! [`TempDirGuard`]. Such a phase writes nothing, so nothing is left
//! half-written (state files are replaced by rename in any case).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Set by the Ctrl-C (SIGINT/SIGTERM) handler.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Computations running that write nothing and do not poll.
static EXIT_SAFE: AtomicUsize = AtomicUsize::new(0);

/// Temporary directories to remove before a forced exit.
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// How long a phase that cannot poll gets to end after a signal.
const GRACE: Duration = Duration::from_millis(500);

/// Install the handler (once, in `main`).
pub fn install() {
    let started = AtomicBool::new(false);
    let _ = ctrlc::set_handler(move || {
        INTERRUPTED.store(true, Ordering::Relaxed);
        if !started.swap(true, Ordering::Relaxed) {
            std::thread::spawn(watchdog);
        }
    });
}

/// After a signal: once a phase that cannot poll has run on for [`GRACE`]
/// (the others end by themselves), remove the temporary directories and
/// exit with 130. A clean stop that clears the flag (follow mode) ends
/// the watch.
fn watchdog() {
    let since = Instant::now();
    while INTERRUPTED.load(Ordering::Relaxed) {
        if EXIT_SAFE.load(Ordering::Relaxed) > 0 && since.elapsed() >= GRACE {
            if let Ok(dirs) = TEMP_DIRS.lock() {
                for d in dirs.iter() {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
            eprintln!("gramfit: error: interrupted");
            std::process::exit(130);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Marks a computation that writes nothing and cannot poll the flag, while
/// it lives.
pub struct ExitSafe(());

impl ExitSafe {
    pub fn enter() -> ExitSafe {
        EXIT_SAFE.fetch_add(1, Ordering::SeqCst);
        ExitSafe(())
    }
}

impl Drop for ExitSafe {
    fn drop(&mut self) {
        EXIT_SAFE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Registers a temporary directory for removal on a forced exit, while it
/// lives (its owner removes it otherwise).
#[derive(Debug)]
pub struct TempDirGuard(PathBuf);

impl TempDirGuard {
    pub fn new(dir: &Path) -> TempDirGuard {
        if let Ok(mut d) = TEMP_DIRS.lock() {
            d.push(dir.to_path_buf());
        }
        TempDirGuard(dir.to_path_buf())
    }
}

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        if let Ok(mut d) = TEMP_DIRS.lock() {
            d.retain(|p| *p != self.0);
        }
    }
}
