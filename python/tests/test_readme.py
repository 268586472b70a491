"""The README's Python examples run as written (from the repository's
root, on datasets/listings.csv)."""
import re

import pyarrow.csv
import pyarrow.parquet

from conftest import GENERATED, ROOT


def test_the_readmes_python_examples_run(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    # The examples' own files: the generated listings, and a Parquet copy.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "listings.csv").write_bytes(GENERATED.read_bytes())
    pyarrow.parquet.write_table(pyarrow.csv.read_csv(GENERATED), tmp_path / "listings.parquet")
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["acc"].nobs == namespace["listings"].shape[0]
    namespace["spark"].stop()
