"""Per-token factors of a linear layer's gradient, captured with hooks, never the gradient.

For a linear map ``y = W x`` applied at every token, the gradient of a loss with respect to
``W`` is ``Σ_t δ_t u_tᵀ``: a sum of rank-1 terms, one per token, of the layer's *input*
``u_t`` and the gradient of the loss with respect to its *output* ``δ_t``. Gradient-based
editors (MEND, KE-style hypernetworks) need only these factors. :func:`capture_factors` runs a
forward pass with hooks that record ``u`` at the chosen modules and takes ``δ`` with
``torch.autograd.grad`` against the recorded outputs, so no parameter gradient is ever
formed: the memory cost is ``tokens × (d_in + d_out)`` per module instead of ``d_in × d_out``
per module plus a gradient for every other weight of the model.

:class:`LowRankDelta` goes the other way: it adds ``x ↦ x Uᵀ D`` (the effect of the weight
change ``Σ_t u_t δ̃_tᵀ`` without forming it) to a module's output, per group of rows, so a
training loop can evaluate many independently edited copies of a model in one batched pass.

Conventions: factors are stored as ``u: [tokens, d_in]`` and ``delta: [tokens, d_out]`` for
both weight conventions; :func:`weight_delta` turns them into a parameter-shaped change for
an ``nn.Linear`` (``[out, in]``) or a GPT-2 ``Conv1D`` (``[in, out]``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["Factors", "EditTarget", "edit_targets", "capture_factors", "weight_delta", "LowRankDelta",
           "frozen_parameters", "module_of"]


@dataclass
class Factors:
    """The rank-1 factors of one module's gradient: one row per contributing token.

    ``u[t]`` is the module's input at token ``t`` and ``delta[t]`` the loss's gradient with
    respect to the module's output there; ``row[t]`` is the batch row the token came from
    (to tell edits apart in a batch). Tokens whose ``u`` or ``delta`` is all zero (padding,
    positions after the last labelled token) are dropped."""

    u: torch.Tensor
    delta: torch.Tensor
    row: torch.Tensor

    def __len__(self) -> int:
        return int(self.u.shape[0])

    def gradient(self, conv1d: bool) -> torch.Tensor:
        """The full gradient ``Σ_t δ_t u_tᵀ`` in the weight's own layout (for checks and
        small models only: this is what the factors exist to avoid)."""
        return weight_delta(self.u, self.delta, conv1d)

    def select(self, rows: torch.Tensor | Sequence[int]) -> "Factors":
        """The factors of the tokens that came from batch ``rows``."""
        rows_t = torch.as_tensor(rows, device=self.row.device)
        keep = torch.isin(self.row, rows_t)
        return Factors(self.u[keep], self.delta[keep], self.row[keep])


@dataclass(frozen=True)
class EditTarget:
    """A weight an editor changes: parameter ``name`` of module ``module_name`` (block
    ``layer``, layout ``part``), with its input/output widths and storage convention."""

    name: str
    module_name: str
    layer: int
    part: str
    d_in: int
    d_out: int
    conv1d: bool

    @property
    def shape_key(self) -> str:
        """``"<d_in>x<d_out>"``: weights with equal keys can share one network."""
        return f"{self.d_in}x{self.d_out}"


def edit_targets(model: "EditedModel", layers: Sequence[int], parts: Sequence[str] = ("mlp_in", "mlp_out")
                 ) -> list[EditTarget]:
    """The weights of ``parts`` in blocks ``layers``, in that order (layer-major). Parts a
    layout does not have (``mlp_gate`` on GPT-2) are skipped; ``mlp_gate`` is added after
    ``mlp_in`` on gated MLPs when ``mlp_in`` is asked for, since both read the same input."""
    out: list[EditTarget] = []
    layout = model.layout
    for layer in layers:
        layer = model.check_layer(layer)
        wanted = list(parts)
        if "mlp_in" in wanted and getattr(layout, "mlp_gate", None) and "mlp_gate" not in wanted:
            wanted.insert(wanted.index("mlp_in") + 1, "mlp_gate")
        for part in wanted:
            if getattr(layout, part, None) is None:
                continue
            pname = model.weight_name(layer, part)
            p = model.parameter(pname)
            if p.dim() != 2:
                continue
            module_name = pname.rsplit(".", 1)[0]
            conv1d = bool(getattr(layout, "conv1d", False))
            d_in, d_out = (p.shape[0], p.shape[1]) if conv1d else (p.shape[1], p.shape[0])
            out.append(EditTarget(pname, module_name, layer, part, int(d_in), int(d_out), conv1d))
    return out


def module_of(model: "EditedModel | torch.nn.Module", module_name: str) -> torch.nn.Module:
    """The submodule called ``module_name`` (a dotted path as in ``named_modules``)."""
    net = model.model if hasattr(model, "model") and hasattr(model, "layout") else model
    return net.get_submodule(module_name)  # type: ignore[union-attr]


@contextlib.contextmanager
def frozen_parameters(module: torch.nn.Module) -> Iterator[None]:
    """Switch ``requires_grad`` off on every parameter of ``module`` (restored on exit), so a
    backward pass through it forms no parameter gradient."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def capture_factors(net: torch.nn.Module, modules: Mapping[str, torch.nn.Module],
                    loss_fn: Callable[[], torch.Tensor], *, token_mask: torch.Tensor | None = None
                    ) -> tuple[dict[str, Factors], torch.Tensor]:
    """Run ``loss_fn()`` (a forward pass of ``net`` returning a scalar loss) with hooks on
    ``modules`` and return each module's per-token factors and the loss (detached).

    No parameter gradient is formed: ``δ`` comes from ``torch.autograd.grad`` with respect to
    the hooked modules' outputs only. Works whether or not ``net``'s parameters require
    grad (with them frozen, the lowest hooked output becomes the leaf the gradient stops at).
    ``token_mask`` (``[batch, seq]``, e.g. the attention mask) drops padding tokens; tokens
    with an all-zero ``u`` or ``δ`` are dropped as well."""
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    handles = []

    def hook(name: str) -> Callable[..., Any]:
        def fn(mod: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
            inputs[name] = args[0].detach()
            replaced = None
            if not out.requires_grad:
                out = out.detach().requires_grad_(True)
                replaced = out
            outputs[name] = out
            return replaced

        return fn

    for name, mod in modules.items():
        handles.append(mod.register_forward_hook(hook(name)))
    try:
        with torch.enable_grad():
            loss = loss_fn()
            missing = [n for n in modules if n not in outputs]
            if missing:
                raise RuntimeError(f"modules {missing} did not run in the forward pass")
            names = list(modules)
            grads = torch.autograd.grad(loss, [outputs[n] for n in names], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    out: dict[str, Factors] = {}
    for name, g in zip(names, grads):
        x = inputs[name]
        if g is None:
            g = torch.zeros_like(outputs[name])
        u = x.reshape(-1, x.shape[-1]).float()
        d = g.detach().reshape(-1, g.shape[-1]).float()
        rows = torch.arange(x.shape[0], device=x.device).repeat_interleave(x.shape[1]) if x.dim() == 3 \
            else torch.arange(u.shape[0], device=x.device)
        keep = (u != 0).any(-1) & (d != 0).any(-1)
        if token_mask is not None and x.dim() == 3:
            keep &= token_mask.reshape(-1).to(keep.device).bool()
        out[name] = Factors(u[keep], d[keep], rows[keep])
    return out, loss.detach()


def weight_delta(u: torch.Tensor, delta: torch.Tensor, conv1d: bool) -> torch.Tensor:
    """``Σ_t u_t δ_tᵀ`` laid out as the weight: ``[in, out]`` for a Conv1D, ``[out, in]`` for
    an ``nn.Linear``. This forms a weight-sized matrix: use it once per edit, not per token."""
    return u.T @ delta if conv1d else delta.T @ u


class LowRankDelta:
    """Add a low-rank weight change to modules' outputs without forming it.

    ``set(name, u, delta, scale, groups)``: for module ``name``, rows of the batch in group
    ``g`` get ``scale · (x Uᵍᵀ) Dᵍ`` added to the output, where ``Uᵍ: [tokens, d_in]`` and
    ``Dᵍ: [tokens, d_out]`` are group ``g``'s (padded) factors — the output change of the
    weight change ``scale · Σ_t u_t δ_tᵀ``. ``u``/``delta`` are ``[groups, tokens, d]``
    (zero rows for padding); ``groups`` is the ``[batch]`` group index of each input row.
    Gradients flow into ``u``, ``delta`` and ``scale`` (a tensor), never into the weights.

    Use as a context manager around forward passes; hooks are removed on exit."""

    def __init__(self, net: torch.nn.Module, modules: Mapping[str, torch.nn.Module]):
        self.net = net
        self.modules = dict(modules)
        self._terms: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._groups: torch.Tensor | None = None
        self._handles: list[Any] = []

    def set(self, name: str, u: torch.Tensor, delta: torch.Tensor, scale: torch.Tensor) -> None:
        if name not in self.modules:
            raise KeyError(name)
        self._terms[name] = (u, delta, scale)

    def clear(self) -> None:
        self._terms.clear()

    def groups(self, groups: torch.Tensor | None) -> None:
        """The group of each row of the next forward passes' batch (None: no change)."""
        self._groups = groups

    def __enter__(self) -> "LowRankDelta":
        for name, mod in self.modules.items():
            self._handles.append(mod.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, name: str) -> Callable[..., Any]:
        def fn(mod: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
            term = self._terms.get(name)
            if term is None or self._groups is None:
                return None
            u, d, scale = term
            x = args[0]
            ug, dg = u[self._groups], d[self._groups]  # [batch, tokens, d_in], [batch, tokens, d_out]
            coef = torch.einsum("bsi,bti->bst", x.to(ug.dtype), ug)
            change = torch.einsum("bst,bto->bso", coef, dg) * scale
            return out + change.to(out.dtype)

        return fn
