"""Throwaway plugins for kernel tests: a dataset, metrics, a parametric editor, a memory
editor and a locator, defined with the public API only."""

from __future__ import annotations

import os
from typing import Any

import torch

import kme
from kme import Capabilities, Dataset, Editor, EditRequest, Locator, Metric, Params, Probe

FACTS = [
    ("The capital of {} is", "France", "Paris", "Rome"),
    ("The capital of {} is", "Italy", "Rome", "Paris"),
    ("{} was born in", "Alice Smith", "London", "Paris"),
    ("{} speaks", "Bob Jones", "French", "Italian"),
    ("The Eiffel Tower is located in {}", "Paris", "France", "Italy"),
    ("{} works for", "Toko Yasuda", "Acme", "Rome"),
]


class ToyDataset(Dataset):
    name = "toy"
    description = "six hand-written facts"
    source_format = "in-memory"

    class Params(Params):
        limit: int | None = None
        broken: bool = False
        with_train_split: bool = False

    def load(self) -> list[EditRequest]:
        if self.params.broken:
            from kme.errors import DatasetRecordError

            raise DatasetRecordError("record 3 is missing field 'subject'", where="toy.json")
        out = []
        for i, (prompt, subj, true, new) in enumerate(FACTS):
            out.append(EditRequest(case_id=i, prompt=prompt, subject=subj, target_new=new, target_true=true,
                                   paraphrase_prompts=[prompt.replace("{}", subj) + ","],
                                   neighborhood=[Probe(prompt="The capital of Spain is", target="Madrid")]))
        return out[: self.params.limit]

    def train_requests(self) -> list[EditRequest]:
        if not self.params.with_train_split:
            return []
        return [EditRequest(case_id=f"t{i}", prompt=p, subject=s, target_new=t, target_true=n)
                for i, (p, s, t, n) in enumerate(FACTS)]


class TargetLogprob(Metric):
    """Mean log-probability of the new target on the edit prompt."""

    name = "toy_logprob"
    scoring = "log-probability"

    def compute(self, model, requests, context) -> list[float | None]:
        scores = model.score([r.text for r in requests], [r.target_new for r in requests])
        return [s.mean_logprob for s in scores]


class Phase(Metric):
    """Records the phase it was called in (1 = baseline, 2 = batch, 3 = checkpoint) and the
    number of requests; checks that prepare() ran first."""

    name = "toy_phase"
    scoring = "bookkeeping"

    def prepare(self, model, requests, context) -> None:
        context.cache[self.name] = {"prepared": len(requests)}

    def compute(self, model, requests, context) -> list[float | None]:
        assert context.cache[self.name]["prepared"] >= len(requests)
        code = {"baseline": 1.0, "batch": 2.0, "checkpoint": 3.0}[context.phase]
        return [code] * len(requests)


class ShiftParams(Params):
    scale: float = 1.0
    layer: int = 0
    make_nan: bool = False


class ShiftEditor(Editor):
    """Adds a random rank-one matrix to one MLP output projection (deterministic per request)."""

    name = "toy_shift"
    description = "random rank-one weight change; for kernel tests"
    Params = ShiftParams
    capabilities = Capabilities(kind="parametric")

    def apply(self, model, requests, location=None):
        crash = os.environ.get("KME_TOY_CRASH_AT")
        if crash is not None and any(str(r.case_id) == crash for r in requests):
            raise RuntimeError(f"simulated crash at case {crash}")
        stop = os.environ.get("KME_TOY_INTERRUPT_AT")  # as if the user pressed Ctrl-C here
        if stop is not None and any(str(r.case_id) == stop for r in requests):
            raise KeyboardInterrupt(f"simulated interruption at case {stop}")
        h = model.new_handle(self, requests)
        layer = location.layers[0] if location and location.layers else self.params.layer
        name = model.weight_name(layer, "mlp_out")
        w = model.parameter(name)
        for r in requests:
            g = torch.Generator().manual_seed(hash(str(r.case_id)) % 2**31)
            u = torch.randn(w.shape[0], 1, generator=g)
            v = torch.randn(1, w.shape[1], generator=g)
            delta = self.params.scale * u @ v
            if self.params.make_nan:
                delta[0, 0] = float("nan")
            h.add_delta(name, delta)
        return h


