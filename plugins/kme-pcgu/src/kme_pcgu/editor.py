"""The PCGU editor: contrastive gradients, partitioned and ranked, one masked SGD step per chunk.

For each chunk of ``batch_size`` pairs (a request is a pair: ``target_true`` is the advantaged
completion, ``target_new`` the disadvantaged one, both after the request's prompt):

1. the gradients of the summed score (raw logits or log-probabilities of the completion's
   tokens) of the disadvantaged and of the advantaged completions are taken separately;
2. each candidate weight is cut into partitions (:mod:`kme_pcgu.partition`) and the ``k``
   partitions with the lowest cosine similarity between the two gradients are kept;
3. an SGD step moves only those partitions: down the advantaged score's gradient, up the
   disadvantaged one's, or both (``direction``).

Weights are trained as float32 copies (``kme_ftlib``'s functional forward) and written once
through ``handle.set_param``, so undo is bit-exact and patches round-trip.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch

import kme
from kme_ftlib import EditBatch, FineTuneEditor, encode_batch, forward_logits, frozen, select_weights

from kme_pcgu.params import PCGUParams
from kme_pcgu.partition import count_partitions, expand, select_top_k, similarities, unit_axes

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest, Location

__all__ = ["PCGUEditor", "completion_scores", "check_pairs"]


def completion_scores(logits: torch.Tensor, batch: EditBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row: the summed raw logits, summed log-probabilities and mean log-probability of the
    completion's tokens, each read at the position that predicts it (teacher forcing)."""
    raw, lp_sum, lp_mean = [], [], []
    for r, (plen, tid) in enumerate(zip(batch.prompt_lens, batch.targets)):
        pos = torch.arange(plen - 1, plen - 1 + len(tid), device=logits.device)
        ids = torch.as_tensor(tid, device=logits.device)[:, None]
        rows = logits[r, pos].float()
        lp = torch.log_softmax(rows, dim=-1).gather(-1, ids).squeeze(-1)
        raw.append(rows.gather(-1, ids).sum())
        lp_sum.append(lp.sum())
        lp_mean.append(lp.mean())
    return torch.stack(raw), torch.stack(lp_sum), torch.stack(lp_mean)


def check_pairs(requests: list["EditRequest"]) -> None:
    """Every request must name two different completions: advantaged (``target_true``) and
    disadvantaged (``target_new``)."""
    for r in requests:
        if not (r.target_true or "").strip():
            raise kme.EditFailedError(
                f"request {r.case_id!r} has no target_true: PCGU needs the advantaged completion to contrast",
                where=f"request {r.case_id}", hint="use a dataset of contrastive pairs, e.g. factworld-contrastive")
        if r.target_true.strip() == r.target_new.strip():
            raise kme.EditFailedError(
                f"request {r.case_id!r} has the same advantaged and disadvantaged completion {r.target_new!r}",
                where=f"request {r.case_id}", hint="a contrastive pair needs two different completions")


