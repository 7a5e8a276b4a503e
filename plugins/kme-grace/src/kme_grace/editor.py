"""The GRACE editor: for each edit, find the nearest codebook key, then add, expand or split
(the paper's Algorithm 1), and train the value that makes the model produce the new object."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

import kme
from kme import KmeError

from kme_grace.codebook import Codebook, codebook_for

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["GraceEditor", "GraceParams"]


class GraceParams(kme.Params):
    layer: int = Field(-2, description="block whose module the codebook wraps (negative counts from the end); "
                                       "a locator's first layer overrides it")
    module: Literal["mlp_out", "mlp"] = Field(
        "mlp_out", description="mlp_out: wrap the MLP's output projection (key = the neuron activations); "
                               "mlp: wrap the whole MLP (key = the normalised hidden state entering it)")
    epsilon: float = Field(1.0, gt=0, description="initial deferral radius of a new key (Euclidean, in the units "
                                                  "of the key activations)")
    expand: Literal["coverage", "moving_average"] = Field(
        "coverage", description="same label near an existing key: grow its radius to reach the new key "
                                "(coverage) or also move the key half way towards it (moving_average)")
    value_init: Literal["warm", "cold"] = Field(
        "warm", description="warm: start from the module's own output for the edit; cold: uniform random")
    lr: float = Field(0.5, gt=0, description="Adam learning rate of the value")
    steps: int = Field(100, ge=1, description="at most this many optimisation steps per edit")
    stop_loss: float = Field(1e-2, ge=0, description="stop training a value once the target's mean negative "
                                                     "log-likelihood is below this and every token is top-1")
    seed: int = Field(0, description="seed of cold value initialisation")


def _targets(model: "EditedModel", r: "EditRequest") -> tuple[list[int], list[int]]:
    prompt = r.text
    pids = model.tokenizer(prompt, add_special_tokens=True)["input_ids"]
    tids = model.target_ids(prompt, r.target_new)
    if not pids:
        raise KmeError(f"request {r.case_id!r}: prompt {prompt!r} encodes to no tokens")
    if not tids:
        raise KmeError(f"request {r.case_id!r}: target {r.target_new!r} encodes to no tokens")
    return pids, tids


class GraceEditor(kme.Editor):
    name = "grace"
    description = ("GRACE: a discrete key-value codebook with deferral radii wrapping one layer; lifelong "
                   "sequential edits, base weights untouched (Hartvigsen et al., 2023)")
    Params = GraceParams
    capabilities = kme.Capabilities(kind="extension", batch=True, sequential=True)

    # -- editing --------------------------------------------------------------------------
    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        import torch

        p: GraceParams = self.params  # type: ignore[assignment]
        layer = location.layers[0] if location is not None and location.layers else p.layer
        layer = model.check_layer(layer)
        book = codebook_for(model, layer, p.module)
        handle = model.new_handle(self, requests)
        handle.meta["grace"] = {"uid": uuid.uuid4().hex[:12], "layer": layer, "module": p.module}
        handle.state = {"keys": torch.empty(0), "values": torch.empty(0)}
        self._attach(book, handle)
        gen = torch.Generator().manual_seed(p.seed)
        stats = {"added": 0, "expanded": 0, "split": 0, "final_losses": []}
        for r in requests:
            self._edit_one(model, book, handle, r, gen, stats)
        handle.meta["grace"].update(added=stats["added"], expanded=stats["expanded"], split=stats["split"],
                                    codebook_size=len(book), final_losses=stats["final_losses"])
        return handle

    def restore(self, model: "EditedModel", handle: "EditHandle") -> None:
        info = handle.meta.get("grace")
        if not info:
            raise KmeError("a GRACE edit in this patch has no 'grace' metadata (layer, module, uid)",
                           hint="re-create the patch with this version of kme-grace")
        book = codebook_for(model, model.check_layer(int(info["layer"])), info["module"])
        self._attach(book, handle)

    @staticmethod
    def _attach(book: Codebook, handle: "EditHandle") -> None:
        book.attach(handle)
        handle.on_undo(lambda: book.detach(handle))
        handle.on_toggle(lambda enabled: book.set_enabled(handle, enabled))

    # -- one edit ---------------------------------------------------------------------------
    def _edit_one(self, model: "EditedModel", book: Codebook, handle: "EditHandle", r: "EditRequest",
                  gen: "torch.Generator", stats: dict[str, Any]) -> None:
        import torch

        p: GraceParams = self.params  # type: ignore[assignment]
        pids, tids = _targets(model, r)
        pos = len(pids) - 1
        ids = torch.tensor([pids + tids], device=model.device)
        query, original = self._capture(model, book, ids, pos)
        label = r.target_new.strip()
        uid = handle.meta["grace"]["uid"]
        ops = handle.memory
        near = book.nearest(query)
        trained_ref: str | None = None  # an existing entry whose value is retrained (expand)
        new_eps = p.epsilon
        if near is None or near[1] > p.epsilon + float(book.eps[near[0]]):
            action = "add"
        elif book.labels[near[0]] != label:
            action = "split"  # conflicting label: both radii become half the distance
            i, d = near
            ops.append({"op": "set_eps", "ref": book.refs[i], "eps": d / 2 - 1e-5})
            new_eps = d / 2
        else:
            action = "expand"
            i, d = near
            trained_ref = book.refs[i]
            if d > float(book.eps[i]):
                ops.append({"op": "set_eps", "ref": trained_ref, "eps": d})
            if p.expand == "moving_average":
                moved = 0.5 * book.keys[i] + 0.5 * query.float().cpu()
                ops.append({"op": "set_key", "ref": trained_ref, "key": self._push(handle, "keys", moved)})
        book.rebuild()
        if trained_ref is not None:
            init = book.values[book.refs.index(trained_ref)].clone()
        elif p.value_init == "warm":
            init = original.float().cpu()
        else:
            init = torch.rand(original.shape[-1], generator=gen)
        value, loss = self._train_value(model, book, ids, pos, tids, init)
        v_row = self._push(handle, "values", value)
        if trained_ref is not None:
            ops.append({"op": "set_value", "ref": trained_ref, "value": v_row, "case_id": r.case_id})
        else:
            k_row = self._push(handle, "keys", query.float().cpu())
            n_added = sum(1 for o in ops if o["op"] == "add")
            ops.append({"op": "add", "ref": f"{uid}:{n_added}", "key": k_row, "value": v_row, "eps": new_eps,
                        "label": label, "case_id": r.case_id})
        book.rebuild()
        stats[{"add": "added", "expand": "expanded", "split": "split"}[action]] += 1
        stats["final_losses"].append(round(loss, 5))

    @staticmethod
    def _push(handle: "EditHandle", name: str, row: "torch.Tensor") -> int:
        import torch

        cur = handle.state.get(name)
        row = row.detach().float().cpu()[None]
        handle.state[name] = row if cur is None or cur.numel() == 0 else torch.cat([cur, row])
        return int(handle.state[name].shape[0]) - 1

    @staticmethod
    def _capture(model: "EditedModel", book: Codebook, ids: "torch.Tensor",
                 pos: int) -> tuple["torch.Tensor", "torch.Tensor"]:
        """The module's input (the query key) and its unedited output at ``pos``."""
        import torch

        hook_added = book.hook is None
        if hook_added:
            book.hook = book.module.register_forward_hook(book._forward)
        book.capture, book.bypass = True, True
        try:
            with torch.no_grad():
                model.model(input_ids=ids, attention_mask=torch.ones_like(ids))
            assert book.captured is not None
            x, out = book.captured
        finally:
            book.capture, book.bypass, book.captured = False, False, None
            if hook_added:
                book.hook.remove()
                book.hook = None
        return x[0, pos], out[0, pos]

    def _train_value(self, model: "EditedModel", book: Codebook, ids: "torch.Tensor", pos: int,
                     tids: list[int], init: "torch.Tensor") -> tuple["torch.Tensor", float]:
        """Gradient descent on the value placed at the key's position, base weights frozen."""
        import torch

        from kme_editlib.hooks import frozen_params

        p: GraceParams = self.params  # type: ignore[assignment]
        dev = model.device
        value = init.detach().clone().float().to(dev).requires_grad_(True)
        opt = torch.optim.Adam([value], lr=p.lr)
        target = torch.tensor(tids, device=dev)
        rows = torch.arange(pos, pos + len(tids), device=dev)
        mask = torch.ones_like(ids)
        loss_val = float("inf")
        with frozen_params(model):
            try:
                for _ in range(p.steps):
                    book.override = (pos, value)
                    logits = model.model(input_ids=ids, attention_mask=mask).logits[0, rows].float()
                    loss = torch.nn.functional.cross_entropy(logits, target)
                    loss_val = float(loss.detach())
                    if loss_val < p.stop_loss and bool((logits.argmax(-1) == target).all()):
                        break
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            finally:
                book.override = None
        return value.detach().cpu(), loss_val
