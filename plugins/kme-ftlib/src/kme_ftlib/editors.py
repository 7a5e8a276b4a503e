"""Editor base classes of the fine-tuning family.

:class:`FineTuneEditor` does what every member shares -- choose the weights, train float32
copies of them (:meth:`FineTuneEditor.train_weights`, the method's own part), write the
result through ``handle.set_param`` -- so undo is bit-exact, patches round-trip, batches are
one joint optimisation and sequential edits start from the weights the previous ones left.
:class:`ConstrainedFineTuneEditor` is FT-L / FT-M: Adam on a target-token loss with an
optional L∞ projection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import torch

import kme

from kme_ftlib.constraints import linf_project
from kme_ftlib.loop import FitResult, fit, select_weights
from kme_ftlib.losses import encode_batch, loss_for
from kme_ftlib.params import ConstrainedParams, FineTuneParams

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["FineTuneEditor", "ConstrainedFineTuneEditor", "adam", "fit_requests", "describe_fit"]


def adam(lr: float, weight_decay: float = 0.0) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    """An optimiser factory for :func:`kme_ftlib.loop.fit`: torch's Adam, as the released FT code uses."""
    return lambda params: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def fit_requests(model: "EditedModel", start: dict[str, torch.Tensor], prompts: list[str], targets: list[str],
                 p: FineTuneParams, **kwargs: Any) -> FitResult:
    """Fine-tune ``start`` on ``prompt -> target`` pairs with ``p``'s objective, steps, chunking
    and early stop; ``kwargs`` (``make_optimizer``, ``project``, ``total_loss``, ``lr``,
    ``steps``, ``early_stop_loss``) override."""
    batch = encode_batch(model, prompts, targets)
    lr = kwargs.pop("lr", p.lr)
    kwargs.setdefault("make_optimizer", adam(lr, p.weight_decay))
    kwargs.setdefault("steps", p.steps)
    kwargs.setdefault("early_stop_loss", p.early_stop_loss)
    return fit(model, start, batch, loss_for(p.objective), batch_size=p.batch_size, **kwargs)


def describe_fit(res: FitResult) -> dict[str, Any]:
    """JSON facts about one optimisation, for ``handle.meta``."""
    return {"first_loss": res.losses[0] if res.losses else None, "final_loss": res.final_loss,
            "passes": len(res.losses), "optimizer_steps": res.steps, "stopped_early": res.stopped_early}


class FineTuneEditor(kme.Editor):
    """Fine-tune chosen weights on the requests; subclasses implement :meth:`train_weights`."""

    Params: ClassVar[type[kme.Params]] = FineTuneParams
    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True)

    def check_model(self, model: "EditedModel") -> None:
        """Layers in range (``layers[i]``) and parts the architecture has (``parts``)."""
        super().check_model(model)
        p: FineTuneParams = self.params  # type: ignore[assignment]
        select_weights(model, p.layers, p.parts, p.include_bias)

    def layers_for(self, model: "EditedModel", location: "Location | None") -> tuple[list[int], str]:
        """Explicit ``layers`` win; else a locator's best layer; else the preset's or default."""
        p: FineTuneParams = self.params  # type: ignore[assignment]
        if self.resolution is not None:
            source = str(self.resolution.sources.get("layers", "default"))
        else:
            source = "params" if "layers" in p.model_fields_set else "default"
        if source != "params" and location is not None and location.layers:
            return [model.check_layer(location.layers[0])], f"locator {location.locator}"
        return [model.check_layer(x) for x in p.layers], source

    def train_weights(self, model: "EditedModel", requests: list["EditRequest"], start: dict[str, torch.Tensor],
                      meta: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The new values of the ``start`` tensors (the current weights); record decisions in ``meta``."""
        raise NotImplementedError

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        p: FineTuneParams = self.params  # type: ignore[assignment]
        layers, source = self.layers_for(model, location)
        names = select_weights(model, layers, p.parts, p.include_bias)
        start = {n: model.parameter(n).detach() for n in names}
        meta: dict[str, Any] = {"layers": layers, "layers_source": source, "trained": names}
        t0 = time.perf_counter()
        values = self.train_weights(model, requests, start, meta)
        meta["train_seconds"] = time.perf_counter() - t0
        handle = model.new_handle(self, requests)
        for n in names:
            handle.set_param(n, values[n])
        meta["max_abs_change"] = max(float(d.abs().max()) for d in handle.deltas.values()) if handle.deltas else 0.0
        handle.meta.update(meta)
        return handle


class ConstrainedFineTuneEditor(FineTuneEditor):
    """FT-L / FT-M: Adam on the edit's target-token loss, each weight clamped after every step
    into an L∞ ball of radius ``norm_constraint`` around its value before the edit."""

    Params: ClassVar[type[kme.Params]] = ConstrainedParams

    def train_weights(self, model: "EditedModel", requests: list["EditRequest"], start: dict[str, torch.Tensor],
                      meta: dict[str, Any]) -> dict[str, torch.Tensor]:
        p: ConstrainedParams = self.params  # type: ignore[assignment]
        project = None
        if p.norm_constraint is not None:
            originals = {n: t.to(torch.float32).clone() for n, t in start.items()}
            project = partial(linf_project, originals=originals, radius=p.norm_constraint)
        res = fit_requests(model, start, [r.text for r in requests], [r.target_new for r in requests], p,
                           project=project)
        meta.update(describe_fit(res))
        return res.values
