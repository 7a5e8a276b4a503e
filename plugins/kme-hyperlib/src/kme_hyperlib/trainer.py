"""A resumable training loop for trained editors.

Every trained editor's ``train()`` has the same outer shape: build its networks and
optimisers, then run N steps that each return a loss, showing progress, saving resumable state
every so often, and finally writing a checkpoint bound to the base model. :class:`TrainLoop`
is that shape; the editor supplies only ``step_fn(step) -> loss``.

* resume: on start, :func:`kme.load_train_state` restores the step, every registered
  ``state_dict`` (networks, optimisers, samplers), Python's and torch's RNG and the
  accumulated seconds, so an interrupted run continues where it stopped and ends with the
  same weights as an uninterrupted one. A saved state made with other settings is refused;
* state is saved every ``save_every`` steps, when ``stop_after`` stops the loop early (a
  deliberate interruption, used by tests), and on Ctrl-C;
* progress: :func:`kme.train_progress` with the loss's moving average as postfix;
* :meth:`TrainLoop.finish` writes the checkpoint (:func:`kme.save_trained`) and removes the
  training state.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

import kme
from kme import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["TrainLoop", "TrainResult", "Stateful", "TrainSettings", "peak_rss_mb"]


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TrainSettings(BaseModel):
    """Settings every training loop shares (editors subclass it with their own)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(1000, ge=1, description="optimiser steps")
    seed: int = Field(0, description="seed of the sampler and of the networks' initialisation")
    save_every: int = Field(100, ge=1, description="steps between saves of the resumable training state")


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


@dataclass
class TrainResult:
    """How a training run went: ``finished`` is false when ``stop_after`` stopped it early."""

    steps: int
    finished: bool
    seconds: float
    final_loss: float | None
    history: list[tuple[int, float]] = field(default_factory=list)
    resumed_from: int = 0
    peak_rss_mb: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """For the checkpoint's manifest."""
        return {"steps": self.steps, "seconds": round(self.seconds, 1), "final_loss": self.final_loss,
                "seconds_per_step": round(self.seconds / max(1, self.steps), 4),
                "peak_rss_mb": self.peak_rss_mb, "resumed_from": self.resumed_from,
                "loss_history": [[s, round(v, 5)] for s, v in self.history], **self.extra}


class TrainLoop:
    """Run ``step_fn(step)`` for ``steps`` steps with resume, progress and periodic saves.

    ``stateful`` maps names to objects with ``state_dict``/``load_state_dict`` (modules,
    optimisers, :class:`kme_hyperlib.batches.EditSampler`); ``config`` is the JSON-able
    settings a saved state must match to be resumed."""

    def __init__(self, out_dir: str | os.PathLike, *, steps: int, desc: str, stateful: dict[str, Stateful],
                 config: dict[str, Any], save_every: int = 100, stop_after: int | None = None,
                 ema: float = 0.95, log_every: int = 50):
        self.out = Path(out_dir)
        self.steps = steps
        self.desc = desc
        self.stateful = stateful
        self.config = json.loads(json.dumps(config, default=str))
        self.save_every = save_every
        self.stop_after = stop_after
        self.ema_decay = ema
        self.log_every = log_every
        self.step = 0
        self.seconds = 0.0
        self.ema: float | None = None
        self.history: list[tuple[int, float]] = []
        self.extra_ema: dict[str, float] = {}
        self.resumed_from = 0

    # -- state -----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"step": self.step, "seconds": self.seconds, "ema": self.ema, "history": self.history,
                "extra_ema": self.extra_ema, "config": self.config,
                "python_rng": random.getstate(), "torch_rng": torch.get_rng_state(),
                "objects": {k: v.state_dict() for k, v in self.stateful.items()}}

    def save(self) -> None:
        kme.save_train_state(self.out, self._state())

    def restore(self) -> bool:
        """Load a saved state if there is one (True when resumed)."""
        state = kme.load_train_state(self.out)
        if state is None:
            return False
        if state.get("config") != self.config:
            raise ConfigError(f"{str(self.out)!r} holds a training state made with other settings; it cannot be "
                              "resumed with these", where=str(self.out / "train-state.pt"),
                              hint="train with the same settings, or delete train-state.pt to start over")
        for k, obj in self.stateful.items():
            if k not in state["objects"]:
                raise ConfigError(f"the saved training state has no {k!r}", where=str(self.out))
            obj.load_state_dict(state["objects"][k])
        self.step = int(state["step"])
        self.seconds = float(state["seconds"])
        self.ema = state["ema"]
        self.history = [tuple(h) for h in state["history"]]  # type: ignore[misc]
        self.extra_ema = dict(state.get("extra_ema") or {})
        random.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.resumed_from = self.step
        return True

    # -- the loop --------------------------------------------------------------------------
    def run(self, step_fn: Callable[[int], float | dict[str, float]]) -> TrainResult:
        """Run the remaining steps. ``step_fn`` returns the step's loss, or a dict with
        ``"loss"`` and other numbers to average (shown and recorded)."""
        self.restore()
        stop = self.steps if self.stop_after is None else min(self.steps, self.stop_after)
        t0 = time.perf_counter()
        base_seconds = self.seconds
        try:
            for step, bar in kme.train_progress(self.steps, desc=self.desc, start=self.step):
                if step >= stop:
                    break
                out = step_fn(step)
                values = out if isinstance(out, dict) else {"loss": float(out)}
                loss = float(values["loss"])
                self.ema = loss if self.ema is None else self.ema_decay * self.ema + (1 - self.ema_decay) * loss
                for k, v in values.items():
                    if k != "loss":
                        prev = self.extra_ema.get(k)
                        self.extra_ema[k] = float(v) if prev is None else \
                            self.ema_decay * prev + (1 - self.ema_decay) * float(v)
                self.step = step + 1
                self.seconds = base_seconds + time.perf_counter() - t0
                if self.step % self.log_every == 0 or self.step == self.steps:
                    self.history.append((self.step, self.ema))
                bar.set_postfix(loss=f"{self.ema:.4f}")
                if self.step % self.save_every == 0 and self.step < self.steps:
                    self.save()
        except KeyboardInterrupt:
            self.seconds = base_seconds + time.perf_counter() - t0
            self.save()
            raise
        self.seconds = base_seconds + time.perf_counter() - t0
        finished = self.step >= self.steps
        if not finished:
            self.save()
        return TrainResult(steps=self.step, finished=finished, seconds=self.seconds,
                           final_loss=None if self.ema is None else round(self.ema, 5), history=list(self.history),
                           resumed_from=self.resumed_from, peak_rss_mb=peak_rss_mb(),
                           extra={k: round(v, 5) for k, v in self.extra_ema.items()})

    def finish(self, *, editor: str, model: "EditedModel", tensors: dict[str, torch.Tensor],
               config: dict[str, Any], result: TrainResult, metrics: dict[str, Any] | None = None) -> Path:
        """Write the checkpoint to the loop's folder and drop the resumable state."""
        path = kme.save_trained(self.out, editor=editor, model=model, tensors=tensors, config=config,
                                metrics={**result.metrics(), **(metrics or {})})
        kme.clear_train_state(self.out)
        return path
