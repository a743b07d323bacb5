"""Shared test set-up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """Benchmarks set torch's thread count; give every test the process's original one."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
