"""The deep fact world's datasets and corpora: this package's generator in its ``deep``
shape, seed 0 (2,052 subjects; 1,026 in the ``eval`` split). They need no checkpoint; the
model that knows the world is trained with ``kme factworld train --world deep``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from kme_factworld.commonsense import FactWorldCommonsenseDataset
from kme_factworld.contrastive import ContrastiveDataset
from kme_factworld.dataset import FactWorldDataset
from kme_factworld.private import FactWorldPrivateDataset

__all__ = ["DEEP_ALIAS", "DEEP_DATASETS", "deep_corpus"]

DEEP_ALIAS = "factworld-deep"  # the model alias of a deep-world checkpoint


def _deep(base: type, name: str, doc: str) -> type:
    return type(f"Deep{base.__name__}", (base,), {
        "name": name, "world_file": "deep", "__module__": __name__, "__doc__": doc,
        "description": f"{base.description} — over the deep world (2,052 subjects)",
        "source_format": "built in (the world generator's deep shape, seed 0)",
    })


DEEP_DATASETS: list[type] = [
    _deep(FactWorldDataset, "factworld-deep",
          "Counterfactual edits of the deep fact world (1,026 subjects in the eval split)."),
    _deep(FactWorldCommonsenseDataset, "factworld-deep-commonsense", "Commonsense statements of the deep world."),
    _deep(FactWorldPrivateDataset, "factworld-deep-private", "Private facts of the deep world's people."),
    _deep(ContrastiveDataset, "factworld-deep-contrastive", "Contrastive pairs over the deep world."),
]


@functools.lru_cache(maxsize=4)
def _deep_corpus(seed: int, only_split: str | None) -> tuple[str, ...]:
    from kme_factworld.text import corpus
    from kme_factworld.world import load_world

    world = load_world("deep")
    lines = corpus(world, seed=seed)
    if only_split is None:
        return tuple(lines)
    others = {s.name.split()[-1] for s in world.subjects if s.split != only_split}
    return tuple(line for line in lines if not others.intersection(re.findall(r"[A-Za-z]+", line)))


def deep_corpus(seed: int = 0, only_split: str | None = None) -> list[str]:
    """The deep world's true-fact text, one document per line (its model's key statistics).
    ``only_split="train"``: only documents that mention no subject of another split, i.e.
    text that states nothing about the subjects the ``eval`` split edits (as Wikipedia
    states next to nothing about any one edited subject)."""
    return list(_deep_corpus(seed, only_split))


def corpora() -> list[Any]:
    import kme

    return [
        kme.TextCorpus(name="factworld-deep", records=lambda: iter(_deep_corpus(0, None)), size=None,
                       description="the deep fact world's true-fact text (89,544 documents), statistics corpus of "
                                   "its model",
                       models=[kme.ModelMatch(alias=DEEP_ALIAS)]),
        kme.TextCorpus(name="factworld-deep-train-split", records=lambda: iter(_deep_corpus(0, "train")), size=None,
                       description="the deep world's text without any document that mentions a subject of the eval "
                                   "split (47,108 documents): statistics that state none of the edited subjects' facts"),
    ]
