"""Batches halved on out-of-memory (kme_editlib.fit, EditedModel.score) give the results of
the un-halved batches; key statistics stream length-sorted blocks and keep the plain pass's C."""

import itertools

import pytest
import torch
from structlog.testing import capture_logs

import kme
from kme.testing import tiny_model
from kme_editlib import stats as S
from kme_editlib.fit import Fit, is_out_of_memory
from kme_editlib.hooks import HookSet, capture_keys_values, module_at
from kme_editlib.keys import average_keys
from kme_editlib.targets import TargetConfig, optimise_targets


def _oom_above(monkeypatch, model, k: int, error=None) -> list[int]:
    """The model's forward raises an out-of-memory error on batches of more than ``k`` rows;
    returns the list of batch sizes that ran."""
    real = model.model.forward
    seen: list[int] = []

    def forward(*a, **kw):
        rows = (kw.get("input_ids") if "input_ids" in kw else a[0]).shape[0]
        if rows > k:
            raise error or torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        seen.append(rows)
        return real(*a, **kw)

    monkeypatch.setattr(model.model, "forward", forward)
    return seen


def _halved(logs) -> list[dict]:
    return [e for e in logs if e.get("event") == "batch.halved"]


def test_out_of_memory_is_recognised_and_other_errors_are_not():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                                         "memory: you tried to allocate 123 bytes"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_fit_halves_down_to_one_row_then_raises_and_never_spans_original_batches():
    calls = []

    def fn(start, stop):
        calls.append((start, stop))
        if stop - start > 2:
            raise MemoryError

    fit = Fit(5, "test")
    with capture_logs() as logs:
        fit.run(12, fn)
    done = [c for c in calls if c[1] - c[0] <= 2]
    assert sorted(done) == [(0, 2), (2, 4), (4, 5), (5, 7), (7, 9), (9, 10), (10, 12)]
    assert fit.size == 2 and [e["batch_size"] for e in _halved(logs)] == [2]
    assert _halved(logs)[0]["where"] == "test" and _halved(logs)[0]["log_level"] == "warning"

    def always(start, stop):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        Fit(4, "test").run(3, always)

    def other(start, stop):
        raise RuntimeError("not memory")

    with pytest.raises(RuntimeError, match="not memory"):
        Fit(4, "test").run(3, other)


def _plain_second_moment(model, texts, layer, batch_size, max_length=128):
    """The pass statistics used to make: corpus order, each batch padded to its longest record."""
    from kme import pad_sequences

    total = torch.zeros(1, dtype=torch.float64)
    n = 0
    for s in range(0, len(texts), batch_size):
        enc = [e for e in model.tokenizer(texts[s:s + batch_size], truncation=True, max_length=max_length)["input_ids"]
               if e]
        ids, mask = pad_sequences(enc, model.tokenizer.pad_token_id)
        got = {}
        with torch.no_grad(), HookSet() as hs:
            hs.on_input(module_at(model, layer, "mlp_out"), lambda x: got.__setitem__("k", x[mask.bool()].double()))
            model.model(input_ids=ids, attention_mask=mask, use_cache=False)
        total = total + got["k"].T @ got["k"]
        n += int(mask.sum())
    return total / n


@pytest.fixture(scope="module")
def factworld():
    pm = kme.build_plugin_manager()
    return kme.load_model("factworld", pm), pm


def test_statistics_keep_the_plain_passes_result_and_report_tokens_per_second(factworld, tmp_path):
    model, pm = factworld
    texts = list(itertools.islice(pm.corpora.get("factworld").records(), 200))
    info: dict = {}
    got = S.key_second_moments(model, [1, 3], corpus="factworld", samples=200, cache_dir=tmp_path, batch_size=32,
                               progress=False, info=info)
    for layer in (1, 3):
        ref = _plain_second_moment(model, texts, layer, 32)
        rel = float((got[layer].double() - ref.float().double()).abs().max() / ref.abs().max())
        assert rel < 1e-10, (layer, rel)
    tokens = sum(len(e) for e in model.tokenizer(texts)["input_ids"])
    assert info["tokens"] == info["tokens_computed"] == tokens and info["tokens_per_s"] > 0


