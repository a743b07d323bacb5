"""jnet.io (atomic writes, YAML reading) and jnet.registry: the helpers every module shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from jnet.io import atomic_write, read_yaml, write_text
from jnet.registry import Registry
from jnet.training import TrainConfig


def test_atomic_write_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # the temporary file is gone
    with atomic_write(target, suffix=".nii.gz") as tmp:
        assert tmp.name.endswith(".tmp.nii.gz") and tmp.parent == tmp_path
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_read_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("epochs: [1,\n")
    with pytest.raises(ValueError, match=r"run\.yaml: not valid YAML \(.*\)$"):
        read_yaml(path)
    with pytest.raises(ValueError, match=r"run\.yaml: not valid YAML"):
        TrainConfig.from_yaml(path)
    with pytest.raises(FileNotFoundError, match=r"nothing\.yaml: no such config file"):
        TrainConfig.from_yaml(tmp_path / "nothing.yaml")
    path.write_text("epochs: 3\nhead: interp\n")
    assert read_yaml(path) == {"epochs": 3, "head": "interp"}
    assert (TrainConfig.from_yaml(path).epochs, TrainConfig.from_yaml(path).head) == (3, "interp")


def test_registry_one_name_each_and_errors_that_list_the_choices() -> None:
    heads: Registry[int] = Registry("head")
    heads.add("jnet", 1)

    @heads.register("interp")
    def interp() -> int:
        return 2

    assert heads.names() == ["jnet", "interp"] and list(heads) == ["jnet", "interp"] and len(heads) == 2
    assert "jnet" in heads and "none" not in heads and heads.get("interp")() == 2
    with pytest.raises(ValueError, match="head 'jnet' is already registered"):
        heads.add("jnet", 3)
    with pytest.raises(ValueError, match="unknown head 'none'; valid choices: 'jnet', 'interp'"):
        heads.get("none")
