//! A progress line on stderr while a pass runs (only when stderr is a
//! terminal and `--quiet` is not given): the pass (`pass 1/2`), a bar and
//! percent of its input, rows read, rows per second, elapsed time and the
//! time left — the size of a pass is known before its first row (Parquet
//! footers hold every row group's rows; other files have a byte size).

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

/// `h:mm:ss`, or `m:ss` under an hour.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A count with thousands separators.
fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with three significant digits and a unit (`1.24M rows/s`).
fn rate(per_sec: f64) -> String {
    let (v, unit) = match per_sec {
        r if r >= 1e9 => (r / 1e9, "G"),
        r if r >= 1e6 => (r / 1e6, "M"),
        r if r >= 1e3 => (r / 1e3, "k"),
        r => (r, ""),
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{unit} rows/s")
}

/// The progress line: `label`, the share done (when known), rows read and
/// the elapsed time.
pub fn line(label: &str, fraction: Option<f64>, rows: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let speed = if secs > 0.0 { rate(rows as f64 / secs) } else { String::new() };
    let head = if label.is_empty() { String::new() } else { format!("{label} ") };
    match fraction {
        Some(f) => {
            let width = 24;
            let filled = ((f * width as f64).round() as usize).min(width);
            let bar: String = "=".repeat(filled) + &" ".repeat(width - filled);
            let left = if f > 0.0 && f < 1.0 {
                format!(", {} left", clock(Duration::from_secs_f64(secs * (1.0 - f) / f)))
            } else {
                String::new()
            };
            format!(
                "{head}[{bar}] {:>3.0}%  {} rows  {speed}  {} elapsed{left}",
                f * 100.0,
                count(rows),
                clock(elapsed)
            )
        }
        None => format!("{head}{} rows  {speed}  {} elapsed", count(rows), clock(elapsed)),
    }
}

/// The progress line of a solve: its size, the share done, elapsed and
/// time left.
pub fn solve_line(columns: u64, f: f64, elapsed: Duration) -> String {
    let width = 24;
    let filled = ((f * width as f64).round() as usize).min(width);
    let bar: String = "=".repeat(filled) + &" ".repeat(width - filled);
    let secs = elapsed.as_secs_f64();
    let left = if f > 0.0 && f < 1.0 {
        format!(", {} left", clock(Duration::from_secs_f64(secs * (1.0 - f) / f)))
    } else {
        String::new()
    };
    format!("solving {} columns [{bar}] {:>3.0}%  {} elapsed{left}", count(columns), f * 100.0, clock(elapsed))
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
                indicatif::ProgressStyle::with_template("{wide_msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            // Only draw for passes that take a while.
            std::thread::sleep(Duration::from_millis(300));
            while !d.load(Ordering::Relaxed) {
                if let Some((columns, f, elapsed)) = crate::solve::SOLVE_PROGRESS.snapshot() {
                    bar.set_message(solve_line(columns, f, elapsed));
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                let plan = progress.plan();
                let (label, elapsed) = plan.map_or((String::new(), Duration::ZERO), |p| (p.label, p.started.elapsed()));
                bar.set_message(line(&label, progress.fraction(), progress.rows.load(Ordering::Relaxed), elapsed));
                bar.tick();
                std::thread::sleep(Duration::from_millis(200));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_pass_share_rows_rate_and_time_left() {
        let l = line("pass 1/2", Some(0.25), 1_235_724, Duration::from_secs(10));
        assert_eq!(l, "pass 1/2 [======                  ]  25%  1,235,724 rows  124k rows/s  0:10 elapsed, 0:30 left");
        let l = line("", None, 999, Duration::from_millis(500));
        assert_eq!(l, "999 rows  2.00k rows/s  0:00 elapsed");
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
        assert_eq!(rate(12_345.0), "12.3k rows/s");
        assert_eq!(rate(5_000_000.0), "5.00M rows/s");
        let l = solve_line(4_046, 0.5, Duration::from_secs(30));
        assert_eq!(l, "solving 4,046 columns [============            ]  50%  0:30 elapsed, 0:30 left");
    }
}