def test_statistics_halved_on_out_of_memory_are_the_same(factworld, tmp_path, monkeypatch):
    model, _ = factworld
    ref = S.key_second_moments(model, [2], corpus="factworld", samples=150, cache_dir=tmp_path / "a",
                               batch_size=16, progress=False)[2]
    seen = _oom_above(monkeypatch, model, 5)
    info: dict = {}
    with capture_logs() as logs:
        got = S.key_second_moments(model, [2], corpus="factworld", samples=150, cache_dir=tmp_path / "b",
                                   batch_size=16, progress=False, info=info)[2]
    sizes = [e["batch_size"] for e in _halved(logs)]
    assert max(seen) <= 5 and info["batch_size"] == sizes[-1] <= 5 and sizes == sorted(sizes, reverse=True)
    assert {e["where"] for e in _halved(logs)} == {"key statistics"}
    assert float((got.double() - ref.double()).abs().max() / ref.abs().max()) < 1e-10


def _requests(n):
    people = ["Alice Smith", "Bob Jones", "Carla Gomez", "Dmitri Ivanov", "Eve Moreau", "Farid Haddad"]
    return [kme.EditRequest(case_id=i, prompt="{} works in the city of",
                            subject=people[i % len(people)] + " Jr" * (i // 6),
                            target_new=" Paris", target_true=" Rome") for i in range(n)]


def test_key_capture_halved_on_out_of_memory_is_the_same(monkeypatch):
    m = tiny_model("gpt2")
    reqs = _requests(7)
    prefixes = ["", "A long day. ", "Yes. ", "It is known that, in this old town, "]
    ref = average_keys(m, reqs, [0, 1], prefixes, fact_token="last", batch_size=8)
    seqs = [m.tokenizer(p + r.prompt.format(r.subject))["input_ids"] for r in reqs for p in prefixes]
    idx = [len(s) - 1 for s in seqs]
    ref_kv = capture_keys_values(m, seqs, idx, [1], batch_size=8, values=True)
    seen = _oom_above(monkeypatch, m, 3)
    with capture_logs() as logs:
        got = average_keys(m, reqs, [0, 1], prefixes, fact_token="last", batch_size=8)
        got_kv = capture_keys_values(m, seqs, idx, [1], batch_size=8, values=True)
    assert max(seen) <= 3 and {e["where"] for e in _halved(logs)} == {"key capture"}
    for layer in (0, 1):
        assert torch.equal(got[layer], ref[layer])
    assert torch.equal(got_kv[1][0], ref_kv[1][0]) and torch.equal(got_kv[1][1], ref_kv[1][1])


def test_target_optimisation_halved_on_out_of_memory_is_the_same(monkeypatch):
    m = tiny_model("gpt2")
    reqs = _requests(5)
    prefixes = ["", "A long day. ", "Yes. "]
    cfg = TargetConfig(steps=6, kl_factor=0.0625, fact_token="last", clamp_norm_factor=1000.0, chunk_size=64)
    pts = [(1, "mlp_out"), (2, "mlp_out")]
    ref = optimise_targets(m, reqs, pts, prefixes, cfg)
    seen = _oom_above(monkeypatch, m, 3)
    with capture_logs() as logs:
        got = optimise_targets(m, reqs, pts, prefixes, cfg)
    assert max(seen) <= 3 and _halved(logs)[0]["where"] == "target optimisation"
    for pt in pts:
        assert torch.allclose(got.delta[pt], ref.delta[pt], rtol=0, atol=1e-6)
        assert torch.equal(got.init[pt], ref.init[pt])
    assert got.steps == ref.steps


@pytest.mark.parametrize("error", [None, RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                                                      "allocate 1099511627776 bytes")])
def test_evaluation_halved_on_out_of_memory_is_the_same(monkeypatch, error):
    m = tiny_model("gpt2")
    prompts = [f"Person {'x ' * (i % 5)}number {i} lives in" for i in range(11)]
    targets = [" Paris", " Rome and Milan", " Oslo"] * 3 + [" Lima", " Kyiv"]
    ref_s = m.score(prompts, targets, batch_size=8)
    ref_n = m.next_token_logprobs(prompts, batch_size=8)
    seen = _oom_above(monkeypatch, m, 2, error)
    with capture_logs() as logs:
        got_s = m.score(prompts, targets, batch_size=8)
        got_n = m.next_token_logprobs(prompts, batch_size=8)
    assert max(seen) <= 2
    assert {e["where"] for e in _halved(logs)} == {"score", "next_token_logprobs"}
    assert got_s == ref_s and torch.equal(got_n, ref_n)
