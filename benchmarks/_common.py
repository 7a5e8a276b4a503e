"""What the benchmark scripts share: peak-memory measurement around a block.

The scripts are run as ``python benchmarks/<script>.py``, so this folder is on ``sys.path``
and they import this module as ``_common``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["rss_mb", "PeakMemory"]


def rss_mb() -> float:
    """Resident memory of this process in MB (``VmRSS`` of ``/proc/self/status``); NaN when unknown."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """Peak resident memory during a block (CPU, sampled every 2 ms) or peak allocated CUDA
    memory (``cuda``), and the memory held before it. ``synchronize``: wait for pending CUDA
    work on entering and leaving the block."""

    def __init__(self, cuda: bool, *, synchronize: bool = False):
        self.cuda = cuda
        self.synchronize = synchronize
        self.before = self.peak = 0.0
        self._stop = threading.Event()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.002)

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            import torch

            if self.synchronize:
                torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated() / 2**20
        else:
            self.before = self.peak = rss_mb()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            import torch

            if self.synchronize:
                torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, rss_mb())

    @property
    def increase(self) -> float:
        """Peak minus the memory held before the block."""
        return self.peak - self.before
