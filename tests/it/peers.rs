//! Running the Python peers (statsmodels, patsy) for differential tests.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Run `tests/peers/statsmodels_fit.py` on a list of jobs; panics loudly
/// when Python or the packages are missing (`.ci/run` installs them).
pub fn run(jobs: &Value) -> Value {
    let tmp = crate::common::tempdir();
    let spec = tmp.path().join("spec.json");
    std::fs::write(&spec, serde_json::to_vec(jobs).unwrap()).unwrap();
    run_script("statsmodels_fit.py", &[&spec], "statsmodels, patsy and pandas")
}

/// Run the peer script `tests/peers/NAME` with `args` and a last argument,
/// the JSON file it writes, and read that; `packages` for the message when
/// Python or they are missing.
pub fn run_script(name: &str, args: &[&Path], packages: &str) -> Value {
    let tmp = crate::common::tempdir();
    let out = tmp.path().join("out.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers").join(name);
    let python = std::env::var("GRAMFIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let res = Command::new(&python).arg(&script).args(args).arg(&out).output();
    let res = match res {
        Ok(r) => r,
        Err(e) => panic!(
            "\n\n*** PEER MISSING *** cannot run {python}: {e}\nInstall Python 3 with {packages} (`.ci/run` does).\n"
        ),
    };
    assert!(
        res.status.success(),
        "\n\n*** PEER FAILED *** {python} {}: {}\nInstall {packages} (`pip install -r tests/peers/requirements.txt`; `.ci/run` does).\n",
        script.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}