class PCGUEditor(FineTuneEditor):
    """Partitioned contrastive gradient unlearning (Yu et al., 2023)."""

    name = "pcgu"
    description = ("partitioned contrastive gradient unlearning: update only the neurons whose gradients differ most "
                   "between an advantaged and a disadvantaged completion (Yu et al., 2023)")
    Params: ClassVar[type[kme.Params]] = PCGUParams
    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True)

    def check_model(self, model: "EditedModel") -> None:
        """Layers in range, parts the architecture has, parameters PCGU can partition."""
        kme.Editor.check_model(self, model)
        p: PCGUParams = self.params  # type: ignore[assignment]
        layers, _ = self.layers_for(model, None)
        names = select_weights(model, layers, p.parts, p.include_bias)
        try:
            unit_axes(model, names, p.aggregation)
        except ValueError as e:
            raise kme.ModelLoadError(str(e), where="parts", hint="choose parts made of 1-D and 2-D weights") from None

    def layers_for(self, model: "EditedModel", location: "Location | None") -> tuple[list[int], str]:
        """``layers``, or every block; a locator's layers are not used (PCGU ranks weights itself)."""
        p: PCGUParams = self.params  # type: ignore[assignment]
        if p.layers is None:
            return list(range(model.num_layers)), "every block"
        return [model.check_layer(x) for x in p.layers], "params"

    def train_weights(self, model: "EditedModel", requests: list["EditRequest"], start: dict[str, torch.Tensor],
                      meta: dict[str, Any]) -> dict[str, torch.Tensor]:
        p: PCGUParams = self.params  # type: ignore[assignment]
        check_pairs(requests)
        prompts = [r.text for r in requests]
        adv = encode_batch(model, prompts, [r.target_true for r in requests])  # type: ignore[misc]
        dis = encode_batch(model, prompts, [r.target_new for r in requests])
        n = len(requests)
        chunks = [list(range(i, min(i + p.batch_size, n))) for i in range(0, n, p.batch_size)]
        axes = unit_axes(model, list(start), p.aggregation)
        values = {k: t.detach().to(torch.float32).clone().requires_grad_(True) for k, t in start.items()}
        k_used = min(p.k, count_partitions({k: t.shape for k, t in values.items()}, axes))
        gaps: list[float] = []
        steps = 0
        chosen: dict[str, int] = {}
        stopped = False
        with frozen(model):
            for _ in range(p.steps):
                pass_gaps = []
                for c in chunks:
                    a_sub = adv if len(c) == n else adv.rows(c)
                    d_sub = dis if len(c) == n else dis.rows(c)
                    obj_adv, lp_adv = self._scores(model, values, a_sub, p.score)
                    obj_dis, lp_dis = self._scores(model, values, d_sub, p.score)
                    gap = float((lp_adv - lp_dis).mean())
                    if not math.isfinite(gap):
                        raise kme.EditFailedError(f"the completions' scores became non-finite after {steps} steps",
                                                  hint="lower lr")
                    pass_gaps.append(gap)
                    if p.stop_gap is not None and gap <= p.stop_gap:
                        continue  # at parity already: no backward pass
                    g_adv, g_dis = self._gradient(values, obj_adv), self._gradient(values, obj_dis)
                    masks = select_top_k(similarities(g_dis, g_adv, axes), k_used)
                    with torch.no_grad():
                        for name, v in values.items():
                            step = self._step(g_adv[name], g_dis[name], p.direction)
                            v.add_(step * expand(masks[name], v.shape, axes[name]), alpha=p.lr)
                            chosen[name] = chosen.get(name, 0) + int(masks[name].sum())
                    steps += 1
                gaps.append(sum(pass_gaps) / len(pass_gaps))
                if p.stop_gap is not None and max(pass_gaps) <= p.stop_gap:
                    stopped = True
                    break
        meta.update({"partitions": count_partitions({k: t.shape for k, t in values.items()}, axes), "k": k_used,
                     "optimizer_steps": steps, "passes": len(gaps), "first_gap": gaps[0], "last_pass_gap": gaps[-1],
                     "stopped_early": stopped,
                     "selected": {k: v for k, v in chosen.items() if v}})
        return {k: v.detach() for k, v in values.items()}

    @staticmethod
    def _scores(model: "EditedModel", values: dict[str, torch.Tensor], batch: EditBatch,
                score: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The chunk's summed score to differentiate, and each row's mean log-probability."""
        raw, lp_sum, lp_mean = completion_scores(forward_logits(model, values, batch), batch)
        return (raw.sum() if score == "logit" else lp_sum.sum()), lp_mean.detach()

    @staticmethod
    def _gradient(values: dict[str, torch.Tensor], objective: torch.Tensor) -> dict[str, torch.Tensor]:
        """d objective / d each trained tensor (zeros where it does not depend on one)."""
        names = list(values)
        grads = torch.autograd.grad(objective, [values[k] for k in names], allow_unused=True)
        return {k: torch.zeros_like(values[k]) if g is None else g for k, g in zip(names, grads)}

    @staticmethod
    def _step(g_adv: torch.Tensor, g_dis: torch.Tensor, direction: str) -> torch.Tensor:
        """The ascent direction of the update (added times lr)."""
        if direction == "advantaged":
            return -g_adv
        if direction == "disadvantaged":
            return g_dis
        return g_dis - g_adv
