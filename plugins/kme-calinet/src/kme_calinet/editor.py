"""The CALINET editor: one calibration FFN per block and edit batch, trained on the batch's facts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

import kme
from kme import KmeError, pad_sequences

from kme_memlib.neurons import SideNeurons
from kme_memlib.sampling import sample_ids

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditHandle, EditRequest, Location

__all__ = ["CalinetEditor", "CalinetParams", "CalibrationSlots"]


class CalinetParams(kme.Params):
    layers: list[int] = Field(default_factory=lambda: [-1], min_length=1,
                              description="blocks whose FFN gets calibration slots (negative counts from the end)")
    slots: int = Field(64, ge=1, description="calibration memory slots per block (the side FFN's width)")
    lr: float = Field(5e-3, gt=0, description="Adam learning rate")
    steps: int = Field(200, ge=1, description="at most this many optimisation steps")
    stop_loss: float = Field(0.05, ge=0, description="stop once every target token is top-1 and the mean "
                                                     "negative log-likelihood is below this")
    seed: int = Field(0, description="seed of the slot keys' initialisation and of the retain samples")
    retain_weight: float = Field(0.0, ge=0, description="weight of a KL term keeping the model's next-token "
                                                        "distributions on retain texts (0: the paper's recipe, "
                                                        "facts only)")
    retain_samples: int = Field(64, ge=1, description="retain texts sampled from the model itself")
    retain_tokens: int = Field(32, ge=1, description="length of each retain sample")


class CalibrationSlots(SideNeurons):
    """``out += GELU(x @ keys.T) @ values`` on one FFN, through a forward hook."""

    def __init__(self, module: "torch.nn.Module", keys: "torch.Tensor", values: "torch.Tensor"):
        self.keys, self.values = keys, values
        super().__init__(module)

    def added(self, x: "torch.Tensor") -> "torch.Tensor":
        import torch

        return torch.nn.functional.gelu(x.float() @ self.keys.T.float()) @ self.values.float()


class CalinetEditor(kme.Editor):
    name = "calinet"
    description = ("CALINET: calibration memory slots (a small parallel FFN) added to FFN outputs and trained "
                   "on the facts; base weights untouched (Dong et al., 2022)")
    Params = CalinetParams
    capabilities = kme.Capabilities(kind="extension", batch=True, sequential=True)

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        import torch

        from kme_editlib.hooks import frozen_params

        p: CalinetParams = self.params  # type: ignore[assignment]
        layers = location.layers[:1] if location is not None and location.layers else p.layers
        layers = sorted({model.check_layer(x) for x in layers})
        d = int(model.model.config.hidden_size)
        dev = model.device
        gen = torch.Generator().manual_seed(p.seed)
        handle = model.new_handle(self, requests)
        handle.meta["calinet"] = {"layers": layers}
        slots: list[CalibrationSlots] = []
        trainable: list[torch.Tensor] = []
        for layer in layers:
            keys = (torch.randn(p.slots, d, generator=gen) / d ** 0.5).to(dev).requires_grad_(True)
            values = torch.zeros(p.slots, d, device=dev, requires_grad=True)
            s = CalibrationSlots(model.layout.module(model.model, layer, "mlp"), keys, values)
            s.bind(handle)
            slots.append(s)
            trainable += [keys, values]

        ids, mask, labels = _batch(model, requests)
        retain = _retain_batch(model, p, slots) if p.retain_weight > 0 else None
        opt = torch.optim.Adam(trainable, lr=p.lr)
        loss_val, steps = float("inf"), 0
        with frozen_params(model):
            for steps in range(1, p.steps + 1):
                logits = model.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                tgt = labels[:, 1:]
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                         ignore_index=-100)
                loss_val = float(loss.detach())
                sel = tgt != -100
                if loss_val < p.stop_loss and bool((logits.argmax(-1)[sel] == tgt[sel]).all()):
                    break
                if retain is not None:
                    r_ids, r_mask, r_logp = retain
                    new = torch.log_softmax(model.model(input_ids=r_ids, attention_mask=r_mask).logits.float(), -1)
                    kl = (r_logp.exp() * (r_logp - new)).sum(-1)
                    loss = loss + p.retain_weight * (kl * r_mask).sum() / r_mask.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        for layer, s in zip(layers, slots):
            s.keys, s.values = s.keys.detach(), s.values.detach()
            handle.state[f"{layer}.keys"] = s.keys.cpu()
            handle.state[f"{layer}.values"] = s.values.cpu()
        handle.meta["calinet"].update(steps=steps, final_loss=round(loss_val, 5))
        return handle

    def restore(self, model: "EditedModel", handle: "EditHandle") -> None:
        info = handle.meta.get("calinet")
        if not info:
            raise KmeError("a CALINET edit in this patch has no 'calinet' metadata (layers)",
                           hint="re-create the patch with this version of kme-calinet")
        for layer in info["layers"]:
            try:
                keys, values = handle.state[f"{layer}.keys"], handle.state[f"{layer}.values"]
            except KeyError:
                raise KmeError(f"the CALINET edit in this patch lacks the slots of layer {layer}") from None
            module = model.layout.module(model.model, model.check_layer(int(layer)), "mlp")
            CalibrationSlots(module, keys.to(model.device), values.to(model.device)).bind(handle)


def _retain_batch(model: "EditedModel", p: CalinetParams,
                  slots: list[CalibrationSlots]) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """Texts sampled from the model (seeded), and its next-token log-distributions on them
    with the new slots switched off: what the retain term keeps."""
    import torch

    for s in slots:
        s.enabled = False
    try:
        with torch.no_grad():
            out = sample_ids(model, p.retain_samples, p.retain_tokens, p.seed)
            if out is None:
                raise KmeError("retain_weight needs a beginning- or end-of-text token to sample retain texts from")
            mask = torch.ones_like(out)
            logp = torch.log_softmax(model.model(input_ids=out, attention_mask=mask).logits.float(), -1)
    finally:
        for s in slots:
            s.enabled = True
    return out, mask, logp


def _batch(model: "EditedModel", requests: list["EditRequest"]) -> tuple["torch.Tensor", ...]:
    """Prompt + new object of every request, right-padded, loss only on the object's tokens."""
    import torch

    tok = model.tokenizer
    seqs = []
    for r in requests:
        a = tok(r.text, add_special_tokens=True)["input_ids"]
        b = model.target_ids(r.text, r.target_new)
        if not a or not b:
            raise KmeError(f"request {r.case_id!r}: prompt or target encodes to no tokens")
        seqs.append((a, b))
    ids, mask = pad_sequences([a + b for a, b in seqs], tok.pad_token_id, model.device)
    labels = torch.full(ids.shape, -100, dtype=torch.long)
    for i, (a, b) in enumerate(seqs):
        labels[i, len(a): len(a) + len(b)] = torch.tensor(b)
    return ids, mask, labels.to(model.device)
