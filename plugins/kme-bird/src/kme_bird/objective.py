"""BIRD's bidirectional term of the target-vector objective.

Word-embedding arithmetic read on a language model's last hidden states: a fact ``(s, r, o)``
should satisfy ``s + r ≈ o`` (forward) and ``o + r⁻¹ ≈ s`` (reverse), with ``r`` a phrase of
the relation and ``r⁻¹`` one of its inverse. For an edit ``o → o*`` the term is, per context
(the bare text and each random prefix, as for ROME's loss),

    ‖s + r − o*‖ + ‖o* + r⁻¹ − s‖  −  β (‖s + r − o‖ + ‖o + r⁻¹ − s‖)

and it enters the objective with weight ``α``: the first two norms pull the subject towards
the new object in both directions, the last two push it away from the old one. Every vector
is the final hidden state (the LM head's input) averaged over the tokens of its words, read
in "prefix + words". Only ``s`` carries the optimised vector (added at the subject's fact
token); ``r``, ``r⁻¹``, ``o*`` and ``o`` are read once on the model as it is. Norms are not
squared, the terms are summed over contexts, and the term stays out of the early-stopping
test, as in the authors' released code. Without ``target_true`` the ``β`` part is left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from kme import pad_sequences
from kme_editlib.hooks import HookSet, eval_mode, forward
from kme_editlib.targets import ExtraTerm
from kme_editlib.tokens import Sequence_, encode, lookup_index, subject_token_range

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

    from kme_editlib.tokens import FactToken

__all__ = ["bird_term", "word_states"]


def _span(model: "EditedModel", text: str, words: str, start: int) -> tuple[int, ...]:
    first, last = subject_token_range(model, text, words, subject_start=start)
    return tuple(range(first, last + 1))


@torch.no_grad()
def word_states(model: "EditedModel", prefixes: list[str], words: list[str], batch_size: int = 64) -> torch.Tensor:
    """``[len(words), len(prefixes), d]``: the final hidden state averaged over the tokens of
    each of ``words`` in ``prefix + words``, on the model as it is."""
    items = [(p + w, _span(model, p + w, w, len(p))) for w in words for p in prefixes]
    out: list[torch.Tensor] = []
    head = model.model.get_output_embeddings()
    with eval_mode(model):
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            ids, mask = pad_sequences([encode(model, t) for t, _ in chunk], model.tokenizer.pad_token_id,
                                      model.device)
            got: list[torch.Tensor] = []
            with HookSet() as hs:
                hs.on_input(head, got.append)
                forward(model, ids, mask)
            h = got[-1].float()
            out.extend(h[i, list(pos)].mean(0).cpu() for i, (_, pos) in enumerate(chunk))
    return torch.stack(out).view(len(words), len(prefixes), -1)


def bird_term(model: "EditedModel", requests: list["EditRequest"], prefixes: list[str],
              phrases: list[tuple[str, str]], *, alpha: float, beta: float,
              fact_token: "FactToken") -> ExtraTerm:
    """The term for ``requests`` (``phrases[i]``: request ``i``'s relation and inverse-relation
    phrases), as a :class:`kme_editlib.targets.ExtraTerm` for the target optimisation."""
    seqs: list[Sequence_] = []
    anchors: dict[int, tuple[torch.Tensor, ...]] = {}
    for i, (r, (fwd, inv)) in enumerate(zip(requests, phrases)):
        olds = [r.target_true] if r.target_true and r.target_true.strip() and beta else []
        st = word_states(model, prefixes, [fwd, inv, r.target_new, *olds])
        for j, p in enumerate(prefixes):
            text = p + r.subject
            seq = Sequence_(encode(model, text), lookup_index(model, text, r.subject, fact_token, subject_start=len(p)),
                            i, "extra", _span(model, text, r.subject, len(p)))
            seqs.append(seq)
            anchors[id(seq)] = tuple(st[k, j] for k in range(st.shape[0]))

    def loss(chunk: list[Sequence_], hidden: torch.Tensor) -> torch.Tensor:
        vals = []
        for row, seq in enumerate(chunk):
            s = hidden[row, list(seq.loss_positions)].float().mean(0)
            a = [x.to(s.device) for x in anchors[id(seq)]]
            rel, inv, new = a[0], a[1], a[2]
            v = (s + rel - new).norm() + (new + inv - s).norm()
            if len(a) > 3:
                old = a[3]
                v = v - beta * ((s + rel - old).norm() + (old + inv - s).norm())
            vals.append(v)
        return torch.stack(vals)

    return ExtraTerm(sequences=seqs, loss=loss, weight=alpha, in_stop=False)
