"""What a metric sees besides the model and the requests: the evaluation context."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from kme.components import Editor, Locator
    from kme.data import EditRequest, Location
    from kme.pipeline.spec import ProtocolSpec

__all__ = ["EvalContext"]

Phase = Literal["baseline", "batch", "checkpoint", "final"]


@dataclass
class EvalContext:
    """Shared state of one evaluation call.

    - ``phase``: ``baseline`` (unedited model), ``batch`` (after a batch in the batch
      protocol), ``checkpoint`` (sequential protocol, retention of every edit so far) or
      ``final``.
    - ``cache``: per-run, JSON-serialisable store that a metric fills in ``prepare`` with
      unedited-model outputs (computed once per run, saved in the run folder after the
      baseline and after every batch, reused on resume). Key it by your metric name.
    - ``editors`` / ``locator`` / ``location``: what the pipeline edits with (and the
      location found for the current batch), so protocol-level metrics (scalability) can
      apply an edit alone inside ``model.suspended()``.
    - ``applied``: every request applied so far (sequential), in order.
    """

    phase: Phase = "batch"
    protocol: "ProtocolSpec | None" = None
    cache: dict[str, Any] = field(default_factory=dict)
    editors: list["Editor"] = field(default_factory=list)
    locator: "Locator | None" = None
    location: "Location | None" = None
    applied: list["EditRequest"] = field(default_factory=list)
    num_edits: int = 0
    seed: int = 0
    batch_size: int = 64
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    timings: dict[str, float] = field(default_factory=dict)
