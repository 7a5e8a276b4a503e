"""Decomposition rules from a fact-world description (``kme mello rules``).

A fact world (kme-factworld's ``world.json``) lists, per relation, its phrasings
(``relations.<name>.templates``) and, per edited relation, multi-hop questions with the path
of relations they follow from the edited object (``multihop.<relation>: [{template, path}]``).
A rule maps such a question to its hops: the edited relation's first phrasing, then the first
phrasing of every relation on the path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kme import ConfigError, read_json

from kme_mello.solver import Rule

__all__ = ["rules_from_world"]


def rules_from_world(world: dict[str, Any] | str | Path) -> list[Rule]:
    if not isinstance(world, dict):
        p = Path(world)
        if not p.is_file():
            raise ConfigError(f"world file {str(p)!r} does not exist")
        world = read_json(p, what="world file")
    try:
        relations = world["relations"]
        multihop = world.get("multihop", {})
        rules = []
        for rel, questions in multihop.items():
            for q in questions:
                hops = [relations[rel]["templates"][0]] + [relations[r]["templates"][0] for r in q["path"]]
                rules.append(Rule(question=q["template"], hops=hops))
    except (KeyError, TypeError, IndexError) as e:
        raise ConfigError(f"not a fact-world description: missing {e}",
                          hint="pass the world.json of kme-factworld (relations with templates, multihop)") from None
    return rules
