"""Trained editor checkpoints: the weights an editor learned, as safetensors, beside a manifest
that names the base model they were trained on, plus resumable training state.

A trained editor (MEND, KE, SERAC, ...) is only valid on the base model whose activations and
gradients it learned from, so :func:`load_trained` refuses a checkpoint whose manifest names
another base fingerprint. Training code saves its progress with :func:`save_train_state`
every so often; ``kme train --resume`` (and a resumed run) continues from
:func:`load_train_state`.

Folder layout::

    OUT/manifest.json          editor, base fingerprint and name, config, metrics, kme version
    OUT/weights.safetensors    the trained tensors (flat name -> tensor)
    OUT/train-state.pt         optimiser/step state while training (removed when finished)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kme.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme.edited import EditedModel

__all__ = ["TrainedCheckpoint", "save_trained", "load_trained", "read_trained_manifest", "save_train_state",
           "load_train_state", "clear_train_state", "train_progress", "MANIFEST", "WEIGHTS", "TRAIN_STATE"]

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
TRAIN_STATE = "train-state.pt"
FORMAT = 1


@dataclass
class TrainedCheckpoint:
    """A loaded checkpoint: its folder, its tensors (on CPU) and its manifest."""

    path: Path
    tensors: dict[str, "torch.Tensor"]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        """The training settings the editor recorded (what it needs to rebuild its networks)."""
        return dict(self.manifest.get("config") or {})


def save_trained(out_dir: str | os.PathLike, *, editor: str, model: "EditedModel",
                 tensors: dict[str, "torch.Tensor"], config: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None) -> Path:
    """Write ``tensors`` and a manifest naming ``editor`` and ``model``'s base fingerprint to
    ``out_dir`` (created). ``config`` is what :func:`load_trained` gives back to rebuild the
    editor's networks; ``metrics`` records how training went (final loss, seconds, ...)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    tmp = out / (WEIGHTS + ".tmp")
    save_file(flat, str(tmp))
    os.replace(tmp, out / WEIGHTS)
    from kme import __version__

    manifest = {
        "format": FORMAT,
        "editor": editor,
        "base_fingerprint": model.base_fingerprint,
        "base_model": model.source,
        "config": config or {},
        "metrics": metrics or {},
        "tensors": len(flat),
        "kme_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return out


def read_trained_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the checkpoint folder ``path``; a clear error when there is none."""
    p = Path(path)
    m = p / MANIFEST
    if not p.is_dir() or not m.is_file():
        raise ConfigError(f"{str(p)!r} is not a trained checkpoint (no {MANIFEST})",
                          hint="train one with `kme train EDITOR --model MODEL --dataset DATASET --out DIR`")
    try:
        return json.loads(m.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{str(m)!r} is not valid JSON ({e})") from None


def load_trained(path: str | os.PathLike, *, editor: str, model: "EditedModel",
                 where: str | None = None) -> TrainedCheckpoint:
    """Load the checkpoint at ``path`` for ``editor`` on ``model``. Refuses (ConfigError naming
    ``where``) a checkpoint of another editor, or one trained on another base model: its
    networks map that model's activations, not these."""
    from safetensors.torch import load_file

    where = where or f"editor {editor!r} params.checkpoint"
    try:
        manifest = read_trained_manifest(path)
    except ConfigError as e:
        raise ConfigError(e.message, where=where, hint=e.hint) from None
    if manifest.get("editor") != editor:
        raise ConfigError(f"checkpoint {str(path)!r} was trained for editor {manifest.get('editor')!r}, "
                          f"not {editor!r}", where=where)
    if manifest.get("base_fingerprint") != model.base_fingerprint:
        raise ConfigError(f"checkpoint {str(path)!r} was trained on another base model "
                          f"({manifest.get('base_model')!r}, fingerprint {manifest.get('base_fingerprint')}); "
                          f"this model is {model.source!r} (fingerprint {model.base_fingerprint})", where=where,
                          hint=f"train one for this model: `kme train {editor} --model {model.source} "
                               f"--dataset DATASET --out DIR`")
    weights = Path(path) / WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} has a manifest but no {WEIGHTS}", where=where)
    return TrainedCheckpoint(Path(path), load_file(str(weights)), manifest)


def save_train_state(out_dir: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save resumable training progress (step, optimiser and network state dicts, RNG, ...)
    atomically to ``out_dir/train-state.pt``."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (TRAIN_STATE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / TRAIN_STATE)


def load_train_state(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The state :func:`save_train_state` left in ``out_dir``, or None (a fresh start)."""
    import torch

    p = Path(out_dir) / TRAIN_STATE
    if not p.is_file():
        return None
    return torch.load(p, map_location="cpu", weights_only=False)


def clear_train_state(out_dir: str | os.PathLike) -> None:
    """Remove the training state once the checkpoint is written."""
    (Path(out_dir) / TRAIN_STATE).unlink(missing_ok=True)


def train_progress(total: int, *, desc: str, start: int = 0) -> Iterator[tuple[int, Any]]:
    """Steps ``start .. total-1`` with a progress bar when progress is on; yields
    ``(step, bar)`` — call ``bar.set_postfix(loss=...)`` to show the loss (``bar`` is a
    no-op object when progress is off)."""
    from kme.progress import progress_enabled

    if progress_enabled():
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, desc=desc, unit="step", leave=False)
        try:
            for step in range(start, total):
                yield step, bar
                bar.update(1)
        finally:
            bar.close()
    else:
        bar = _NoBar()
        for step in range(start, total):
            yield step, bar


class _NoBar:
    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass
