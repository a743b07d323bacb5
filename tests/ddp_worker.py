"""Run by tests/test_train.py under torchrun: `jnet train`, recording which slices each rank loads."""

import json
import os
import sys
from pathlib import Path

from jnet.cli import main
from jnet.data.dataset import SliceDataset

seen: dict[int, list[int]] = {}
_getitem = SliceDataset.__getitem__


def _recording_getitem(self, index):
    seen.setdefault(self.epoch, []).append(int(index))
    return _getitem(self, index)


SliceDataset.__getitem__ = _recording_getitem
log_dir = Path(sys.argv[1])
code = main(sys.argv[2:])
log_dir.mkdir(parents=True, exist_ok=True)
(log_dir / f"rank{os.environ['RANK']}.json").write_text(json.dumps(seen))
sys.exit(code)
