#!/usr/bin/env bash
# The test suite: unit, property and integration tests in release mode (the
# data-heavy tests decode Parquet, which is ~20x slower in debug builds),
# then the numeric tests again on every instruction-set path this CPU can
# run, each forced with GRAMFIT_ISA (see src/isa.rs): a path no test runs
# here would be untested code.
set -euo pipefail
cd "$(dirname "$0")/.."
# The differential tests run statsmodels, patsy, pandas; the corpus test
# writes files with pyarrow, DuckDB and polars: install the pinned peers.
python3 -m pip install --quiet --disable-pip-version-check -r tests/peers/requirements.txt
cargo test --release --locked "$@"
# The Python package: its wheel built by maturin, installed, and tested
# against statsmodels and the command line (python/tests).
echo "== the Python package"
rm -rf target/wheels
maturin build --release --locked --quiet -m python/Cargo.toml -o target/wheels
python3 -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels/gramfit-*.whl
python3 -m pytest -q -p no:warnings python/tests
native=$(./target/release/gramfit --version | sed -n 's/^kernels: \([a-z0-9]*\).*/\1/p')
echo "== the CPU's kernels: $native; the numeric tests on each path below it"
for level in portable avx2 avx512 avx512vbmi; do
    if [ "$level" = "$native" ]; then
        break
    fi
    echo "== GRAMFIT_ISA=$level"
    GRAMFIT_ISA=$level GRAMFIT_EXPECT_ISA=$level cargo test --release --locked --test it -- \
        nist statsmodels second_pass laws slices elementary engine formula isa corpus csv_dialects parquet bounds estimated "$@"
done
