"""Batches that fit in memory: halve the batch on out-of-memory and retry.

Target optimisation, key capture and key statistics run their forward passes through
:class:`Fit`: when a batch raises ``torch.cuda.OutOfMemoryError`` (or a CPU
``RuntimeError``/``MemoryError`` saying an allocation failed), the batch is split in half and
retried, down to one row, after which the error is raised. The smaller size is kept for the
rest of the run, and each halving is logged as a structured warning (logger ``kme``, event
``batch.halved``, with ``where`` and the new ``batch_size``).

The work a batch does must have no side effect until it has succeeded (the callers collect
into locals and commit afterwards), so that a retried batch is not counted twice.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence

import structlog
import torch

__all__ = ["Fit", "is_out_of_memory", "original_widths"]

log = structlog.get_logger("kme")

_CPU_OOM = ("out of memory", "can't allocate", "cannot allocate", "could not allocate", "failed to allocate",
            "unable to allocate")


def is_out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` says the device or host ran out of memory (not any other error)."""
    if isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    if isinstance(e, RuntimeError):
        msg = str(e).lower()
        return any(s in msg for s in _CPU_OOM)
    return False


def _release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Fit:
    """A batch size that shrinks on out-of-memory errors; ``where`` names the caller in logs."""

    def __init__(self, batch_size: int, where: str):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.first = self.size = int(batch_size)
        self.where = where

    def run(self, n: int, fn: Callable[[int, int], None]) -> None:
        """``fn(start, stop)`` over ``range(n)`` in batches of the batch size asked for; a
        batch that runs out of memory is retried in halves (and the smaller size kept), but
        a batch never spans two of the batches first asked for: a caller that pads each row
        to the width of its original batch (:func:`original_widths`) gets the same rows
        however often the batch was halved."""
        first = self.first
        for group in range(0, n, first):
            end = min(n, group + first)
            start = group
            while start < end:
                stop = min(end, start + self.size)
                if self.attempt(fn, start, stop):
                    start = stop

    def attempt(self, fn: Callable[[int, int], None], start: int, stop: int) -> bool:
        """``fn(start, stop)``; False (and the size halved below ``stop - start``) if it ran
        out of memory with more than one row, the error re-raised with one row."""
        try:
            fn(start, stop)
            return True
        except BaseException as e:  # noqa: BLE001 - re-raised unless it is an out-of-memory error
            if not is_out_of_memory(e) or stop - start <= 1:
                raise
            error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        # out of the except block: the traceback (and the tensors its frames hold) is freed
        self.size = max(1, (stop - start) // 2)
        _release()
        log.warning("batch.halved", where=self.where, batch_size=self.size, error=error)
        return False


def original_widths(lengths: Sequence[int], batch_size: int) -> list[int]:
    """Per row, the longest length of its batch of ``batch_size`` consecutive rows: the width
    it is padded to in a plain batched pass. A row's activations can differ in their last
    bits with the padded width, so halved batches pad to it too."""
    out: list[int] = []
    for s in range(0, len(lengths), batch_size):
        part = lengths[s:s + batch_size]
        out.extend([max(part)] * len(part))
    return out
