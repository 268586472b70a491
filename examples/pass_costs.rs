//! The second pass's cost against the first, measured inside one process:
//! after a warm-up fit, each round runs the first pass and then the second
//! pass with each covariance type asked for (round robin, so that a noisy
//! moment on a shared machine falls on all of them alike). Reports, per
//! covariance type, the medians over the rounds of the wall and CPU times
//! (process CPU time: all threads) and of each round's second ÷ first,
//! and the time spent in the accumulators (summed over threads): the
//! pass's own arithmetic, the rest being reading and decoding.
//!
//! Unlike timing whole processes, start-up, schema resolution, solving and
//! output are in neither pass.
//!
//! cargo run --release --example pass_costs -- FILE FORMULA COV[,COV...] [THREADS] [ROUNDS] [CLUSTER]
//!
//! COV: nonrobust, HC0, HC1, HC2, HC3, cluster (with CLUSTER, the column).
//! With PASS_COSTS_BINARY_PAGES=0 arrow-rs decodes Parquet 0/1 columns too
//! (see `source::parquet_row_group`).

use clap::ValueEnum;
use gramfit::engine::{EngineOptions, Progress};
use gramfit::model::{self, ModelOptions, ReportOptions, RobustOptions};
use gramfit::second_pass::CovType;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Process CPU time (all threads), in seconds.
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// `f()`, its wall and CPU seconds.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (w0, c0) = (Instant::now(), cpu_seconds());
    let out = f();
    (out, w0.elapsed().as_secs_f64(), cpu_seconds() - c0)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    gramfit::engine::tune_allocator();
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: pass_costs FILE FORMULA COV[,COV...] [THREADS] [ROUNDS] [CLUSTER]".into());
    }
    let inputs = vec![args[1].clone()];
    let covs: Vec<CovType> =
        args[3].split(',').map(|c| CovType::from_str(c, true)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let threads: usize = args.get(4).map_or(Ok(2), |t| t.parse())?;
    let rounds: usize = args.get(5).map_or(Ok(7), |r| r.parse())?;
    let cluster = args.get(6).map(String::as_str);
    // PASS_COSTS_BINARY_PAGES=0: arrow-rs decodes the 0/1 columns too.
    let binary_pages = std::env::var("PASS_COSTS_BINARY_PAGES").map_or(true, |v| v != "0");
    // PASS_COSTS_FLOAT_PAGES=0: arrow-rs decodes the DOUBLE columns too.
    let float_pages = std::env::var("PASS_COSTS_FLOAT_PAGES").map_or(true, |v| v != "0");
    let eo = EngineOptions { threads, binary_pages, float_pages, ..EngineOptions::default() };
    let progress = Progress::default();
    let ro = ReportOptions::default();
    let options = ModelOptions::new(args[2].clone());
    let (resolved, pass) =
        model::resolve_and_accumulate(options, model::open_inputs(&inputs, &Default::default())?, &eo, &progress)?;
    let acc = pass.acc;
    let second = |cov: CovType| -> Result<(), Box<dyn std::error::Error>> {
        let robust = RobustOptions { cov, cluster };
        model::second_pass(
            &resolved,
            &acc,
            &ro,
            robust,
            model::open_inputs(&inputs, &Default::default())?,
            &eo,
            &progress,
        )?;
        Ok(())
    };
    for &cov in &covs {
        second(cov)?;
    }
    // Accumulator seconds since the last call.
    let sink = || progress.sink_nanos.swap(0, Ordering::Relaxed) as f64 * 1e-9;
    sink();
    let mut first = (Vec::new(), Vec::new(), Vec::new());
    let mut seconds: Vec<_> = covs.iter().map(|_| (Vec::new(), Vec::new(), Vec::new())).collect();
    for _ in 0..rounds {
        let (r, wall, cpu) = timed(|| -> Result<(), Box<dyn std::error::Error>> {
            model::accumulate(&resolved, model::open_inputs(&inputs, &Default::default())?, &eo, &progress)?;
            Ok(())
        });
        r?;
        first.0.push(wall);
        first.1.push(cpu);
        first.2.push(sink());
        for (i, &cov) in covs.iter().enumerate() {
            let (r, wall, cpu) = timed(|| second(cov));
            r?;
            seconds[i].0.push(wall);
            seconds[i].1.push(cpu);
            seconds[i].2.push(sink());
        }
    }
    println!("{}; {threads} thread(s); medians of {rounds} rounds", args[1]);
    println!();
    println!("| pass | wall (s) | second / first | CPU (s) | second / first, CPU | accumulators (s) |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!("| first | {:.3} | — | {:.3} | — | {:.3} |", median(&first.0), median(&first.1), median(&first.2));
    for (cov, (wall, cpu, acc)) in covs.iter().zip(&seconds) {
        let ratio = |s: &[f64], f: &[f64]| median(&s.iter().zip(f).map(|(s, f)| s / f).collect::<Vec<_>>());
        println!(
            "| second, {} | {:.3} | {:.2} | {:.3} | {:.2} | {:.3} |",
            cov.name(),
            median(wall),
            ratio(wall, &first.0),
            median(cpu),
            ratio(cpu, &first.1),
            median(acc)
        );
    }
    Ok(())
}
