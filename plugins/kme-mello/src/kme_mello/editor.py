"""The MeLLo editor: the edit memory is a list of fact sentences; every query runs MeLLo's loop
with the language model, and a query whose answer was revised gets that answer stated before
it, so kme's teacher-forced and generation-based judging read MeLLo's answer."""

from __future__ import annotations

import json
import weakref
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

import kme
from kme import ConfigError, join_target, read_text, render, template_validator

from kme_memlib.facts import fact_text
from kme_memlib.memory import MemoryEditor, editor_handles
from kme_memlib.retrieval import EmbedderName
from kme_mello.solver import FACT_CONTEXT, Rule, Trace, solve_prompted, solve_with_rules

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location, MemoryHit

__all__ = ["MelloEditor", "MelloParams", "load_rules"]


class MelloParams(kme.Params):
    decomposer: Literal["prompt", "rules"] = Field(
        "prompt", description="prompt: the model decomposes the question by continuing a few-shot transcript "
                              "(the paper); rules: question templates map to chains of single-hop templates")
    prompt_file: str | None = Field(None, description="few-shot transcript for decomposer: prompt (default: "
                                                      "kme-mello's built-in one)")
    rules_file: str | None = Field(None, description="JSON list of {question, hops} templates (decomposer: rules)")
    max_hops: int = Field(4, ge=1, le=8, description="sub-questions per question at most")
    answer_tokens: int = Field(8, ge=1, description="tokens generated for one answer")
    step_tokens: int = Field(48, ge=8, description="tokens generated per transcript step (decomposer: prompt)")
    embedder: EmbedderName = Field("tfidf", description="retrieval of edited facts: tfidf, lm, transformers")
    min_similarity: float = Field(0.0, ge=0, le=1, description="a retrieved fact less similar than this to the "
                                                               "sub-question is not shown (0: always the nearest "
                                                               "fact, as in the paper)")
    embedder_model: str | None = Field(None, description="hub id or local path (embedder: transformers)")
    answer_template: Annotated[str, template_validator(("fact",))] = Field(FACT_CONTEXT, description="how MeLLo's answer is stated before the query "
                                                           "({fact} = the question completed by the answer)")


def load_rules(path: str) -> list[Rule]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"rules file {path!r} does not exist", where="editor 'mello' params.rules_file",
                          hint="a JSON list of {\"question\": template, \"hops\": [templates]}; "
                               "`kme mello rules --world WORLD.json` writes one for a fact world")
    try:
        rows = json.loads(read_text(p, what="rules file", where="editor 'mello' params.rules_file"))
        rules = [Rule.model_validate(r) for r in rows]
    except Exception as e:  # noqa: BLE001 - JSON and validation errors get the same advice
        raise ConfigError(f"{path}: not a valid rules file ({str(e).splitlines()[0]})",
                          where="editor 'mello' params.rules_file",
                          hint="a JSON list of {\"question\": template, \"hops\": [templates]}") from None
    for i, r in enumerate(rules):
        if r.question.count("{}") != 1 or not r.hops or any(h.count("{}") != 1 for h in r.hops):
            raise ConfigError(f"{path} rule {i}: question and every hop need exactly one '{{}}' slot",
                              where="editor 'mello' params.rules_file")
    return rules


_traces: "weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Trace]]" = weakref.WeakKeyDictionary()


class MelloEditor(MemoryEditor):
    name = "mello"
    description = ("MeLLo: decompose a (multi-hop) question with the language model, check each sub-answer "
                   "against the retrieved edited fact, revise on contradiction (Zhong et al., 2023)")
    Params = MelloParams
    key_field = "fact"

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        p: MelloParams = self.params  # type: ignore[assignment]
        if p.decomposer == "rules":
            if not p.rules_file:
                raise ConfigError("decomposer 'rules' needs rules_file", where="editor 'mello' params",
                                  hint="`kme mello rules --world WORLD.json --out rules.json` writes one")
            load_rules(p.rules_file)
        else:
            self._prompt()
        handle = model.new_handle(self, requests)
        handle.memory = [{"case_id": r.case_id, "fact": fact_text(r.text, r.target_new)} for r in requests]
        return handle

    def lookup(self, model: "EditedModel", handle: "EditHandle", prompts: list[str]) -> list["MemoryHit"]:
        if not self.answering_handles(model, handle):
            return []
        traces = self.solve(model, prompts)
        p: MelloParams = self.params  # type: ignore[assignment]
        return [kme.MemoryHit(prompt_index=i, source=self.name,
                              context=render(p.answer_template, ("fact",), fact=q + join_target(q, t.answer)))
                for i, (q, t) in enumerate(zip(prompts, traces)) if t.revised and t.answer]

    def solve(self, model: "EditedModel", questions: list[str]) -> list[Trace]:
        """MeLLo's traces for ``questions`` against the current edit memory (cached per model
        state: the same question is not solved twice while the edits stay the same)."""
        p: MelloParams = self.params  # type: ignore[assignment]
        handles = editor_handles(model, self.name)
        items, index = self.memory_index(model, handles, p.embedder, p.embedder_model)
        state = (tuple((h.id, len(h.memory)) for h in model.stack), p.model_dump_json())
        cache = _traces.setdefault(model, {})
        todo = sorted({q for q in questions if (state, q) not in cache})
        if todo:

            limit = model.context_length or 1024

            def generate(texts: list[str], n: int) -> list[str]:
                return model.generate([_fit(model, t, limit - n) for t in texts], max_new_tokens=n, use_memory=False)

            def retrieve(queries: list[str]) -> list[str | None]:
                found = index.search(queries, 1)
                return [items[f[0][0]]["fact"] if f and f[0][1] >= p.min_similarity else None for f in found]

            if p.decomposer == "rules":
                traces = solve_with_rules(todo, load_rules(p.rules_file or ""), generate, retrieve,
                                          max_hops=p.max_hops, answer_tokens=p.answer_tokens)
            else:
                traces = solve_prompted(todo, self._prompt(), generate, retrieve, max_hops=p.max_hops,
                                        step_tokens=p.step_tokens)
            if len(cache) > 50_000:
                cache.clear()
            for q, t in zip(todo, traces):
                cache[(state, q)] = t
        return [cache[(state, q)] for q in questions]

    def _prompt(self) -> str:
        p: MelloParams = self.params  # type: ignore[assignment]
        if p.prompt_file:
            path = Path(p.prompt_file)
            if not path.is_file():
                raise ConfigError(f"prompt file {p.prompt_file!r} does not exist",
                                  where="editor 'mello' params.prompt_file")
            text = read_text(path, what="prompt file", where="editor 'mello' params.prompt_file")
        else:
            text = resources.files("kme_mello").joinpath("default_prompt.txt").read_text(encoding="utf-8")
        return text if text.endswith("\n\n") else text.rstrip("\n") + "\n\n"


def _fit(model: "EditedModel", text: str, budget: int) -> str:
    """``text`` cut from the left to at most ``budget`` tokens (a long few-shot transcript loses
    its oldest demonstrations first)."""
    ids = model.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    if len(ids) <= budget:
        return text
    return model.tokenizer.decode(ids[len(ids) - max(1, budget):])
