"""The README's Python API example runs as written (the public names of ``jnet`` keep working)."""

from __future__ import annotations

import re
from pathlib import Path


def test_readme_python_api_example_runs() -> None:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(r"## Python API\n\n```python\n(.*?)```", text, re.S)
    assert match is not None, "README.md has no Python API block"
    scope: dict = {}
    exec(compile(match.group(1), "README.md", "exec"), scope)
    assert tuple(scope["mask"].shape) == (8, 1, 256, 256) and len(scope["outs"]) == 5
    assert 0.0 <= scope["metrics"].compute()["mean_jaccard"] <= 1.0
