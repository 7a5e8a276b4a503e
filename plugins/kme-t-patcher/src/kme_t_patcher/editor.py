"""The T-Patcher editor: one patch neuron per edit, trained with the paper's three losses.

    L = L_edit + a * L_act + m * (L_mem1 + L_mem2)

* ``L_edit``: cross-entropy of the new object's tokens after the edit prompt;
* ``L_act``: the patch must be active where the target is predicted: mean of the top-k of
  exp(margin_act - a_t) over those positions (a_t the patch's pre-activation);
* ``L_mem1``: the patch must be less active on every memory input than on the edit by
  ``memory_margin``: top-k mean of exp(a_mem - a_edit + memory_margin);
* ``L_mem2``: the patch must be inactive on memory inputs: top-k mean of
  exp(a_mem - inactive_margin) (``inactive_margin`` is negative).

Defaults follow the reference implementation (Adam lr 1e-2, a = 1, m = 5, margins 0, 3, -3,
top-5 activation and top-1000 memory terms, key initialised to h / |h|^2 so that the patch
starts with activation 1 on the edit). Edits of one batch get one patch each, trained one
after the other as in the paper's sequential setting; later patches see the earlier ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

import kme
from kme import KmeError

from kme_t_patcher.memory import ffn_inputs, memory_texts
from kme_t_patcher.patches import PatchNeurons

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["TPatcherEditor", "TPatcherParams"]


class TPatcherParams(kme.Params):
    layer: int = Field(-1, description="block whose FFN gets the patches (default: the last, as in the paper)")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate")
    weight_decay: float = Field(0.01, ge=0, description="Adam L2 weight decay of the patch")
    steps: int = Field(150, ge=1, description="at most this many optimisation steps per patch")
    act_weight: float = Field(1.0, ge=0, description="weight a of the activation loss")
    act_margin: float = Field(0.0, description="the patch's pre-activation on the edit should exceed this")
    act_topk: int = Field(5, ge=1, description="activation loss: mean of the k largest terms")
    act_stop: float = Field(0.1, gt=0, description="stop once the edit is predicted, the patch is silent on "
                                                   "the memory set and the activation loss is below this")
    memory_weight: float = Field(5.0, ge=0, description="weight m of the memory loss")
    memory_margin: float = Field(3.0, ge=0, description="edit activation minus any memory activation should "
                                                        "exceed this")
    inactive_margin: float = Field(-3.0, le=0, description="memory activations should stay below this")
    memory_topk: int = Field(1000, ge=1, description="memory loss: mean of the k largest terms")
    value_scale: float = Field(10.0, gt=0, description="amplification of the value vector")
    memory_texts: list[str] | None = Field(None, description="texts whose tokens form the memory set")
    memory_file: str | None = Field(None, description="text file, one memory text per line")
    memory_samples: int = Field(64, ge=0, description="without texts or file: this many texts sampled "
                                                      "from the model itself")
    memory_sample_tokens: int = Field(32, ge=1, description="length of each sampled memory text")
    memory_size: int = Field(4096, ge=1, description="at most this many memory token states")
    seed: int = Field(0, description="seed of the memory samples")


def _ids(model: "EditedModel", r: "EditRequest") -> tuple[list[int], list[int]]:
    pids = model.tokenizer(r.text, add_special_tokens=True)["input_ids"]
    tids = model.target_ids(r.text, r.target_new)
    if not pids or not tids:
        raise KmeError(f"request {r.case_id!r}: prompt or target encodes to no tokens")
    return pids, tids


def _topk_mean(x: "torch.Tensor", k: int) -> "torch.Tensor":
    import torch

    x = x.reshape(-1)
    if x.numel() == 0:
        return torch.zeros((), device=x.device)
    return torch.topk(x, min(k, x.numel())).values.mean()


class TPatcherEditor(kme.Editor):
    name = "t-patcher"
    description = ("T-Patcher: one trainable patch neuron per edit appended to the last FFN layer, with "
                   "activation and memory losses; base weights untouched (Huang et al., 2023)")
    Params = TPatcherParams
    capabilities = kme.Capabilities(kind="extension", batch=True, sequential=True)

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        import torch

        p: TPatcherParams = self.params  # type: ignore[assignment]
        layer = model.check_layer(p.layer)
        module = model.layout.module(model.model, layer, "mlp")
        d = int(model.model.config.hidden_size)
        handle = model.new_handle(self, requests)
        handle.meta["t_patcher"] = {"layer": layer, "value_scale": p.value_scale}
        dev = model.device
        patches = PatchNeurons(module, torch.empty(0, d, device=dev), torch.empty(0, device=dev),
                               torch.empty(0, d, device=dev), p.value_scale)
        patches.bind(handle)

        texts = memory_texts(model, p.memory_texts, p.memory_file, p.memory_samples, p.memory_sample_tokens,
                             p.seed)
        memory = ffn_inputs(model, module, texts, p.memory_size).to(dev)
        batch = [(r, *_ids(model, r)) for r in requests]
        # the other edits' prompts must not fire a patch either
        last_states = [self._edit_state(model, module, pids + tids, len(pids) - 1, len(tids))[0]
                       for _, pids, tids in batch]
        report = []
        for j, (r, pids, tids) in enumerate(batch):
            others = [s for i, s in enumerate(last_states) if i != j]
            mem = torch.cat([memory] + [o.to(dev) for o in others]) if others else memory
            report.append(self._train_patch(model, module, patches, pids, tids, mem))
        handle.state = {"keys": patches.keys.detach().cpu(), "bias": patches.bias.detach().cpu(),
                        "values": patches.values.detach().cpu()}
        handle.meta["t_patcher"].update(memory_texts=len(texts), memory_states=int(memory.shape[0]), patches=report)
        return handle

    def restore(self, model: "EditedModel", handle: "EditHandle") -> None:
        info = handle.meta.get("t_patcher")
        if not info or not {"keys", "bias", "values"} <= set(handle.state):
            raise KmeError("a T-Patcher edit in this patch lacks its layer or its keys/bias/values tensors",
                           hint="re-create the patch with this version of kme-t-patcher")
        module = model.layout.module(model.model, model.check_layer(int(info["layer"])), "mlp")
        dev = model.device
        patches = PatchNeurons(module, handle.state["keys"].to(dev), handle.state["bias"].to(dev),
                               handle.state["values"].to(dev), float(info["value_scale"]))
        patches.bind(handle)

    # -- one patch ----------------------------------------------------------------------------
    @staticmethod
    def _edit_state(model: "EditedModel", module: "torch.nn.Module", ids: list[int], pos: int,
                    n: int) -> tuple["torch.Tensor", "torch.Tensor"]:
        """FFN input at the prompt's last token, and at every position predicting a target token."""
        import torch

        got: list[torch.Tensor] = []
        hook = module.register_forward_hook(lambda m, i, o: got.append(i[0].detach()))
        try:
            with torch.no_grad():
                t = torch.tensor([ids], device=model.device)
                model.model(input_ids=t, attention_mask=torch.ones_like(t))
        finally:
            hook.remove()
        x = got[0][0].float()
        return x[pos:pos + 1], x[pos:pos + n]

    def _train_patch(self, model: "EditedModel", module: "torch.nn.Module", patches: PatchNeurons,
                     pids: list[int], tids: list[int], memory: "torch.Tensor") -> dict[str, Any]:
        import torch

        from kme_editlib.hooks import frozen_params

        p: TPatcherParams = self.params  # type: ignore[assignment]
        dev = model.device
        pos = len(pids) - 1
        h_last, h_edit = self._edit_state(model, module, pids + tids, pos, len(tids))
        h = h_last[0]
        key = (h / h.pow(2).sum().clamp_min(1e-12)).clone().requires_grad_(True)  # activation 1 on the edit
        bias = torch.zeros(1, device=dev, requires_grad=True)
        value = torch.zeros(h.shape[0], device=dev, requires_grad=True)
        old_k, old_b, old_v = patches.keys.detach(), patches.bias.detach(), patches.values.detach()
        opt = torch.optim.Adam([key, bias, value], lr=p.lr, weight_decay=p.weight_decay)
        ids = torch.tensor([pids + tids], device=dev)
        target = torch.tensor(tids, device=dev)
        rows = torch.arange(pos, pos + len(tids), device=dev)
        mask = torch.ones_like(ids)
        steps = 0
        info: dict[str, Any] = {}
        with frozen_params(model):
            for steps in range(1, p.steps + 1):
                patches.keys = torch.cat([old_k, key[None]])
                patches.bias = torch.cat([old_b, bias])
                patches.values = torch.cat([old_v, value[None]])
                logits = model.model(input_ids=ids, attention_mask=mask).logits[0, rows].float()
                l_edit = torch.nn.functional.cross_entropy(logits, target)
                a_edit = h_edit @ key + bias
                l_act = _topk_mean(torch.exp((p.act_margin - a_edit).clamp(max=50)), p.act_topk)
                l_mem = torch.zeros((), device=dev)
                if memory.numel():
                    a_mem = memory @ key + bias
                    l_mem1 = _topk_mean(torch.exp((a_mem[:, None] - a_edit[None, :] + p.memory_margin).clamp(max=50)),
                                        p.memory_topk)
                    l_mem2 = _topk_mean(torch.exp((a_mem - p.inactive_margin).clamp(max=50)), p.memory_topk)
                    l_mem = l_mem1 + l_mem2
                correct = bool((logits.argmax(-1) == target).all())
                silent = not memory.numel() or float(a_mem.detach().max()) < min(0.0, float(a_edit.detach().min()))
                info = {"steps": steps, "edit_loss": round(float(l_edit.detach()), 5),
                        "act_loss": round(float(l_act.detach()), 5), "memory_loss": round(float(l_mem.detach()), 5),
                        "edit_correct": correct, "min_edit_activation": round(float(a_edit.detach().min()), 4),
                        "max_memory_activation": round(float(a_mem.detach().max()), 4) if memory.numel() else None}
                if correct and silent and info["act_loss"] < p.act_stop:
                    break
                loss = l_edit + p.act_weight * l_act + p.memory_weight * l_mem
                opt.zero_grad()
                loss.backward()
                opt.step()
        patches.keys = torch.cat([old_k, key.detach()[None]])
        patches.bias = torch.cat([old_b, bias.detach()])
        patches.values = torch.cat([old_v, value.detach()[None]])
        return info
