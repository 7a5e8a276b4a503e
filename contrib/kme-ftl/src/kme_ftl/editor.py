"""A small FT-L editor: projected gradient descent on the edited facts' negative log-likelihood.

The worked example of a third-party plugin made from ``contrib/kme-plugin-template``; it is
registered as ``ft-l-demo``. kme's own FT-L, with the released code's loss and options, is
the ``ft-l`` editor of the ``kme-ft-l`` plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

import kme

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location


class FTLParams(kme.Params):
    layers: list[int] = Field(default_factory=lambda: [0], min_length=1,
                              description="blocks whose MLP output projection is fine-tuned")
    lr: float = Field(5e-4, gt=0, description="Adam learning rate")
    steps: int = Field(25, ge=1, description="optimisation steps")
    norm_constraint: float = Field(5e-4, gt=0, description="L-infinity radius around the original weights")


class FTLEditor(kme.Editor):
    name = "ft-l-demo"
    description = "worked plugin example: constrained fine-tuning of MLP output weights in an L-infinity ball"
    Params = FTLParams
    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True)

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        import torch

        p = self.params
        layers = location.layers[:1] if location is not None and location.layers else p.layers
        names = [model.weight_name(layer, "mlp_out") for layer in layers]
        weights = {n: model.parameter(n) for n in names}
        originals = {n: w.detach().clone() for n, w in weights.items()}
        trainable = {n: w.detach().clone().float().requires_grad_(True) for n, w in weights.items()}
        opt = torch.optim.Adam(list(trainable.values()), lr=p.lr)

        tok = model.tokenizer
        batch = [(tok(r.text)["input_ids"], model.target_ids(r.text, r.target_new)) for r in requests]
        ids, mask = kme.pad_sequences([a + b for a, b in batch], tok.pad_token_id, model.device)
        labels = torch.full(ids.shape, -100, dtype=torch.long)
        for i, (a, b) in enumerate(batch):
            labels[i, len(a): len(a) + len(b)] = torch.tensor(b)
        labels = labels.to(model.device)

        params = dict(model.model.named_parameters())
        was_training = model.model.training
        model.model.eval()
        try:
            for _ in range(p.steps):
                opt.zero_grad()
                override = {n: t.to(params[n].dtype) for n, t in trainable.items()}
                out = torch.func.functional_call(model.model, override, (ids,), {"attention_mask": mask})
                logits = out.logits[:, :-1].float()
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
                loss.backward()
                opt.step()
                with torch.no_grad():  # project back into the L-infinity ball
                    for n, t in trainable.items():
                        base = originals[n].float()
                        t.copy_(torch.clamp(t, base - p.norm_constraint, base + p.norm_constraint))
        finally:
            model.model.train(was_training)

        handle = model.new_handle(self, requests)
        for n, t in trainable.items():
            handle.set_param(n, t.detach())
        handle.meta["final_loss"] = float(loss.detach())
        return handle
