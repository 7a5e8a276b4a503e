"""The live GRACE codebook of one wrapped module, rebuilt from the edit handles that own it.

Every GRACE handle records what it did to the codebook as a list of operations (JSON, in
``handle.memory``) over its own tensors (``handle.state["keys"]``, ``handle.state["values"]``):

* ``add``: a new entry (key row, value row, deferral radius, label);
* ``set_eps``: change an existing entry's radius (expand or split, possibly an entry that an
  earlier edit added);
* ``set_value`` / ``set_key``: retrain an entry's value, move its key (expand by moving
  average).

The codebook is the replay of the operations of every attached, enabled handle in the order
they were applied. Undoing a handle removes its operations and replays the rest, so undo is
exact whatever order edits are undone in (an operation on an entry that no longer exists is
skipped); a patch carries the operations and tensors and replays to the same codebook.
Entries are named ``"<handle uid>:<n>"``; the uid travels in ``handle.meta`` so names survive
a patch round trip.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle

__all__ = ["Codebook", "codebook_for"]

_codebooks: "weakref.WeakKeyDictionary[Any, dict[tuple[int, str], Codebook]]" = weakref.WeakKeyDictionary()


def codebook_for(model: "EditedModel", layer: int, part: str) -> "Codebook":
    """The codebook wrapping ``part`` of block ``layer`` of ``model`` (created on first use)."""
    books = _codebooks.setdefault(model, {})
    key = (layer, part)
    if key not in books:
        books[key] = Codebook(model, layer, part)
    return books[key]


class Codebook:
    """Keys, values, radii and labels at one module, and the forward hook that applies them.

    The hook compares the module's input at every token position with the keys (Euclidean
    distance) and, where the nearest key is within its radius, replaces the module's output at
    that position by the key's value. Applied position by position, this is GRACE's
    "replace last" rule for every prefix of the sequence at once, so teacher-forced scoring
    and step-by-step generation see the same edits.
    """

    def __init__(self, model: "EditedModel", layer: int, part: str):
        self.model_ref = weakref.ref(model)
        self.layer = layer
        self.part = part
        self.module = model.layout.module(model.model, layer, part)  # type: ignore[arg-type]
        self.handles: list[EditHandle] = []
        self.disabled: set[int] = set()
        self.hook: Any = None
        self.bypass = False
        self.override: tuple[int, torch.Tensor] | None = None  # (position, value) while training
        self.captured: tuple[torch.Tensor, torch.Tensor] | None = None
        self.capture = False
        self.keys = torch.empty(0)
        self.values = torch.empty(0)
        self.eps = torch.empty(0)
        self.labels: list[str] = []
        self.refs: list[str] = []

    # -- membership ---------------------------------------------------------------------
    def attach(self, handle: "EditHandle") -> None:
        if handle in self.handles:
            return
        self.handles.append(handle)
        if self.hook is None:
            self.hook = self.module.register_forward_hook(self._forward)
        self.rebuild()

    def detach(self, handle: "EditHandle") -> None:
        if handle in self.handles:
            self.handles.remove(handle)
        self.disabled.discard(id(handle))
        if not self.handles and self.hook is not None:
            self.hook.remove()
            self.hook = None
        self.rebuild()

    def set_enabled(self, handle: "EditHandle", enabled: bool) -> None:
        (self.disabled.discard if enabled else self.disabled.add)(id(handle))
        self.rebuild()

    # -- replay -------------------------------------------------------------------------
    def rebuild(self) -> None:
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        eps: list[float] = []
        labels: list[str] = []
        refs: list[str] = []
        index: dict[str, int] = {}
        for h in self.handles:
            if id(h) in self.disabled:
                continue
            k_state, v_state = h.state.get("keys"), h.state.get("values")
            for op in h.memory:
                kind = op["op"]
                if kind == "add":
                    index[op["ref"]] = len(refs)
                    refs.append(op["ref"])
                    keys.append(k_state[op["key"]].float())
                    values.append(v_state[op["value"]].float())
                    eps.append(float(op["eps"]))
                    labels.append(op["label"])
                    continue
                i = index.get(op["ref"])
                if i is None:  # the entry belonged to an edit that has been undone
                    continue
                if kind == "set_eps":
                    eps[i] = float(op["eps"])
                elif kind == "set_value":
                    values[i] = v_state[op["value"]].float()
                elif kind == "set_key":
                    keys[i] = k_state[op["key"]].float()
        self.refs, self.labels = refs, labels
        if refs:
            self.keys = torch.stack(keys)
            self.values = torch.stack(values)
            self.eps = torch.tensor(eps, dtype=torch.float32)
        else:
            self.keys = self.values = self.eps = torch.empty(0)

    def __len__(self) -> int:
        return len(self.refs)

    def nearest(self, query: torch.Tensor) -> tuple[int, float] | None:
        """Index of and distance to the key nearest ``query`` (``None`` when empty)."""
        if not self.refs:
            return None
        d = torch.cdist(query.float()[None].to(self.keys.device), self.keys)[0]
        i = int(d.argmin())
        return i, float(d[i])

    # -- the hook -----------------------------------------------------------------------
    def _forward(self, module: torch.nn.Module, inputs: tuple, output: Any) -> Any:
        x = inputs[0]
        out = output[0] if isinstance(output, tuple) else output
        if self.capture:
            self.captured = (x.detach().clone(), out.detach().clone())
        if self.bypass or (not self.refs and self.override is None):
            return None
        new = out
        if self.refs:
            flat = x.reshape(-1, x.shape[-1]).float()
            keys = self.keys.to(flat.device)
            d = torch.cdist(flat, keys)
            dist, idx = d.min(-1)
            hit = dist <= self.eps.to(flat.device)[idx]
            if bool(hit.any()):
                vals = self.values.to(device=out.device, dtype=out.dtype)[idx]
                new = torch.where(hit.view(*out.shape[:-1], 1), vals.view(out.shape), out)
        if self.override is not None:
            pos, value = self.override
            new = new.clone()
            new[:, pos] = value.to(new.dtype)
        if new is out:
            return None
        return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new
