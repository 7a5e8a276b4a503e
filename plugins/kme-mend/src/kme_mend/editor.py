"""The ``mend`` editor: one forward and one backward pass of the base model, the trained
networks on the per-token gradient factors, and one rank-limited weight change per edited
weight (Mitchell et al., 2022a)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field

import kme
from kme import ConfigError

from kme_hyperlib.batches import edit_pairs, lm_batch, masked_nll
from kme_hyperlib.capture import capture_factors, frozen_parameters, module_of, weight_delta
from kme_hyperlib.checkpoints import check_loads, check_trained_layers, missing_checkpoint
from kme_mend.nets import MendNetworks
from kme_mend.training import EDITOR, MendTrainConfig, train_mend

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["MendEditor", "MendParams", "load_networks"]

_CACHE: dict[tuple[str, float, str], tuple[MendNetworks, dict[str, Any]]] = {}


class MendParams(kme.Params):
    checkpoint: str | None = Field(None, description="folder written by `kme train mend` (the editor networks and "
                                                     "learned steps, bound to one base model)")
    layers: list[int] | None = Field(None, description="blocks whose MLP weights MEND edits. Default: the "
                                                       "checkpoint's; when training, the last three blocks "
                                                       "(the released GPT configs)")
    lr_scale: float = Field(1.0, gt=0, description="multiplies the learned edit steps at edit time (1: as trained)")
    train: MendTrainConfig = Field(default_factory=MendTrainConfig,
                                   description="settings `kme train mend` (and a run without a checkpoint) "
                                               "trains with")


def load_networks(path: str, model: "EditedModel", where: str = "editor 'mend' params.checkpoint"
                  ) -> tuple[MendNetworks, dict[str, Any]]:
    """The trained networks at ``path`` (cached per folder and model), refused for another
    base model or another editor."""
    p = Path(path).expanduser()
    wfile = p / "weights.safetensors"
    key = (str(p.resolve()), wfile.stat().st_mtime if wfile.is_file() else 0.0, model.base_fingerprint)
    if key in _CACHE:
        return _CACHE[key]
    ck = kme.load_trained(p, editor=EDITOR, model=model, where=where)
    config = ck.config
    try:
        nets = MendNetworks.from_config(config)
        nets.load_state_dict(ck.tensors)
    except (KeyError, TypeError, RuntimeError) as e:
        raise ConfigError(f"MEND checkpoint {str(p)!r} does not match this version's networks: "
                          f"{str(e).splitlines()[0]}", where=where, hint="retrain it with `kme train mend`") from None
    for t in config["targets"]:
        try:
            w = model.parameter(t["name"])
        except kme.KmeError:
            raise ConfigError(f"MEND checkpoint {str(p)!r} edits {t['name']!r}, which this model lacks",
                              where=where) from None
        shape = (t["d_in"], t["d_out"]) if t["conv1d"] else (t["d_out"], t["d_in"])
        if tuple(w.shape) != shape:
            raise ConfigError(f"MEND checkpoint {str(p)!r}: {t['name']!r} has shape {tuple(w.shape)} here, "
                              f"{shape} in training", where=where)
    nets.eval().to(model.device)
    for prm in nets.parameters():
        prm.requires_grad_(False)
    _CACHE[key] = (nets, config)
    return nets, config


class MendEditor(kme.Editor):
    name = "mend"
    description = ("MEND: trained networks map the fine-tuning gradient's rank-1 factors to a weight change of "
                   "the last MLPs (Mitchell et al., 2022)")
    Params = MendParams
    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True, needs_training=True)

    def is_trained(self) -> bool:
        return bool(self.params.checkpoint)  # type: ignore[attr-defined]

    def _networks(self, model: "EditedModel") -> tuple[MendNetworks, dict[str, Any]]:
        p: MendParams = self.params  # type: ignore[assignment]
        if not p.checkpoint:
            raise missing_checkpoint(EDITOR)
        nets, config = load_networks(p.checkpoint, model)
        check_trained_layers(model, EDITOR, p.layers, config["layers"],
                             "MEND's networks only edit the weights they were trained on")
        return nets, config

    def check_model(self, model: "EditedModel") -> None:
        super().check_model(model)
        if self.params.checkpoint:  # type: ignore[attr-defined]
            check_loads(lambda: self._networks(model))

    def train(self, model: "EditedModel", requests: list["EditRequest"], out_dir: str) -> dict[str, Any]:
        """Train the networks on ``requests`` (a train split) into ``out_dir``, resuming a
        training state left there; returns ``{"checkpoint": out_dir}``."""
        p: MendParams = self.params  # type: ignore[assignment]
        result = train_mend(model, requests, out_dir, p.train, layers=p.layers)
        if not result.finished:  # pragma: no cover - only stop_after stops early
            raise ConfigError("MEND training stopped before its last step", where=out_dir)
        return {"checkpoint": out_dir}

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        p: MendParams = self.params  # type: ignore[assignment]
        nets, config = self._networks(model)
        t0 = time.perf_counter()
        net = model.model
        batch = lm_batch(model, [pair for r in requests for pair in edit_pairs(r, "prompt")])
        modules = {t["name"]: module_of(model, t["module"]) for t in config["targets"]}
        was_training = net.training
        if was_training:
            net.eval()
        try:
            with frozen_parameters(net):
                factors, loss = capture_factors(net, modules, lambda: masked_nll(batch.forward(net), batch),
                                                token_mask=batch.attention_mask)
        finally:
            if was_training:
                net.train()
        handle = model.new_handle(self, requests)
        norms = []
        with torch.no_grad():
            for i, t in enumerate(config["targets"]):
                f = factors[t["name"]]
                u, d = nets.transform(i, f.u, f.delta)
                change = (p.lr_scale * nets.edit_lrs[i]) * weight_delta(u, d, t["conv1d"])
                handle.add_delta(t["name"], change)
                norms.append(round(float(change.norm()), 6))
        handle.meta["mend"] = {"edit_ms": round((time.perf_counter() - t0) * 1000, 3),
                               "pre_edit_nll": round(float(loss), 5), "delta_norms": norms,
                               "checkpoint": str(p.checkpoint)}
        return handle
