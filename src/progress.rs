//! A progress line on stderr while a pass runs (only when stderr is a
//! terminal and `--quiet` is not given): rows read, rows per second and
//! elapsed time, from the engine's shared counters.

use crate::engine::Progress;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Shows progress until dropped.
pub struct ProgressDisplay {
    done: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl ProgressDisplay {
    pub fn start(progress: Arc<Progress>, quiet: bool) -> ProgressDisplay {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if quiet || !std::io::stderr().is_terminal() {
            return ProgressDisplay { done, handle: None };
        }
        let d = done.clone();
        let handle = std::thread::spawn(move || {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {human_pos} rows ({per_sec})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            // Only draw for passes that take a while.
            std::thread::sleep(Duration::from_millis(300));
            while !d.load(Ordering::Relaxed) {
                bar.set_position(progress.rows.load(Ordering::Relaxed));
                bar.tick();
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        ProgressDisplay { done, handle: Some(handle) }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
