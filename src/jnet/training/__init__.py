"""Training: the config, the :class:`Trainer` loop, evaluation at full resolution, checkpoints, splits.

``config`` (:class:`TrainConfig`) -> ``splits`` (the data and its patient split) ->
``trainer`` (:class:`Trainer`, :func:`fit`, :func:`train`) -> ``checkpoint`` (:func:`save_checkpoint`,
:func:`load_checkpoint`); ``evaluate`` scores a model or a checkpoint, ``scores`` keeps each
validation image's scores (``val_scores.csv``).
"""

from jnet.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from jnet.training.config import TrainConfig
from jnet.training.evaluate import checkpoint_data, evaluate, evaluate_checkpoint
from jnet.training.scores import SCORES_FILE, ImageScores, image_scores, read_scores, write_scores
from jnet.training.splits import load_training_data, make_split
from jnet.training.trainer import RUN_FILES, Trainer, benchmark_training, fit, train

__all__ = [
    "RUN_FILES",
    "SCORES_FILE",
    "ImageScores",
    "TrainConfig",
    "Trainer",
    "benchmark_training",
    "checkpoint_data",
    "evaluate",
    "evaluate_checkpoint",
    "fit",
    "image_scores",
    "load_checkpoint",
    "load_training_data",
    "make_split",
    "read_checkpoint",
    "read_scores",
    "save_checkpoint",
    "train",
    "write_scores",
]