class MemoryEditor(Editor):
    """Stores each request's new fact and prepends it to queries mentioning the subject."""

    name = "toy_memory"
    description = "prepend stored facts; for kernel tests"
    capabilities = Capabilities(kind="memory")

    def apply(self, model, requests, location=None):
        h = model.new_handle(self, requests)
        for r in requests:
            h.memory.append({"subject": r.subject, "fact": f"{r.text} {r.target_new}."})
        return h

    def lookup(self, model, handle, prompts):
        hits = []
        for i, p in enumerate(prompts):
            for item in handle.memory:
                if item["subject"] in p:
                    hits.append(kme.MemoryHit(prompt_index=i, source=self.name, context=item["fact"] + " "))
        return hits


class OneAtATime(Editor):
    name = "toy_single"
    description = "refuses batches"
    capabilities = Capabilities(batch=False, sequential=False)

    def apply(self, model, requests, location=None):
        return model.new_handle(self, requests)


class TrainedParams(Params):
    checkpoint: str | None = None


class TrainedEditor(Editor):
    """Needs training: ``train`` writes the number of training requests to a file, ``apply``
    refuses to run without it."""

    name = "toy_trained"
    description = "needs a trained checkpoint; for kernel tests"
    Params = TrainedParams
    capabilities = Capabilities(kind="parametric", needs_training=True)
    trained_calls = 0

    def is_trained(self) -> bool:
        return self.params.checkpoint is not None

    def train(self, model, requests, out_dir):
        type(self).trained_calls += 1
        with open(os.path.join(out_dir, "weights.txt"), "w") as f:
            f.write(str(len(requests)))
        return {"checkpoint": out_dir}

    def apply(self, model, requests, location=None):
        with open(os.path.join(self.params.checkpoint, "weights.txt")) as f:
            n = int(f.read())
        h = model.new_handle(self, requests)
        h.meta["trained_on"] = n
        return h


class ReverseParams(Params):
    skip: int = 0


class ReverseProtocol(kme.RunProtocol):
    """Independent batches, last batch first, skipping the first ``skip`` of them."""

    name = "toy_reverse"
    description = "batches in reverse order; for kernel tests"
    Params = ReverseParams

    def run(self, session) -> None:
        for b in reversed(range(self.params.skip, len(session.batches))):
            if b in session.recorded:
                continue
            batch = session.batches[b]
            result = session.apply(b, batch)
            values = session.score_batch(batch, result) if result.ok else {}
            session.model.undo()
            session.record(b, batch, result, values)


class Accumulate(kme.RunProtocol):
    name = "toy_accumulate"
    description = "edits accumulate; for kernel tests"
    kind = "sequential"

    def run(self, session) -> None:
        for b, batch in enumerate(session.batches):
            result = session.apply(b, batch)
            session.record(b, batch, result, session.score_batch(batch, result) if result.ok else {})


class LastLayer(Locator):
    name = "toy_last_layer"
    description = "always the last layer"

    def locate(self, model, requests):
        return kme.Location(locator=self.name, layers=[model.num_layers - 1])


@kme.hookimpl
def kme_register_datasets(register) -> None:
    register(ToyDataset)


@kme.hookimpl
def kme_register_metrics(register) -> None:
    register(TargetLogprob)
    register(Phase)


@kme.hookimpl
def kme_register_editors(register) -> None:
    register(ShiftEditor)
    register(MemoryEditor)
    register(OneAtATime)
    register(TrainedEditor)


@kme.hookimpl
def kme_register_protocols(register) -> None:
    register(ReverseProtocol)
    register(Accumulate)


@kme.hookimpl
def kme_register_locators(register) -> None:
    register(LastLayer)


def save_tiny(path: Any, family: str = "gpt2") -> str:
    """Write a tiny random model + tokenizer to ``path`` (a local model directory)."""
    from kme.testing import tiny_model

    m = tiny_model(family)
    m.model.save_pretrained(str(path))
    m.tokenizer.save_pretrained(str(path))
    return str(path)
