"""KGEditor's extra FFN layer on a causal LM, kept as a change of the block's MLP output
weight.

The released KGEditor (``BertOutputEx``) adds to chosen blocks a second branch beside the
FFN's output projection: ``h_ex = W_out_ex · (W_in_ex · a)`` on the FFN's intermediate
activation ``a`` (the input of the output projection), added to the FFN's output. The
branch has no non-linearity, so it equals the matrix ``M = W_out_ex W_in_ex`` (rank ≤
``ex_size``) added to the output projection's weight: the extra layer *is* a weight change
of an existing module. kme therefore

* keeps the layer's two factors as the edited tensors (``extra.<layer>.in`` ``[ex_size ×
  d_ff]`` and ``extra.<layer>.out`` ``[d_model × ex_size]``), so the hypernetwork reads and
  writes them as the release does;
* folds their product into the output projection through ``handle.set_param`` (exact undo,
  patches) and saves the factors after the edit in ``handle.state``, so the next edit
  continues from the layer as the previous edits left it.

``W_out_ex`` starts at zero (the release initialises both factors randomly, which perturbs
the model before any edit): the unedited model is the base model, and ``W_in_ex`` is a fixed
random matrix saved in the checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

import kme

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle

__all__ = ["ExtraFFNTarget", "EDITOR"]

EDITOR = "kgeditor"


class ExtraFFNTarget:
    """The extra FFN layers of the chosen blocks (two factors each)."""

    kind = "extra_ffn"

    def __init__(self, layers: list[int], ex_size: int, d_model: int, d_ff: int, weight_names: dict[int, str],
                 conv1d: bool, w_in: dict[int, torch.Tensor]):
        self.layers = list(layers)
        self.ex_size, self.d_model, self.d_ff = ex_size, d_model, d_ff
        self.weight_names = dict(weight_names)
        self.conv1d = conv1d
        self.w_in = {k: v.float() for k, v in w_in.items()}

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def new(cls, model: "EditedModel", layers: list[int], ex_size: int, seed: int,
            init_std: float | None = None) -> "ExtraFFNTarget":
        """Fresh layers for a training run: ``W_in_ex`` normal with standard deviation
        ``init_std`` (default ``1/√ex_size``: ``‖W_in_ex a‖ ≈ ‖a‖``), ``W_out_ex`` zero."""
        chosen = sorted({model.check_layer(i) for i in layers})
        names = {layer: model.weight_name(layer, "mlp_out") for layer in chosen}
        d_model, d_ff = _dims(model, names[chosen[0]])
        std = init_std if init_std is not None else ex_size ** -0.5
        gen = torch.Generator().manual_seed(seed)
        w_in = {layer: torch.randn(ex_size, d_ff, generator=gen) * std for layer in chosen}
        return cls(chosen, ex_size, d_model, d_ff, names, model.layout.conv1d, w_in)

    @classmethod
    def from_config(cls, model: "EditedModel", config: dict[str, Any], tensors: dict[str, torch.Tensor],
                    where: str) -> "ExtraFFNTarget":
        if config.get("kind") != cls.kind:
            raise kme.ConfigError(f"the checkpoint's target is {config.get('kind')!r}, not KGEditor's extra FFN "
                                  "layer", where=where)
        layers = [int(x) for x in config["layers"]]
        names = {}
        for layer in layers:
            try:
                names[layer] = model.weight_name(layer, "mlp_out")
            except kme.KmeError as e:
                raise kme.ConfigError(f"the checkpoint adds a layer to block {layer}: {e.message}", where=where) \
                    from None
        d_model, d_ff = _dims(model, names[layers[0]])
        if (d_model, d_ff) != (config["d_model"], config["d_ff"]):
            raise kme.ConfigError(f"the checkpoint's extra layers are for width {config['d_model']}/{config['d_ff']}, "
                                  f"this model's are {d_model}/{d_ff}", where=where)
        w_in = {}
        for layer in layers:
            t = tensors.get(f"extra.{layer}.in")
            if t is None or tuple(t.shape) != (config["ex_size"], d_ff):
                raise kme.ConfigError(f"the checkpoint lacks the extra layer's input matrix for block {layer}",
                                      where=where)
            w_in[layer] = t
        return cls(layers, int(config["ex_size"]), d_model, d_ff, names, model.layout.conv1d, w_in)

    # -- the KETarget protocol ---------------------------------------------------------------------
    def shapes(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for layer in self.layers:
            out[f"extra.{layer}.in"] = (self.ex_size, self.d_ff)
            out[f"extra.{layer}.out"] = (self.d_model, self.ex_size)
        return out

    def current(self, model: "EditedModel") -> dict[str, torch.Tensor]:
        """The factors as the newest applied KGEditor edit left them (its ``handle.state``), or
        the initial ones."""
        dev = model.device
        out: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            key_in, key_out = f"extra.{layer}.in", f"extra.{layer}.out"
            for h in reversed(model.stack):
                if h.editor_name == EDITOR and key_in in h.state and key_out in h.state:
                    out[key_in] = h.state[key_in].to(dev, torch.float32)
                    out[key_out] = h.state[key_out].to(dev, torch.float32)
                    break
            else:
                out[key_in] = self.w_in[layer].to(dev)
                out[key_out] = torch.zeros(self.d_model, self.ex_size, device=dev)
        return out

    def _fold(self, m: torch.Tensor) -> torch.Tensor:
        """``M`` ([d_model, d_ff], as a linear layer) in the weight's storage layout."""
        return m.T if self.conv1d else m

    def _product(self, values: dict[str, torch.Tensor], layer: int) -> torch.Tensor:
        return values[f"extra.{layer}.out"] @ values[f"extra.{layer}.in"]

    def overrides(self, model: "EditedModel", values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prev = self.current(model)
        out = {}
        for layer in self.layers:
            name = self.weight_names[layer]
            w = model.parameter(name)
            change = self._fold(self._product(values, layer) - self._product(prev, layer))
            out[name] = (w.detach().float() + change).to(w.dtype)
        return out

    def commit(self, model: "EditedModel", handle: "EditHandle", values: dict[str, torch.Tensor]) -> None:
        prev = self.current(model)
        for layer in self.layers:
            name = self.weight_names[layer]
            handle.add_delta(name, self._fold(self._product(values, layer) - self._product(prev, layer)).detach())
            for part in ("in", "out"):
                handle.state[f"extra.{layer}.{part}"] = values[f"extra.{layer}.{part}"].detach().float().cpu()

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "layers": self.layers, "ex_size": self.ex_size, "d_model": self.d_model,
                "d_ff": self.d_ff}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"extra.{layer}.in": w for layer, w in self.w_in.items()}


def _dims(model: "EditedModel", weight_name: str) -> tuple[int, int]:
    """(d_model, d_ff) of the output projection ``weight_name``."""
    shape = tuple(model.parameter(weight_name).shape)
    return (shape[1], shape[0]) if model.layout.conv1d else (shape[0], shape[1])
