"""Prepare a data source once: :func:`cached_load` keeps the prepared slices in an ``.npz``.

The cache key is a SHA-256 of:

* the source's kind and resolved path (``"synthetic"`` has none),
* the size and modification time (ns) of the source file, or of every file inside a source
  folder (recursively; the cache folder itself is skipped when it lies inside),
* :data:`DATA_FORMAT_VERSION` (bumped whenever a loader's output changes),
* the options, completed with the loader's defaults (so ``seed=0`` and no ``seed`` agree).

Touching or rewriting a source file, or changing an option, gives a new key and a new cache
file; old ones are left in place (delete the folder to clear it). The cache file holds
``images`` as float16 (float32 when a value is beyond float16's range), ``masks`` uint8,
``patient_id``, ``slice_index``, ``class_names`` and ``meta`` (the key, spec and options as
JSON); it is written under a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from jnet.data import sources
from jnet.data.prepare import SliceData
from jnet.io import atomic_write

__all__ = ["DATA_FORMAT_VERSION", "cache_key", "cache_path", "cached_load"]

log = logging.getLogger(__name__)

DATA_FORMAT_VERSION = 2  # 2: .npz and image-folder class names inferred from the labels present
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _files(path: Path, skip: Path | None) -> list[list[Any]]:
    """``[relative path, size, mtime_ns]`` of ``path`` (a file) or of every file under it."""
    if path.is_file():
        st = path.stat()
        return [[path.name, st.st_size, st.st_mtime_ns]]
    out = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):  # as the loaders do
        here = Path(dirpath)
        if skip is not None:
            dirnames[:] = [d for d in dirnames if (here / d).resolve() != skip]
        dirnames.sort()
        for name in sorted(filenames):
            st = (here / name).stat()
            out.append([(here / name).relative_to(path).as_posix(), st.st_size, st.st_mtime_ns])
    return out


def cache_key(spec: str | os.PathLike, cache_dir: str | os.PathLike | None = None, **options: Any) -> str:
    """The cache key of ``spec`` with ``options`` (hex SHA-256); see the module docstring."""
    source = sources.resolve_source(spec)
    full = sources.check_options(source.kind, options)
    skip = Path(cache_dir).resolve() if cache_dir is not None else None
    payload = {
        "format": DATA_FORMAT_VERSION,
        "kind": source.kind,
        "path": None if source.path is None else str(source.path),
        "files": [] if source.path is None else _files(source.path, skip),
        "options": full,
    }
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(spec: str | os.PathLike, cache_dir: str | os.PathLike, **options: Any) -> Path:
    """Where :func:`cached_load` keeps ``spec`` with ``options``."""
    return _path(sources.resolve_source(spec), cache_dir, cache_key(spec, cache_dir, **options))


def _path(source: sources.Source, cache_dir: str | os.PathLike, key: str) -> Path:
    name = "synthetic" if source.path is None else source.path.name.removesuffix(".npz")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "data"
    return Path(cache_dir) / f"{source.kind}-{name}-{key[:20]}.npz"


def _storage(images: np.ndarray) -> np.ndarray:
    """float16 when every value fits, else float32."""
    top = float(np.abs(images).max()) if images.size else 0.0
    return images.astype(np.float16) if top <= _FLOAT16_MAX else images.astype(np.float32)


def _write(data: SliceData, stored: np.ndarray, path: Path, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            images=stored,
            masks=data.masks.astype(np.uint8),
            patient_id=np.asarray(data.patient_id).astype(str),
            slice_index=np.asarray(data.slice_index).astype(np.int64),
            class_names=np.asarray(list(data.class_names), dtype=str),
            meta=np.array(json.dumps(meta, sort_keys=True, default=repr)),
        )


def _read(path: Path, key: str) -> SliceData | None:
    """The cached slices, or ``None`` when the file is unreadable or belongs to another key."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            if meta.get("key") != key:
                return None
            return SliceData(
                archive["images"].astype(np.float32),
                archive["masks"],
                archive["patient_id"],
                archive["slice_index"],
                [str(c) for c in archive["class_names"].tolist()],
            )
    except Exception as err:  # a damaged cache file is rebuilt, never fatal
        log.warning("ignoring unreadable cache file %s (%s)", path, err)
        return None


def cached_load(spec: str | os.PathLike, cache_dir: str | os.PathLike, **options: Any) -> SliceData:
    """:func:`jnet.data.sources.load_data` ``(spec, **options)``, prepared once and kept in ``cache_dir``.

    A later call with the same key reads the cache file without calling the loader. Images
    come back as float32 from float16 storage, within about 1e-3 relative of the loader's
    values (z-scored values are well inside float16's range); the first call returns the same
    rounded values, so a run does not depend on whether the cache already existed.
    """
    source = sources.resolve_source(spec)
    full = sources.check_options(source.kind, options)
    key = cache_key(spec, cache_dir, **options)
    path = _path(source, cache_dir, key)
    if path.is_file():
        data = _read(path, key)
        if data is not None:
            log.info("loaded %s from cache %s", spec, path)
            return data
    data = sources.load_data(spec, **options)
    meta = {
        "key": key,
        "format": DATA_FORMAT_VERSION,
        "spec": str(spec),
        "kind": source.kind,
        "path": None if source.path is None else str(source.path),
        "options": full,
    }
    stored = _storage(data.images)
    _write(data, stored, path, meta)
    log.info("prepared %s into cache %s", spec, path)
    # hand back what later calls will read, so results do not depend on whether the cache existed
    data.images = stored.astype(np.float32)
    return data
