"""The ``editable-training`` editor: install the meta-trained base weights, then edit them
with the learned few-step gradient descent.

Editable Training changes the base model itself, so the model that is edited is not the one
the pipeline loaded. The first edit on a model installs the meta-trained weights as part of
its own weight change (every weight set to its meta-trained value, or the meta-training change
added where another editor's edit already moved the weight), together with the ``k``-step
edit; while that edit is applied, later edits (the sequential protocol) start from the weights
as they are. Undoing the edit that installed them restores the original model bit
for bit, and a patch carries them. ``steps: 0`` installs the meta-trained weights and edits
nothing: the meta-trained model's own scores against the original's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

import kme
from kme import ConfigError

from kme_editable_training.training import EDITOR, EditableTrainConfig, sgd_edit, train_editable
from kme_hyperlib.batches import edit_pairs, lm_batch
from kme_hyperlib.checkpoints import check_loads, check_trained_layers, missing_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["EditableTrainingEditor", "EditableTrainingParams", "load_meta_trained"]

_CACHE: dict[tuple[str, float, str], dict[str, Any]] = {}


class EditableTrainingParams(kme.Params):
    checkpoint: str | None = Field(None, description="folder written by `kme train editable-training` (the "
                                                     "meta-trained base weights and learned edit step sizes)")
    steps: int = Field(10, ge=0, description="most SGD steps per edit; with early_stop the edit ends when it "
                                             "succeeds (usually after the k it was meta-trained for); 0 installs "
                                             "the meta-trained weights only")
    early_stop: bool = Field(True, description="stop as soon as every new-object token is the top prediction (the "
                                               "authors' editor stops when the edit succeeds)")
    lr_scale: float = Field(1.0, gt=0, description="multiplies the learned step sizes (1: as trained)")
    layers: list[int] | None = Field(None, description="blocks whose MLP weights the edit changes. Default: the "
                                                       "checkpoint's; when training, the last three blocks")
    train: EditableTrainConfig = Field(default_factory=EditableTrainConfig,
                                       description="settings `kme train editable-training` (and a run without a "
                                                   "checkpoint) meta-trains with")


def load_meta_trained(path: str, model: "EditedModel", where: str = f"editor {EDITOR!r} params.checkpoint"
                      ) -> dict[str, Any]:
    """``{"base": {name: tensor}, "edit_lrs": tensor, "config": {...}}`` from the checkpoint at
    ``path`` (cached), refused for another base model or another editor."""
    p = Path(path).expanduser()
    wfile = p / "weights.safetensors"
    key = (str(p.resolve()), wfile.stat().st_mtime if wfile.is_file() else 0.0, model.base_fingerprint)
    if key in _CACHE:
        return _CACHE[key]
    ck = kme.load_trained(p, editor=EDITOR, model=model, where=where)
    base = {k[5:]: v for k, v in ck.tensors.items() if k.startswith("base.")}
    config = ck.config
    if "edit_lrs" not in ck.tensors or "inner" not in config:
        raise ConfigError(f"Editable Training checkpoint {str(p)!r} lacks its edit step sizes", where=where,
                          hint="retrain it with `kme train editable-training`")
    for name, t in base.items():
        try:
            w = model.parameter(name)
        except kme.KmeError:
            raise ConfigError(f"checkpoint {str(p)!r} holds {name!r}, which this model lacks", where=where) from None
        if tuple(w.shape) != tuple(t.shape):
            raise ConfigError(f"checkpoint {str(p)!r}: {name!r} has shape {tuple(t.shape)}, the model's "
                              f"{tuple(w.shape)}", where=where)
    out = {"base": base, "edit_lrs": ck.tensors["edit_lrs"].float(), "config": config, "path": str(p)}
    _CACHE[key] = out
    return out


class EditableTrainingEditor(kme.Editor):
    name = EDITOR
    description = ("Editable Training: a base model meta-trained so that a few gradient steps on an edit make it "
                   "without hurting other inputs (Sinitsin et al., 2020)")
    Params = EditableTrainingParams
    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True, needs_training=True)

    def is_trained(self) -> bool:
        return bool(self.params.checkpoint)  # type: ignore[attr-defined]

    def _checkpoint(self, model: "EditedModel") -> dict[str, Any]:
        p: EditableTrainingParams = self.params  # type: ignore[assignment]
        if not p.checkpoint:
            raise missing_checkpoint(EDITOR, "a meta-trained checkpoint")
        ck = load_meta_trained(p.checkpoint, model)
        check_trained_layers(model, EDITOR, p.layers, ck["config"]["layers"],
                             "the base was meta-trained for edits of those weights")
        return ck

    def check_model(self, model: "EditedModel") -> None:
        super().check_model(model)
        if self.params.checkpoint:  # type: ignore[attr-defined]
            check_loads(lambda: self._checkpoint(model))

    def train(self, model: "EditedModel", requests: list["EditRequest"], out_dir: str) -> dict[str, Any]:
        """Meta-train the base on ``requests`` (a train split) into ``out_dir``, resuming a
        training state left there; returns ``{"checkpoint": out_dir}``."""
        p: EditableTrainingParams = self.params  # type: ignore[assignment]
        result = train_editable(model, requests, out_dir, p.train, layers=p.layers)
        if not result.finished:  # pragma: no cover - only stop_after stops early
            raise ConfigError("Editable Training stopped before its last step", where=out_dir)
        return {"checkpoint": out_dir}

    def _installed(self, model: "EditedModel", ck: dict[str, Any]) -> bool:
        """Whether an applied edit of this editor already installed these meta-trained weights."""
        return any(h.editor_name == self.name and (h.meta.get(EDITOR) or {}).get("installs_base")
                   and (h.meta.get(EDITOR) or {}).get("checkpoint") == ck["path"] for h in model.stack)

    @staticmethod
    def _meta_changes(model: "EditedModel", ck: dict[str, Any]) -> dict[str, torch.Tensor | None]:
        """Per meta-trained weight: ``meta - original`` (float32) when other edits have moved the
        weight, so installing keeps their changes; ``None`` when it is still the original's
        (the meta-trained value is then set exactly)."""
        names = list(ck["base"])
        moved = [n for n in names if any(n in h.deltas for h in model.stack)]
        out: dict[str, torch.Tensor | None] = {n: None for n in names}
        if moved:
            with model.suspended(), torch.no_grad():
                for n in moved:
                    w = model.parameter(n)
                    out[n] = ck["base"][n].to(device=w.device, dtype=torch.float32) - w.detach().float()
        return out

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        p: EditableTrainingParams = self.params  # type: ignore[assignment]
        ck = self._checkpoint(model)
        t0 = time.perf_counter()
        net = model.model
        install = not self._installed(model, ck)
        names: list[str] = list(ck["config"]["inner"])
        steps = p.steps
        current = {n: w.detach() for n, w in net.named_parameters()}
        start = dict(current)
        installed: dict[str, torch.Tensor | None] = {}  # the meta-training change of each weight
        if install:
            installed = self._meta_changes(model, ck)
            for n, d in installed.items():
                start[n] = ck["base"][n].to(device=current[n].device, dtype=current[n].dtype) if d is None \
                    else (current[n].float() + d).to(current[n].dtype)
        taken, loss = 0, float("nan")
        edited = start
        if steps > 0:
            batch = lm_batch(model, [pair for r in requests for pair in edit_pairs(r, "prompt")])
            fast = {n: start[n].detach().clone().requires_grad_(True) for n in names}
            weights = {**start, **fast}
            lrs = (ck["edit_lrs"] * p.lr_scale).to(model.device)
            was_training = net.training
            if was_training:
                net.eval()
            try:
                with torch.enable_grad():
                    edited, taken, loss = sgd_edit(net, weights, names, lrs, batch, steps, create_graph=False,
                                                   early_stop=p.early_stop)
            finally:
                if was_training:
                    net.train()
        handle = model.new_handle(self, requests)
        for n in sorted(set(names) | set(installed)):
            value = edited[n].detach()
            change = installed.get(n)
            if change is not None:
                # the meta-training change plus the edit, on top of whatever other edits did
                handle.add_delta(n, change + (value.float() - start[n].float()))
            elif n in installed or not torch.equal(value.to(current[n].dtype), current[n]):
                handle.set_param(n, value)
        handle.meta[EDITOR] = {"installs_base": install, "checkpoint": ck["path"], "steps_taken": taken,
                               "edit_nll": round(loss, 5) if loss == loss else None,
                               "edit_ms": round((time.perf_counter() - t0) * 1000, 3)}
        return handle
