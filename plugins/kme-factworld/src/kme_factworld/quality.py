"""Measuring what the fact-world model knows, through the kernel's one inference path.

Recall is teacher-forced top-1: a fact counts as recalled when, for every token of the
object, the model's argmax given the prompt and the previous object tokens is that token
(``TargetScore.all_correct``; for single-token objects this is plain top-1).

Context sensitivity is measured the same way on prompts that state a counterfactual fact
first ("New fact: ...") and then ask about it: the share answered with the stated object.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kme_factworld.world import World

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["recall_probes", "recall", "context_probes", "context_sensitivity", "measure", "checkpoint_mb",
           "wrap"]


def wrap(model: Any, tokenizer: Any) -> "EditedModel":
    """An in-memory model as an :class:`kme.EditedModel` (for use during training)."""
    from kme import EditedModel, build_plugin_manager

    pm = build_plugin_manager(load_entrypoints=False)
    return EditedModel(model, tokenizer, pm.layouts.get(model.config.model_type), pm, source="factworld-training")


def recall_probes(world: World, which: str) -> list[tuple[str, str, str]]:
    """``(prompt, object, relation)`` for every fact in the phrasings of one group:
    ``train`` (trained with the subject), ``heldout`` (trained only with other subjects) or
    ``novel`` (never trained)."""
    out = []
    for s, rel, obj in world.facts():
        if which == "train":
            ts = world.trained_templates(s, rel)
        elif which == "heldout":
            ts = world.heldout_templates(s, rel)
        elif which == "novel":
            ts = [world.novel_template(rel)]
        else:
            raise ValueError(f"unknown probe group {which!r}")
        out.extend((t.format(s.name), obj, rel) for t in ts)
    return out


def _sample(items: list[Any], n: int | None, seed: int) -> list[Any]:
    if n is None or n >= len(items):
        return items
    return random.Random(seed).sample(items, n)


def recall(model: "EditedModel", probes: list[tuple[str, str, str]], batch_size: int = 256) -> dict[str, Any]:
    """Share of probes recalled, overall and per relation."""
    if not probes:
        return {"value": None, "n": 0, "per_relation": {}}
    scores = model.score([p for p, _, _ in probes], [o for _, o, _ in probes], batch_size=batch_size)
    per: dict[str, list[bool]] = {}
    for (_, _, rel), sc in zip(probes, scores):
        per.setdefault(rel, []).append(sc.all_correct)
    hits = [sc.all_correct for sc in scores]
    return {"value": sum(hits) / len(hits), "n": len(hits),
            "per_relation": {r: round(sum(v) / len(v), 4) for r, v in sorted(per.items())}}


def context_probes(world: World, n: int, seed: int = 0, n_demos: int = 0) -> dict[str, list[tuple[str, str]]]:
    """Prompts that state a counterfactual fact, then ask something; ``(prompt, target)``.

    ``copy``: the same phrasing again, answer the stated object; ``paraphrase``: another
    trained phrasing; ``heldout``: a phrasing never trained with the subject; ``other_subject``:
    the same relation of another subject, answer its true object; ``same_subject_other_relation``:
    another fact of the edited subject, answer its true object. With ``n_demos``, that many
    other counterfactual statements precede the probe's own (a long context, as with
    demonstrations).
    """
    rng = random.Random(seed)
    facts = [f for f in world.facts() if f[0].heldout]
    all_facts = world.facts()
    groups: dict[str, list[tuple[str, str]]] = {k: [] for k in (
        "copy", "paraphrase", "heldout", "other_subject", "same_subject_other_relation")}
    for s, rel, obj in rng.sample(facts, min(n, len(facts))):
        new = rng.choice([o for o in world.objects(rel) if o != obj])
        trained = world.trained_templates(s, rel)
        t0 = rng.choice(trained)
        lines = []
        for _ in range(n_demos):
            s2, r2, o2 = rng.choice(all_facts)
            if s2.name == s.name:
                continue
            o2n = rng.choice([o for o in world.objects(r2) if o != o2])
            lines.append(f"New fact: {rng.choice(world.trained_templates(s2, r2)).format(s2.name)} {o2n}.")
        lines.insert(rng.randint(0, len(lines)), f"New fact: {t0.format(s.name)} {new}.")
        ctx = "\n".join(lines) + "\n"
        groups["copy"].append((ctx + t0.format(s.name), new))
        groups["paraphrase"].append((ctx + rng.choice([t for t in trained if t != t0]).format(s.name), new))
        groups["heldout"].append((ctx + rng.choice(world.heldout_templates(s, rel)).format(s.name), new))
        others = [x for x in world.of_kind(s.kind) if x.name != s.name and x.facts[rel] != new]
        o = rng.choice(others)
        groups["other_subject"].append((ctx + rng.choice(world.trained_templates(o, rel)).format(o.name), o.facts[rel]))
        r2 = rng.choice([r for r in s.facts if r != rel])
        groups["same_subject_other_relation"].append(
            (ctx + rng.choice(world.trained_templates(s, r2)).format(s.name), s.facts[r2]))
    return groups


def context_sensitivity(model: "EditedModel", world: World, n: int = 200, seed: int = 0,
                        n_demos: int = 0) -> dict[str, float]:
    """Share of context probes answered as the context says (see :func:`context_probes`)."""
    out = {}
    for name, probes in context_probes(world, n, seed, n_demos).items():
        scores = model.score([p for p, _ in probes], [t for _, t in probes], batch_size=64)
        out[name] = round(sum(s.all_correct for s in scores) / max(1, len(scores)), 4)
    return out


def checkpoint_mb(path: str | Path) -> float:
    """Size of the checkpoint's safetensors weights in MB (10^6 bytes)."""
    files = list(Path(path).glob("*.safetensors"))
    return round(sum(f.stat().st_size for f in files) / 1e6, 3)


def measure(model: "EditedModel", world: World, *, sample: int | None = None, seed: int = 0,
            context: bool = True, context_n: int = 200) -> dict[str, Any]:
    """Recall on trained, held-out and novel phrasings (and context sensitivity)."""
    groups = {"recall_train": "train", "recall_heldout_paraphrase": "heldout", "recall_novel_template": "novel"}
    out: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for key, which in groups.items():
        r = recall(model, _sample(recall_probes(world, which), sample, seed))
        out[key] = None if r["value"] is None else round(r["value"], 4)
        details[key] = {"n": r["n"], "per_relation": r["per_relation"]}
    out["parameters"] = sum(p.numel() for p in model.model.parameters())
    if context:
        out["context_sensitivity"] = context_sensitivity(model, world, context_n, seed)
        out["context_sensitivity_16_demos"] = context_sensitivity(model, world, context_n // 2, seed + 1, n_demos=16)
    out["details"] = details
    return out

