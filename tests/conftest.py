"""Shared test set-up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

# a script for torchrun (tests/test_train.py), not a test module: --doctest-modules must not import it
collect_ignore = ["ddp_worker.py"]


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """Benchmarks set torch's thread count; give every test the process's original one."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
