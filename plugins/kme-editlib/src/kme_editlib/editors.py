"""Editor base classes of the locate-and-edit family.

- :class:`CovarianceEditor`: what every editor reading the key statistics ``C = E[k kᵀ]``
  declares (ROME, MEMIT, PMET, AlphaEdit): its capabilities, and a ``check_model`` that
  resolves the statistics corpus before any edit;
- :class:`MultiLayerEditor`: MEMIT's edit (MEMIT Alg. 1) -- critical layers, key
  statistics, target vectors at the top critical layer optimised for the whole batch, then
  :func:`kme_editlib.multilayer.insert_over_layers` -- with the steps PMET and AlphaEdit
  change as methods: :meth:`~MultiLayerEditor.target_points`,
  :meth:`~MultiLayerEditor.solver`, :attr:`~MultiLayerEditor.spread`,
  :meth:`~MultiLayerEditor.finish` and :meth:`~MultiLayerEditor.record`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import kme

from kme_editlib.defaults import mom2_update_weight, param_source
from kme_editlib.multilayer import Solver, even_spread, insert_over_layers
from kme_editlib.params import MultiLayerParams

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditHandle, EditRequest, Location

    from kme_editlib.targets import TargetResult

__all__ = ["CovarianceEditor", "MultiLayerEditor"]

Point = tuple[int, str]


class CovarianceEditor(kme.Editor):
    """A parametric, batched, sequential editor that needs the key statistics; its params
    are a :class:`kme_editlib.params.StatsParams`."""

    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True)

    def check_model(self, model: "EditedModel") -> None:
        super().check_model(model)
        self.params.check_stats(model)  # type: ignore[attr-defined]


class MultiLayerEditor(CovarianceEditor):
    """MEMIT's edit; a subclass sets ``name``, ``description``, ``Params`` (a
    :class:`~kme_editlib.params.MultiLayerParams`) and overrides the steps its method changes."""

    Params = MultiLayerParams
    spread: Callable[[int], float] = staticmethod(even_spread)
    """The share of the remaining residual each critical layer writes (MEMIT: ``1/n``)."""

    def target_points(self, top: int) -> tuple[list[Point], Point]:
        """The points whose vectors are optimised at the top critical layer ``top``, and the
        one whose target the layers are solved for (MEMIT: the residual stream after block ``top``)."""
        return [(top, "block")], (top, "block")

    def solver(self, model: "EditedModel", layers: list[int],
               covs: dict[int, "torch.Tensor | None"]) -> tuple[Solver, dict[str, Any]]:
        """``solve(layer, K [d_ff, n], R [d, n]) -> Δ`` and what to record about it (after the
        statistics in the edit's meta). MEMIT: ``Δ = R Kᵀ (λ C + K Kᵀ)⁻¹``, λ from params,
        preset or rule. ``C`` is factorised once (:func:`kme_editlib.factors.cov_factor`), so
        each edit solves only an ``n × n`` system."""
        from kme_editlib.factors import cov_factor, factor_meta
        from kme_editlib.solvers import mass_update

        p: MultiLayerParams = self.params  # type: ignore[assignment]
        lam, lam_source = mom2_update_weight(model, p.mom2_update_weight, layers[0],
                                             param_source(self, "mom2_update_weight"))
        infos: dict[int, dict] = {layer: {} for layer in layers if covs[layer] is not None}
        factors = {layer: cov_factor(covs[layer], info=infos[layer]) for layer in infos}  # type: ignore[arg-type]
        return (lambda layer, K, R: mass_update(K, R, covs[layer], lam, factor=factors.get(layer)),
                {"mom2_update_weight": lam, "mom2_update_weight_source": lam_source, **factor_meta(infos)})

    def finish(self, model: "EditedModel", handle: "EditHandle", requests: list["EditRequest"], layers: list[int],
               prefixes: list[str]) -> None:
        """Runs after every critical layer is updated (MEMIT: nothing)."""

    def record(self, model: "EditedModel", res: "TargetResult", layers: list[int],
               covs: dict[int, "torch.Tensor | None"]) -> dict[str, Any]:
        """What the edit's meta holds after ``per_layer`` (before ``per_request``)."""
        return {"z_loss_mean": sum(res.loss) / len(res.loss)}

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        from kme_editlib.targets import optimise_targets

        p: MultiLayerParams = self.params  # type: ignore[assignment]
        layers, source = p.critical_layers(model, location, param_source(self, "layers"))
        t0 = time.perf_counter()
        stats: dict = {}
        covs = p.second_moments(model, layers, info=stats)
        solve, solver_meta = self.solver(model, layers, covs)
        t1 = time.perf_counter()
        prefixes = p.prefixes(model)
        points, point = self.target_points(layers[-1])
        res = optimise_targets(model, requests, points, prefixes, p.target_config(), progress=p.progress)
        t2 = time.perf_counter()
        handle = model.new_handle(self, requests)
        per_layer = insert_over_layers(model, handle, requests, layers, point, res.target(point), prefixes,
                                       p.fact_token, solve=solve, spread=self.spread,
                                       key_groups=p.key_groups(prefixes))
        self.finish(model, handle, requests, layers, prefixes)
        handle.meta.update({
            "layers": layers, "layer_source": source, "statistics": stats, **solver_meta,
            "stats_seconds": t1 - t0, "z_seconds": t2 - t1, "solve_seconds": time.perf_counter() - t2,
            "per_layer": per_layer, **self.record(model, res, layers, covs), "per_request": res.per_request(),
        })
        return handle
