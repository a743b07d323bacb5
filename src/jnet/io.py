"""Writing files so that a crash, a kill or a full disk never leaves half a file.

Every file jnet writes (checkpoints, configs, result tables, ONNX models, figures) goes
through :func:`atomic_write`: the content is written to a temporary name beside the target,
flushed to disk, and renamed over the target in one step. A reader sees the old file or the
new one, never a mix, and a failed write leaves no temporary file behind (a full disk is not
kept full by it); an ``OSError`` of the write names the target, not the temporary file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    The temporary file is ``path`` with ``.PID.tmp`` and ``suffix`` appended, in the same folder
    (so the rename is atomic); ``suffix`` serves writers that tell the format from the name
    (nibabel: ``suffix=".nii.gz"``). It is fsynced before the rename.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_write(target) as tmp:
        ...     _ = tmp.write_text("hello")
        >>> target.read_text(), tmp.exists()
        ('hello', False)
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp{suffix}")  # one per process: concurrent writers
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno is None or (err.filename is not None and str(err.filename) != str(tmp)):
            raise
        raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from err  # name the target
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_yaml(path: str | os.PathLike, what: str = "file") -> Any:
    """The content of a YAML file; a missing file or bad YAML is an error that names the file.

    Args:
        path: the file.
        what: what the file is, for the missing-file message (``"study file"``).
    """
    text = _read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """The content of a JSON file; a missing file or bad JSON is an error that names the file.

    Args:
        path: the file.
        what: what the file is, for the missing-file message (``"split file"``).
    """
    text = _read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _read_text(path: str | os.PathLike, what: str) -> str:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file, so not a {what}") from None
