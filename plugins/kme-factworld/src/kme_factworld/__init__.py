"""kme-factworld: kme's offline default model and dataset.

An invented world of people, cities and countries (:mod:`kme_factworld.world`), a byte-level
BPE tokenizer and a small GPT-2 model trained on it with plain PyTorch (shipped in
``checkpoint/``), the ``factworld`` dataset of counterfactual edit requests, the model alias
``factworld``, a text corpus for activation statistics (:func:`corpus`) and the
``kme factworld`` commands (``train``, ``check``, ``world``, ``corpus``). The same for the
deep world (:mod:`kme_factworld.deep`): its datasets and corpora, and
``kme factworld train --world deep`` for its model.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import kme

__all__ = ["CHECKPOINT_DIR", "corpus", "load_world", "kme_register_datasets", "kme_register_model_aliases",
           "kme_register_commands", "kme_register_presets", "kme_register_corpora"]

CHECKPOINT_DIR = Path(__file__).parent / "checkpoint"
"""The shipped model and tokenizer (``from_pretrained`` loads it like any local model)."""


@functools.lru_cache(maxsize=4)
def _corpus(seed: int, passes: int) -> tuple[str, ...]:
    from kme_factworld.text import corpus as make

    return tuple(make(None, seed=seed, passes=passes))


def corpus(seed: int = 0, passes: int = 1) -> list[str]:
    """Text of the shipped world's true facts, one document per line (in-distribution text
    for covariance statistics of MLP keys, with no download). Deterministic in ``seed``."""
    return list(_corpus(seed, passes))


def load_world(path: str | Path | None = None) -> Any:
    """The shipped :class:`~kme_factworld.world.World` (or one read from ``path``)."""
    from kme_factworld.world import load_world as _load

    return _load(path)


@kme.hookimpl
def kme_register_datasets(register: Any) -> None:
    from kme_factworld.commonsense import FactWorldCommonsenseDataset
    from kme_factworld.contrastive import ContrastiveDataset
    from kme_factworld.dataset import FactWorldDataset
    from kme_factworld.private import FactWorldPrivateDataset

    register(FactWorldDataset)
    register(ContrastiveDataset)
    register(FactWorldPrivateDataset)
    register(FactWorldCommonsenseDataset)
    from kme_factworld.deep import DEEP_DATASETS

    for cls in DEEP_DATASETS:
        register(cls)


@kme.hookimpl
def kme_register_model_aliases(register: Any) -> None:
    register(kme.ModelAlias(
        name="factworld", target=str(CHECKPOINT_DIR),
        description="GPT-2 (4 layers x 128) trained on kme's fact world; ships with kme-factworld"))


@kme.hookimpl
def kme_register_commands(cli: Any) -> None:
    from kme_factworld.cli import factworld

    cli.add_command(factworld)


@kme.hookimpl
def kme_register_presets(register: Any) -> None:
    from kme_factworld.presets import PRESETS

    for preset in PRESETS:
        register(preset)


@kme.hookimpl
def kme_register_corpora(register: Any) -> None:
    register(kme.TextCorpus(
        name="factworld", records=lambda: iter(_corpus(0, 1)), size=None,
        description="the fact world's true-fact text (11,408 documents), statistics corpus of its model",
        models=[kme.ModelMatch(alias="factworld")]))
    from kme_factworld.deep import corpora

    for c in corpora():
        register(c)
