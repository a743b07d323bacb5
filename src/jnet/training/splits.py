"""The data of a run and its patient split: loaded from the config, split by patient, never by slice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jnet.data.cache import cached_load
from jnet.data.prepare import SliceData, kfold_split, patient_split
from jnet.data.sources import load_data
from jnet.io import read_json
from jnet.training.config import TrainConfig


def load_training_data(config: TrainConfig) -> SliceData:
    """The slices ``config.data`` points at, at ``output_size`` (prepared once if ``cache_dir``)."""

    options = {"size": config.output_size, **config.data_options}
    if config.cache_dir:
        if Path(config.cache_dir).exists() and not Path(config.cache_dir).is_dir():
            raise ValueError(f"{config.cache_dir}: is a file; cache_dir names a folder for the prepared data")
        return cached_load(config.data, config.cache_dir, **options)
    return load_data(config.data, **options)


def make_split(config: TrainConfig, patient_id: np.ndarray) -> dict[str, Any]:
    """The patient split: a saved ``split_file``, a k-fold fold, or a seeded fraction."""
    if config.split_file:
        path = Path(config.split_file)
        split = read_json(path, "split file")
        if not isinstance(split, dict) or not all(isinstance(split.get(k), list) for k in ("train", "val")):
            raise ValueError(f"{path}: a split file needs 'train' and 'val' lists of patient ids")
        if not all(isinstance(p, str) for p in split["train"] + split["val"]):
            raise ValueError(f"{path}: patient ids must be strings (as in the data and in jnet's split.json)")
        known = set(np.unique(patient_id).astype(str))
        missing = sorted((set(split["train"]) | set(split["val"])) - known)
        if missing:
            raise ValueError(f"{path}: patients not in the data: {', '.join(missing[:5])}")
        if set(split["train"]) & set(split["val"]):
            raise ValueError(f"{path}: train and val share patients")
        return split
    if config.folds:
        return kfold_split(patient_id, config.folds, config.fold, config.seed)
    return patient_split(patient_id, config.val_fraction, config.seed)
