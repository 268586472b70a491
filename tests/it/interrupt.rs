//! Ctrl-C and SIGTERM during a long solve: the process stops within a
//! second with exit code 130, and writes no state.

use crate::common::{bin, tempdir};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_during_a_large_solve_exits_130_within_a_second_and_saves_nothing() {
    let dir = tempdir();
    let csv = dir.path().join("levels.csv");
    // 2,000 levels: the first pass takes well under a second, the dense
    // solve several seconds (~8 s on 2 cores).
    let mut w = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    writeln!(w, "y,x,g").unwrap();
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..45_000u64 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let g = (i * 7919 + s % 13) % 2000;
        let x = (s >> 11) as f64 / (1u64 << 53) as f64;
        writeln!(w, "{:.6},{x:.6},L{g}", 1.0 + 2.0 * x + g as f64 * 0.01 + (s % 1000) as f64 / 1000.0).unwrap();
    }
    drop(w);
    let state = dir.path().join("fit.gramfit");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child = Command::new(bin())
        .args(["fit", csv.to_str().unwrap(), "-f", "y ~ x + C(g)", "--save", state.to_str().unwrap(), "-q"])
        .env("TMPDIR", &tmp)
        // The dense solve (2,000 levels would go by blocks, in well under
        // a second).
        .env("GRAMFIT_DENSE_LEVELS", "100000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(child.try_wait().unwrap().is_none(), "the fit ended before the signal: make the solve larger");
    let sent = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(sent.elapsed() < Duration::from_secs(5), "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = sent.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(took < Duration::from_secs(1), "took {took:?} to stop");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!state.exists(), "a state was written");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    let litter: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n != "levels.csv" && n != "tmp")
        .collect();
    assert!(litter.is_empty(), "files left beside the state: {litter:?}");
}

/// A phase that cannot poll (faer's eigenvalues, rendering a large
/// report) is ended by the watchdog: exit 130 within a second of SIGTERM,
/// the registered temporary directory removed. The phase runs in a child
/// process: this test binary again, running the ignored test below.
#[test]
fn a_phase_that_cannot_poll_is_ended_by_the_watchdog() {
    use std::io::BufRead;
    let dir = tempdir();
    let kept = dir.path().join("gramfit-spill-x");
    std::fs::create_dir(&kept).unwrap();
    std::fs::write(kept.join("0.arrows"), b"columns").unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["interrupt::exit_safe_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("GRAMFIT_CHILD_DIR", &kept)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("in the phase") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child ended before its phase");
    }
    let sent = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if sent.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("still running 5 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(130));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(!kept.exists(), "the registered directory was left");
}

#[test]
#[ignore = "run in a child process by a_phase_that_cannot_poll_is_ended_by_the_watchdog"]
fn exit_safe_child() {
    let dir = std::env::var_os("GRAMFIT_CHILD_DIR").expect("run by a_phase_that_cannot_poll_is_ended_by_the_watchdog");
    gramfit::interrupt::install();
    let _registered = gramfit::interrupt::TempDirGuard::new(std::path::Path::new(&dir));
    let _phase = gramfit::interrupt::ExitSafe::enter();
    println!("in the phase");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(1));
    }
}
