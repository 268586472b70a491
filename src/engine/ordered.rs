//! Work units merged in order, whatever the thread count: the reorder
//! buffer, and the parallel run over a list of units (Parquet row groups).

use super::{EngineError, Progress};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// Results of numbered work units, merged in unit order as they come (a
/// reorder buffer), and the first real error.
struct OrderedMerge<A> {
    next: usize,
    pending: BTreeMap<usize, A>,
    failure: Option<EngineError>,
}

impl<A> Default for OrderedMerge<A> {
    fn default() -> Self {
        OrderedMerge { next: 0, pending: BTreeMap::new(), failure: None }
    }
}

impl<A> OrderedMerge<A> {
    /// Take unit `seq`'s result and `merge` every unit that is now next in
    /// order; after an error (which stops the pass) nothing more is merged.
    /// Returns the units done with: merged, failed or dropped.
    fn accept(
        &mut self,
        seq: usize,
        r: Result<A, EngineError>,
        progress: &Progress,
        mut merge: impl FnMut(usize, A),
    ) -> usize {
        match r {
            Err(e) => {
                // The first real error wins over the interruptions it causes.
                if self.failure.is_none() || matches!(self.failure, Some(EngineError::Interrupted)) {
                    self.failure = Some(e);
                }
                progress.stop.store(true, Ordering::Relaxed);
                1
            }
            Ok(_) if self.failure.is_some() => 1,
            Ok(a) => {
                self.pending.insert(seq, a);
                let mut done = 0;
                while let Some(a) = self.pending.remove(&self.next) {
                    merge(self.next, a);
                    self.next += 1;
                    done += 1;
                }
                done
            }
        }
    }

    fn finish(self) -> Result<(), EngineError> {
        self.failure.map_or(Ok(()), Err)
    }
}

/// Run `run` over `units` on `threads` threads and hand each result to
/// `merge` in unit order (the order the results are merged in is part of
/// the arithmetic: any thread count gives the same bits).
///
/// Memory: at most `2 × threads` units are started and not yet merged, so
/// the results waiting in the reorder buffer stay bounded whatever the
/// number of units (a factor with a hundred levels makes each result a few
/// hundred KiB; collecting every row group's first would grow with the
/// file).
pub(super) fn ordered_units<A: Send>(
    units: &[(usize, usize)],
    threads: usize,
    progress: &Progress,
    run: impl Fn(usize, usize) -> Result<A, EngineError> + Sync,
    mut merge: impl FnMut(usize, A),
) -> Result<(), EngineError> {
    let window = 2 * threads;
    let (work_tx, work_rx) = crossbeam_channel::bounded::<usize>(window);
    let (res_tx, res_rx) = crossbeam_channel::unbounded::<(usize, Result<A, EngineError>)>();
    // A token per unit that may be in flight: taken to start one, returned
    // when it is merged.
    let (token_tx, token_rx) = crossbeam_channel::bounded::<()>(window);
    for _ in 0..window {
        token_tx.send(()).expect("room for every token");
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            for u in 0..units.len() {
                if token_rx.recv().is_err() || progress.stopped() || work_tx.send(u).is_err() {
                    return;
                }
            }
        });
        for _ in 0..threads {
            let (rx, tx, run) = (work_rx.clone(), res_tx.clone(), &run);
            s.spawn(move || {
                for u in rx.iter() {
                    let (i, rg) = units[u];
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(i, rg)))
                        .unwrap_or_else(|_| Err(EngineError::Internal(format!("input {i}, row group {rg}"))));
                    if tx.send((u, r)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((res_tx, work_rx));
        let mut ordered = OrderedMerge::default();
        for (u, r) in res_rx.iter() {
            // Every unit done with returns its token (after a failure too,
            // so that the feeder is never left waiting: it then stops).
            for _ in 0..ordered.accept(u, r, progress, &mut merge) {
                let _ = token_tx.try_send(());
            }
        }
        // No result will come: a feeder waiting for a token stops.
        drop(token_tx);
        ordered.finish()
    })
}

