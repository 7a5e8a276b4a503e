"""A language model whose outputs the tests control, wrapped as a real ``kme.EditedModel``.

``BigramLM``: the next-token distribution depends only on the current token,
``logits[t] = table[input_ids[t]]``. Setting a row to log-probabilities makes every score
the metrics see a hand-computable number. ``TableWriter`` is an editor that raises the
table entries along each request's prompt-to-target token chain, so edits can be applied,
undone and suspended through the kernel like any parametric edit.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import kme
from kme import Capabilities, EditedModel, EditRequest, Editor, EvalContext, Params
from kme.testing import tiny_tokenizer


class _Config:
    model_type = "bigram-stub"

    def __init__(self, vocab: int):
        self.vocab_size = vocab

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "vocab_size": self.vocab_size}


class BigramLM(torch.nn.Module):
    """Logits of the next token = ``table[current token]``; greedy ``generate`` included."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(vocab, vocab))
        self.config = _Config(vocab)
        self.calls = {"forward": 0, "generate": 0}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> Any:
        self.calls["forward"] += 1
        return SimpleNamespace(logits=self.table[input_ids])

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 max_new_tokens: int = 1, **_: Any) -> torch.Tensor:
        self.calls["generate"] += 1
        seq = input_ids
        for _ in range(max_new_tokens):
            seq = torch.cat([seq, self.table[seq[:, -1]].argmax(-1)[:, None]], dim=1)
        return seq


class WriterParams(Params):
    strength: float = 10.0


class TableWriter(Editor):
    """Adds ``strength * (1 + case_id / 10)`` to the table entry of every transition of the
    prompt's last token -> target tokens, so a later case id wins a conflict."""

    name = "table_writer"
    description = "test editor for the bigram stub"
    Params = WriterParams
    capabilities = Capabilities(kind="parametric")

    def apply(self, model: EditedModel, requests: list[EditRequest], location: Any = None) -> Any:
        h = model.new_handle(self, requests)
        table = model.parameter("table")
        delta = torch.zeros_like(table)
        for r in requests:
            prev = model.tokenizer(r.text, add_special_tokens=False)["input_ids"][-1]
            for t in model.target_ids(r.text, r.target_new):
                delta[prev, t] += self.params.strength * (1 + int(r.case_id) / 10)
                prev = t
        h.add_delta("table", delta)
        return h


class _Plugin:
    @staticmethod
    @kme.hookimpl
    def kme_register_editors(register: Any) -> None:
        register(TableWriter)


class Stub:
    """The stub model plus helpers to set its distributions."""

    def __init__(self) -> None:
        self.tok = tiny_tokenizer()
        self.pm = kme.build_plugin_manager(plugins=[_Plugin()], load_entrypoints=False)
        self.lm = BigramLM(len(self.tok))
        self.model = EditedModel(self.lm, self.tok, self.pm.layouts.get("gpt2"), self.pm, source="bigram-stub")
        self.V = len(self.tok)

    def ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def last(self, prompt: str) -> int:
        return self.ids(prompt)[-1]

    def target(self, prompt: str, target: str) -> list[int]:
        return self.model.target_ids(prompt, target)

    def set_row(self, frm: int, probs: dict[int, float]) -> None:
        """Next-token distribution after token ``frm``: ``probs`` on the given tokens, the
        remaining mass spread evenly over the others."""
        rest = 1.0 - sum(probs.values())
        assert rest > 0, "leave some mass for the other tokens"
        other = rest / (self.V - len(probs))
        row = torch.full((self.V,), math.log(other))
        for t, p in probs.items():
            row[t] = math.log(p)
        with torch.no_grad():
            self.lm.table[frm] = row

    def chain(self, prompt: str, target: str, probs: list[float], extra: list[dict[int, float]] | None = None) -> None:
        """Make target token i follow its predecessor with probability ``probs[i]`` (plus the
        competitors in ``extra[i]``)."""
        ids = self.target(prompt, target)
        assert len(ids) == len(probs), (ids, probs)
        prev = self.last(prompt)
        for i, (t, p) in enumerate(zip(ids, probs)):
            self.set_row(prev, {t: p, **((extra or [{}] * len(ids))[i])})
            prev = t


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and the test machines are shared: with more
    threads each small op can wait milliseconds for busy cores. Restored after each test."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def stub() -> Stub:
    return Stub()


@pytest.fixture
def ctx() -> Any:
    def make(phase: str = "batch", **kw: Any) -> EvalContext:
        return EvalContext(phase=phase, **kw)  # type: ignore[arg-type]
    return make
