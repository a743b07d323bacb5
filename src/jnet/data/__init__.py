"""Data: the built-in synthetic phantoms, slice archives, resizing to the network input, splits."""

from jnet.data.prepare import SliceData, downsample, load_npz, normalize_slices, patient_split

__all__ = ["SliceData", "downsample", "load_npz", "normalize_slices", "patient_split"]
