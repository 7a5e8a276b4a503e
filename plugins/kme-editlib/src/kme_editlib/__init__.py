"""kme-editlib: the machinery locate-and-edit methods share.

- :mod:`kme_editlib.hooks` -- read/write activations at ``(layer, part)`` through the layout;
- :mod:`kme_editlib.keys` -- MLP keys at the fact token, averaged over random prefixes;
- :mod:`kme_editlib.spans` -- verb and object spans: requests re-anchored on them (MEMIT-CSK);
- :mod:`kme_editlib.stats` -- ``C = E[k kᵀ]`` over a corpus, cached on disk, resumable;
- :mod:`kme_editlib.contexts` -- the papers' random-prefix context templates;
- :mod:`kme_editlib.targets` -- batched target-vector optimisation (ROME's v*, MEMIT's z);
- :mod:`kme_editlib.solvers` -- rank-one, mass (least-squares) and null-space updates;
- :mod:`kme_editlib.neurons` -- integrated-gradients attribution of FFN neurons (KN, DEPN);
- :mod:`kme_editlib.defaults` -- published layers per architecture and the rule elsewhere;
- :mod:`kme_editlib.editors` -- editor base classes (MEMIT's edit, overridable step by step);
- :mod:`kme_editlib.registration` -- ``kme_register_*`` hook implementations for plugins.

It registers no editor; it adds the ``kme stats`` command (compute/list key statistics).
"""

from __future__ import annotations

from typing import Any

import kme

__all__ = ["kme_register_commands"]


@kme.hookimpl
def kme_register_commands(cli: Any) -> None:
    from kme_editlib.cli import stats

    cli.add_command(stats)
