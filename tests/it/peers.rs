//! Running the Python peers (statsmodels, patsy) for differential tests.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Run `tests/peers/statsmodels_fit.py` on a list of jobs; panics loudly
/// when Python or the packages are missing (`.ci/run` installs them).
pub fn run(jobs: &Value) -> Value {
    let tmp = crate::common::tempdir();
    let spec = tmp.path().join("spec.json");
    let out = tmp.path().join("out.json");
    std::fs::write(&spec, serde_json::to_vec(jobs).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/statsmodels_fit.py");
    let python = std::env::var("GRAMFIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let res = Command::new(&python).arg(&script).arg(&spec).arg(&out).output();
    let res = match res {
        Ok(r) => r,
        Err(e) => panic!("\n\n*** PEER MISSING *** cannot run {python}: {e}\nInstall Python 3 with statsmodels, patsy and pandas (`.ci/run` does).\n"),
    };
    assert!(
        res.status.success(),
        "\n\n*** PEER FAILED *** {python} {}: {}\nInstall statsmodels, patsy and pandas (`pip install statsmodels patsy pandas`; `.ci/run` does).\n",
        script.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
}
