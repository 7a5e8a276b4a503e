"""IKE's demonstrations: copy, update and retain examples built from edit requests that are
not being evaluated (a dataset's train split or a file), retrieved by similarity.

For a demonstration request with new fact f (its prompt completed by its new object):

* **copy**: ``New Fact: f / Prompt: <the same prompt> <new object>``;
* **update**: ``New Fact: f / Prompt: <a paraphrase> <new object>``;
* **retain**: ``New Fact: f / Prompt: <an unrelated neighbourhood prompt> <its own answer>``.

They teach the model, in context, to copy the new fact, to carry it over to paraphrases and
to leave unrelated prompts alone (Zheng et al., 2023, section 3).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from kme import ConfigError, DatasetRecordError, EditRequest, join_target, read_text, render
from kme_memlib.facts import fact_text

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["DemoSource", "Demo", "build_demos", "load_demo_requests", "DEMO_TEMPLATE", "QUERY_TEMPLATE"]

DEMO_TEMPLATE = "New Fact: {fact}\nPrompt: {prompt}{answer}\n\n"
QUERY_TEMPLATE = "New Fact: {fact}\nPrompt: "


class DemoSource(BaseModel):
    """Where demonstration requests come from: a registered dataset's train split (default) or
    its evaluated requests (``split: load``), at most ``limit`` of them."""

    model_config = ConfigDict(extra="forbid")
    dataset: str
    params: dict[str, Any] = Field(default_factory=dict)
    split: str = Field("train", pattern="^(train|load)$")
    limit: int | None = Field(None, ge=1)


class Demo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    text: str


def load_demo_requests(model: "EditedModel", source: DemoSource | None, path: str | None) -> list[EditRequest]:
    reqs: list[EditRequest] = []
    if source is not None:
        cls = model.pm.datasets.get(source.dataset, where="editor params.demos.dataset")
        ds = cls(source.params)
        it: Iterable[EditRequest] = ds.train_requests() if source.split == "train" else ds.load()
        got = list(it)
        if not got:
            raise ConfigError(f"dataset {source.dataset!r} gave no {source.split} requests for demonstrations",
                              where="editor params.demos",
                              hint="use split: load, another dataset, or demo_file")
        reqs += got[: source.limit] if source.limit else got
    if path:
        reqs += _read_file(path)
    return reqs


def _read_file(path: str) -> list[EditRequest]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"demonstration file {path!r} does not exist", where="editor params.demo_file",
                          hint="a JSON list (or JSON lines) of kme EditRequest records")
    text = read_text(p, what="demonstration file", error=DatasetRecordError, where=f"{path} (editor params.demo_file)")
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(ln) for ln in text.splitlines()
                                                                        if ln.strip()]
    except json.JSONDecodeError as e:
        raise DatasetRecordError(f"{path}: not valid JSON ({e})") from None
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(EditRequest.model_validate(row))
        except Exception as e:  # noqa: BLE001 - pydantic's message names the field
            raise DatasetRecordError(f"{path} record {i}: {e}",
                                     hint="each record needs case_id, prompt, subject, target_new") from None
    return out


def build_demos(requests: list[EditRequest], per_kind: int = 1, template: str = DEMO_TEMPLATE) -> list[Demo]:
    """Copy, update and retain demonstrations of every request (up to ``per_kind`` of each)."""
    out: list[Demo] = []
    for r in requests:
        fact = fact_text(r.text, r.target_new)

        def demo(kind: str, prompt: str, answer: str) -> Demo:
            return Demo(kind=kind, text=render(template, ("fact", "prompt", "answer"), fact=fact, prompt=prompt,
                                               answer=join_target(prompt, answer)))

        out.append(demo("copy", r.text, r.target_new))
        out += [demo("update", p, r.target_new) for p in r.paraphrase_prompts[:per_kind]]
        out += [demo("retain", n.prompt, n.target) for n in r.neighborhood[:per_kind] if n.target != r.target_new]
    return out
