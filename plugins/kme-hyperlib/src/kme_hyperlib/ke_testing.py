"""Test support for the hypernetwork editors (``ke``, ``slag``, ``kgeditor``): training
requests for ``kme.testing``'s tiny models and a training setting that takes a second (the
conformance kit's ``train_params``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kme
from kme.testing import tiny_model

__all__ = ["TINY_TRAINING", "tiny_train_requests", "train_tiny"]

TINY_TRAINING: dict[str, Any] = {"steps": 3, "batch_size": 2, "hidden_dim": 8, "condition_dim": 16,
                                 "eval_every": 0, "holdout": 0.0, "save_every": 1000, "warmup": 0}
"""Three steps of a small network: enough to exercise training, not to learn anything."""


def tiny_train_requests() -> list[kme.EditRequest]:
    """Requests in the fact world's shape (paraphrases, neighbours, an entailed question) in
    the tiny tokenizer's vocabulary."""
    people = ["Alice Smith", "Bob Jones", "Carol White", "Dan Black", "Eve Stone", "Finn Gray"]
    cities = ["Paris", "London", "Rome"]
    langs = ["French", "Italian", "English"]
    out = []
    for i, s in enumerate(people):
        other = people[(i + 1) % len(people)]
        out.append(kme.EditRequest(
            case_id=f"born:{s}", prompt="{} was born in", subject=s, target_new=cities[i % 3],
            target_true=cities[(i + 1) % 3], relation="born",
            paraphrase_prompts=[f"The birthplace of {s} is"],
            neighborhood=[kme.Probe(prompt=f"{other} was born in", target=cities[(i + 2) % 3])],
            portability=[kme.PortabilityQuestion(prompt=f"The language of the city where {s} was born is",
                                                 target_new=langs[i % 3], target_true=langs[(i + 1) % 3])]))
        out.append(kme.EditRequest(
            case_id=f"speaks:{s}", prompt="{} speaks", subject=s, target_new=langs[i % 3],
            target_true=langs[(i + 2) % 3], relation="speaks",
            paraphrase_prompts=[f"The language of {s} is"],
            neighborhood=[kme.Probe(prompt=f"{other} speaks", target=langs[(i + 1) % 3])]))
    return out


def train_tiny(editor: str, family: str, out: str | Path, pm: Any = None, *, seed: int = 0,
               **training: Any) -> str:
    """Train ``editor`` on a tiny model of ``family`` (seed ``seed``) into ``out``."""
    pm = pm or kme.build_plugin_manager()
    model = tiny_model(family, pm, seed=seed)
    cls = pm.editors.get(editor)
    ed = cls({**TINY_TRAINING, **training})
    return ed.train(model, tiny_train_requests(), str(out))["checkpoint"]
