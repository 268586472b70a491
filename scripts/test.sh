#!/usr/bin/env bash
# The test suite: unit, property and integration tests in release mode (the
# data-heavy tests decode Parquet, which is ~20x slower in debug builds).
set -euo pipefail
cd "$(dirname "$0")/.."
# The differential tests run statsmodels and patsy: install the pinned peers.
python3 -m pip install --quiet --disable-pip-version-check -r tests/peers/requirements.txt
cargo test --release --locked "$@"
