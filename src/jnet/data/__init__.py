"""Data: readers for the formats users hold, preparation into low-res input / full-res mask pairs.

``load_data(spec)`` resolves one ``--data`` argument ("synthetic", an ``.npz`` archive, an MSD
task folder, a BraTS folder, a folder of 2D images and masks); ``cached_load`` prepares it once.
"""

from jnet.data.augment import AugmentConfig, augment_batch
from jnet.data.cache import cached_load
from jnet.data.dataset import SliceBatches, SliceDataset, benchmark_loading
from jnet.data.prepare import (
    SliceData,
    downsample,
    kfold_split,
    load_npz,
    normalize_slices,
    patient_split,
    save_split,
)
from jnet.data.sources import load_data

__all__ = [
    "AugmentConfig",
    "SliceBatches",
    "SliceData",
    "SliceDataset",
    "augment_batch",
    "benchmark_loading",
    "cached_load",
    "downsample",
    "kfold_split",
    "load_data",
    "load_npz",
    "normalize_slices",
    "patient_split",
    "save_split",
]
