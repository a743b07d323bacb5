"""Timing on the CPU with the context to trust it: medians and p90 of single calls, alternated pairs, the machine.

A configuration is timed as a *runner*, a callable that processes one fixed batch: called
``warmup`` times untimed, then ``runs`` times, each call timed alone with
``time.perf_counter`` (:func:`time_calls`); :func:`latency_stats` gives the median and the
90th percentile (the mean too, but one preempted run moves it). :func:`compare` alternates
two runners call by call, so that both see the same background load and clock drift, and
gives the ratio of their medians. :func:`environment` records where a number was taken.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jnet._version import __version__

_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16")


def cpu_model() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` on Linux, else :mod:`platform`)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else (platform.processor() or platform.machine())


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    match = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    flags = set(match.group(1).split()) if match else set()
    return [f for f in _ISA_FLAGS if f in flags]


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or ``None`` where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def environment(threads: int | None = None) -> dict[str, Any]:
    """Where a measurement was taken: versions, threads, CPU, cores, date and load."""
    try:
        import onnxruntime

        ort_version: str | None = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        "jnet": __version__,
        "torch": torch.__version__,
        "onnxruntime": ort_version,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "threads": threads or torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": load_average(),
    }


def latency_stats(seconds: Sequence[float], batch_size: int = 1) -> dict[str, float]:
    """Median, 90th percentile, mean and minimum latency in ms, and images per second at the median."""
    if not seconds:
        raise ValueError("no timings to summarise (runs must be >= 1)")
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    median = float(np.median(ms))
    return {
        "latency_ms_median": median,
        "latency_ms_p90": float(np.percentile(ms, 90)),
        "latency_ms_mean": float(ms.mean()),
        "latency_ms_min": float(ms.min()),
        "images_per_second": batch_size * 1e3 / median,
    }


def time_calls(fn: Callable[[], Any], runs: int, warmup: int = 0) -> list[float]:
    """Seconds of each of ``runs`` calls of ``fn`` after ``warmup`` untimed ones."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


class Threads:
    """Sets PyTorch's intra-op threads for a block and restores them."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        self.saved = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.saved)


def matmul_peak(threads: int | None = None, n: int = 1024, runs: int = 10, warmup: int = 3) -> dict[str, Any]:
    """The rate of an ``n x n`` float32 matrix product on this CPU: ``n**3`` MACs / median time.

    Returns:
        ``n``, ``threads``, ``time_ms_median`` and ``gmacs_per_second``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    with Threads(threads), torch.inference_mode():
        used = torch.get_num_threads()
        times = time_calls(lambda: torch.mm(a, b, out=out), runs, warmup)
    median = statistics.median(times)
    return {"n": n, "threads": used, "time_ms_median": median * 1e3, "gmacs_per_second": n**3 / median / 1e9}


def compare(
    a: Callable[[], Any],
    b: Callable[[], Any],
    runs: int = 100,
    warmup: int = 10,
    labels: tuple[str, str] = ("a", "b"),
    batch_size: int = 1,
) -> dict[str, Any]:
    """Time two runners alternately (a, b, a, b, ...) in this process.

    Returns:
        ``{labels[0]: stats, labels[1]: stats, "ratio": median_b / median_a,
        "speedup": median_a / median_b, "runs", "warmup"}`` with :func:`latency_stats` stats.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        a()
        b()
    times_a: list[float] = []
    times_b: list[float] = []
    for i in range(runs):
        # alternate which goes first, so neither always follows the other
        order = ((a, times_a), (b, times_b)) if i % 2 == 0 else ((b, times_b), (a, times_a))
        for fn, times in order:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    sa, sb = latency_stats(times_a, batch_size), latency_stats(times_b, batch_size)
    return {
        labels[0]: sa,
        labels[1]: sb,
        "ratio": sb["latency_ms_median"] / sa["latency_ms_median"],
        "speedup": sa["latency_ms_median"] / sb["latency_ms_median"],
        "runs": runs,
        "warmup": warmup,
    }
