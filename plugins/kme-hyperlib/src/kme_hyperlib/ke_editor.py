"""The editor around a KnowledgeEditor-style hypernetwork: checkpoint loading, training on a
train split, and the edit itself. ``ke``, ``slag`` and ``kgeditor`` subclass it and choose
their target, their training objective and their edit loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

import kme

from kme_hyperlib.ke_recipe import (KETarget, LoadedEditor, Recipe, WeightTarget, compute_edit,
                                    load_hypernetwork, train_hypernetwork)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["HypernetEditor", "HypernetParams"]


class HypernetParams(kme.Params):
    """The checkpoint, and how ``train()`` trains the hypernetwork when none is named
    (``kme train NAME``, or ``kme run`` with no checkpoint): the training settings every
    method shares; each plugin adds its own."""

    checkpoint: str | None = Field(None, description="folder written by `kme train NAME` (or by a run that trained "
                                                     "it); refused if trained for another editor or base model")
    steps: int = Field(1000, ge=1, description="training steps (one edit and its locality batch each)")
    batch_size: int = Field(16, ge=1, description="locality inputs (other training facts) per step")
    lr: float = Field(3e-4, gt=0, description="learning rate of the hypernetwork")
    seed: int = Field(0, description="seed of the network's initialisation and of the sampling")
    layers: list[int] | None = Field(None, description="blocks whose weight matrices the network is trained to "
                                                       "edit (null: every block); a checkpoint keeps its own")
    hidden_dim: int = Field(128, ge=1, description="width of the condition encoder's LSTM and of each "
                                                   "conditioner's hidden layer")
    condition_dim: int = Field(1024, ge=1, description="size of the encoded condition")
    max_scale: float = Field(1.0, gt=0, description="upper bound of the gate σ(η) that scales each change")
    holdout: float = Field(0.05, ge=0, lt=1, description="share of training subjects held out to measure edit "
                                                         "success while training")
    eval_every: int = Field(250, ge=0, description="steps between held-out measurements (0: none)")
    warmup: int = Field(50, ge=0, description="steps of linear learning-rate warm-up (then linear decay to 0)")
    save_every: int = Field(100, ge=1, description="steps between saved training states (resume points)")


class HypernetEditor(kme.Editor):
    """Base of the hypernetwork editors (not registered itself)."""

    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True, needs_training=True)

    # -- what subclasses choose ------------------------------------------------------------------
    def recipe(self) -> Recipe:
        """The training recipe from the training params."""
        raise NotImplementedError

    def make_target(self, model: "EditedModel") -> KETarget:
        """The target a new training run edits (default: the chosen blocks' weight matrices)."""
        return WeightTarget.from_model(model, self.params.layers)  # type: ignore[attr-defined]

    def target_from_checkpoint(self, model: "EditedModel", config: dict[str, Any],
                               tensors: dict[str, "torch.Tensor"], where: str) -> KETarget:
        if config.get("kind") != "weights":
            raise kme.ConfigError(f"the checkpoint's target is {config.get('kind')!r}, not weight matrices",
                                  where=where)
        return WeightTarget.from_config(model, config, where)

    def edit_loop(self) -> dict[str, int]:
        """``update_steps`` / ``max_repeats`` for :func:`compute_edit`."""
        return {}

    # -- the Editor contract ---------------------------------------------------------------------
    @property
    def _where(self) -> str:
        return f"editor {self.name!r} params.checkpoint"

    def is_trained(self) -> bool:
        return bool(self.params.checkpoint)  # type: ignore[attr-defined]

    def loaded(self, model: "EditedModel") -> LoadedEditor:
        path = self.params.checkpoint  # type: ignore[attr-defined]
        if not path:
            raise kme.ConfigError(f"{self.name} needs a trained checkpoint", where=self._where,
                                  hint=f"train one with `kme train {self.name} --model MODEL --dataset DATASET "
                                       f"--out DIR` and pass checkpoint: DIR (`kme run` trains one on the "
                                       f"dataset's train split when none is named)")
        return load_hypernetwork(path, editor=self.name, model=model, where=self._where,
                                 make_target=lambda cfg, t: self.target_from_checkpoint(model, cfg, t, self._where))

    def check_model(self, model: "EditedModel") -> None:
        """A named checkpoint must be this editor's, for this base model; training layers must
        exist."""
        super().check_model(model)  # `layers` in range
        if self.params.checkpoint:  # type: ignore[attr-defined]
            self.loaded(model)

    def train(self, model: "EditedModel", requests: list["EditRequest"], out_dir: str) -> dict[str, Any]:
        """Train the hypernetwork on ``requests`` (resuming from a training state in
        ``out_dir``) and point ``checkpoint`` at the result."""
        for i, v in enumerate(self.params.layers or []):  # type: ignore[attr-defined]
            try:
                model.check_layer(v)
            except kme.KmeError as e:
                raise kme.ConfigError(e.message, hint=e.hint, where=f"editor {self.name!r} params.layers[{i}]") \
                    from None
        train_hypernetwork(model, requests, out_dir, editor=self.name, target=self.make_target(model),
                           recipe=self.recipe())
        return {"checkpoint": str(out_dir)}

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        loaded = self.loaded(model)
        values, meta = compute_edit(model, loaded, requests, **self.edit_loop())
        handle = model.new_handle(self, requests)
        loaded.target.commit(model, handle, values)
        handle.meta[self.name] = {"checkpoint": loaded.path, **meta}
        return handle