/// Start `threads` workers in `scope` that run `run` on each numbered item
/// from `work` and send `(number, result)` to `results`, until `work` is
/// closed or `results` is. A run that panics (a bug) sends
/// [`EngineError::Internal`] naming its item by `what` (taken before the
/// run), so that the pass ends with an error, not a panic.
pub(super) fn spawn_workers<'scope, T: Send + 'scope, R: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    threads: usize,
    work: &crossbeam_channel::Receiver<(usize, T)>,
    results: &crossbeam_channel::Sender<(usize, Result<R, EngineError>)>,
    run: &'scope (dyn Fn(T) -> Result<R, EngineError> + Sync),
    what: &'scope (dyn Fn(&T) -> String + Sync),
) {
    for _ in 0..threads {
        let (rx, tx) = (work.clone(), results.clone());
        scope.spawn(move || {
            for (seq, item) in rx.iter() {
                let place = what(&item);
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(item)))
                    .unwrap_or_else(|_| Err(EngineError::Internal(place)));
                if tx.send((seq, r)).is_err() {
                    return;
                }
            }
        });
    }
}

/// Merge numbered results in order as they come (see [`OrderedMerge`])
/// until every sender is gone; the first real error.
pub(super) fn merge_in_order<A>(
    results: crossbeam_channel::Receiver<(usize, Result<A, EngineError>)>,
    progress: &Progress,
    mut merge: impl FnMut(A),
) -> Result<(), EngineError> {
    let mut ordered = OrderedMerge::default();
    for (seq, r) in results.iter() {
        ordered.accept(seq, r, progress, |_, a| merge(a));
    }
    ordered.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit whose work panics (a bug) ends the pass with an error naming
    /// it, on one thread as on several, instead of a hang or a panic.
    #[test]
    fn a_panicking_unit_is_an_error_not_a_hang() {
        for threads in [1, 2] {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let units: Vec<(usize, usize)> = (0..20).map(|rg| (0, rg)).collect();
                let progress = Progress::default();
                let mut merged = Vec::new();
                let r = ordered_units(
                    &units,
                    threads,
                    &progress,
                    |_, rg| if rg == 3 { panic!("a bug") } else { Ok(rg) },
                    |_, rg| merged.push(rg),
                );
                let _ = done_tx.send((r.map_err(|e| e.to_string()), merged));
            });
            let (r, merged) = done_rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the pass ends");
            assert_eq!(
                r,
                Err("internal error while reading input 0, row group 3 (a bug in gramfit; please report it)".into())
            );
            assert_eq!(merged, [0, 1, 2], "units after the failure are not merged ({threads} threads)");
        }
    }

    /// The same of the streamed inputs' workers (CSV blocks, batches):
    /// the panic is the pass's error, naming the item, on one thread as on
    /// several.
    #[test]
    fn a_panicking_worker_is_an_error_naming_its_item() {
        for threads in [1, 2] {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let progress = Progress::default();
                let mut merged = Vec::new();
                let (work_tx, work_rx) = crossbeam_channel::bounded::<(usize, u64)>(1);
                let (res_tx, res_rx) = crossbeam_channel::unbounded();
                let run = |first: u64| if first == 300 { panic!("a bug") } else { Ok(first) };
                let what = |first: &u64| format!("input a.csv, the block from line {first}");
                let r = std::thread::scope(|s| {
                    let progress = &progress;
                    s.spawn(move || {
                        for seq in 0..20 {
                            if progress.stopped() || work_tx.send((seq, 100 * seq as u64)).is_err() {
                                return;
                            }
                        }
                    });
                    spawn_workers(s, threads, &work_rx, &res_tx, &run, &what);
                    drop((res_tx, work_rx));
                    merge_in_order(res_rx, progress, |first| merged.push(first))
                });
                let _ = done_tx.send((r.map_err(|e| e.to_string()), merged));
            });
            let (r, merged) = done_rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the pass ends");
            assert_eq!(
                r,
                Err("internal error while reading input a.csv, the block from line 300 (a bug in gramfit; please report it)"
                    .into())
            );
            assert_eq!(merged, [0, 100, 200], "items after the failure are not merged ({threads} threads)");
        }
    }
}
