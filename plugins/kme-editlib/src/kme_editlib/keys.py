"""Keys and values at the fact token of edit requests.

ROME's ``k*`` (and MEMIT's ``k_i``) is the MLP key at the subject's last token averaged over
the prompt preceded by each random prefix (ROME Eq. 3); MEMIT's current ``h_i^L`` and PMET's
current module outputs are read on the bare prompt.

How the average is taken is a convention (``key_average``): ROME's released code averages
flat over the bare prompt and every prefix; MEMIT's released code (and PMET's and
AlphaEdit's, built on it) averages within each *kind* of context -- the bare prompt, then
each ``(length, count)`` group of prefixes -- and then over the kinds, so the bare prompt
weighs as much as all prefixes of one length together. Pass the kinds' sizes as ``groups``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kme import pad_sequences

from kme_editlib.fit import Fit, original_widths
from kme_editlib.hooks import HookSet, eval_mode, forward, module_at
from kme_editlib.tokens import FactToken, encode, lookup_index, request_text

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["average_keys", "point_values"]


def _sequences(model: "EditedModel", requests: list["EditRequest"], prefixes: list[str],
               fact_token: FactToken) -> tuple[list[list[int]], list[int], list[int]]:
    seqs, idxs, owners = [], [], []
    for i, r in enumerate(requests):
        text, off = request_text(r)
        for prefix in prefixes:
            full = prefix + text
            seqs.append(encode(model, full))
            idxs.append(lookup_index(model, full, r.subject, fact_token, subject_start=len(prefix) + off))
            owners.append(i)
    return seqs, idxs, owners


@torch.no_grad()
def _read(model: "EditedModel", seqs: list[list[int]], idxs: list[int], taps: list[tuple[int, str, str]],
          batch_size: int) -> dict[tuple[int, str, str], torch.Tensor]:
    """``taps``: (layer, part, "in"|"out"); returns ``[n_seqs, d]`` per tap. The batch is
    halved on out-of-memory (:mod:`kme_editlib.fit`)."""
    got: dict[tuple[int, str, str], list[torch.Tensor]] = {t: [] for t in taps}
    pad_id = model.tokenizer.pad_token_id

    widths = original_widths([len(s) for s in seqs], batch_size)

    def run(start: int, stop: int) -> None:
        chunk = seqs[start:stop]
        ids, mask = pad_sequences(chunk, pad_id, model.device, width=max(widths[start:stop]))
        here: dict[tuple[int, str, str], torch.Tensor] = {}

        def grab(x: torch.Tensor, tap: tuple[int, str, str]) -> None:
            # the index tensors go to the captured tensor's device (device-mapped models)
            rows = torch.arange(len(chunk), device=x.device)
            idx = torch.tensor(idxs[start:stop], device=x.device)
            here[tap] = x[rows, idx].float().cpu()

        with HookSet() as hs:
            for tap in taps:
                layer, part, side = tap
                mod = module_at(model, layer, part)
                if side == "in":
                    hs.on_input(mod, lambda x, tap=tap: grab(x, tap))
                else:
                    hs.on_output(mod, lambda y, tap=tap: grab(y, tap))
            forward(model, ids, mask)
        for tap in taps:  # committed once the whole batch has run
            got[tap].append(here[tap])

    with eval_mode(model):
        Fit(batch_size, "key capture").run(len(seqs), run)
    return {t: torch.cat(v) for t, v in got.items()}


def average_keys(model: "EditedModel", requests: list["EditRequest"], layers: list[int], prefixes: list[str],
                 fact_token: FactToken = "subject_last", batch_size: int = 128,
                 groups: list[int] | None = None) -> dict[int, torch.Tensor]:
    """``{layer: [n_requests, d_ff]}``: each request's MLP key averaged over ``prefixes``:
    flat when ``groups`` is None, else the mean of the per-group means, ``groups`` being the
    sizes of consecutive runs of ``prefixes`` (one per kind of context)."""
    if groups is not None and (sum(groups) != len(prefixes) or any(g < 1 for g in groups)):
        raise ValueError(f"context groups {groups} do not partition {len(prefixes)} prefixes")
    seqs, idxs, owners = _sequences(model, requests, prefixes, fact_token)
    taps = [(layer, "mlp_out", "in") for layer in layers]
    got = _read(model, seqs, idxs, taps, batch_size)
    n_ctx = len(prefixes)
    out = {}
    for layer in layers:
        k = got[(layer, "mlp_out", "in")].view(len(requests), n_ctx, -1)  # owners are request-major
        if groups is None:
            out[layer] = k.mean(1)
        else:
            out[layer] = torch.stack([part.mean(1) for part in k.split(groups, dim=1)], 1).mean(1)
    return out


def point_values(model: "EditedModel", requests: list["EditRequest"], points: list[tuple[int, str]],
                 fact_token: FactToken = "subject_last", batch_size: int = 128) -> dict[tuple[int, str], torch.Tensor]:
    """``{(layer, part): [n_requests, d]}``: each point's output on the bare prompt."""
    seqs, idxs, _ = _sequences(model, requests, [""], fact_token)
    got = _read(model, seqs, idxs, [(layer, part, "out") for layer, part in points], batch_size)
    return {(layer, part): got[(layer, part, "out")] for layer, part in points}
