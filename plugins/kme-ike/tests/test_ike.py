"""IKE meets the editor contract; builds the paper's three demonstration kinds from requests
outside the evaluation, retrieves the nearest ones, answers every query from the whole edit
memory, and composes with parametric editors."""

from __future__ import annotations

import json

import pytest
import torch

import kme
from kme.conformance import EditorConformance, default_requests
from kme.testing import tiny_model

from kme_memlib.retrieval import Index, TfidfEmbedder, make_embedder

from kme_ike.demos import build_demos


def _demo_requests() -> list[kme.EditRequest]:
    return [
        kme.EditRequest(case_id="d1", prompt="The capital of {} is", subject="Italy", target_new="Milan",
                        target_true="Rome", paraphrase_prompts=["Italy's capital city is"],
                        neighborhood=[kme.Probe(prompt="The capital of Spain is", target="Madrid")]),
        kme.EditRequest(case_id="d2", prompt="{} speaks", subject="Carol White", target_new="German",
                        paraphrase_prompts=["The language of Carol White is"],
                        neighborhood=[kme.Probe(prompt="Dan Black speaks", target="English")]),
    ]


class ToyDemoDataset(kme.Dataset):
    name = "toy-demos"
    description = "two requests in the train split"

    def load(self):
        return iter([])

    def train_requests(self):
        return iter(_demo_requests())


class ToyPlugin:
    @kme.hookimpl
    def kme_register_datasets(self, register):
        register(ToyDemoDataset)


class TestIKEConformance(EditorConformance):
    editor_name = "ike"
    params = {"k": 0}


@pytest.fixture(scope="module")
def pm():
    return kme.build_plugin_manager([ToyPlugin()])


@pytest.fixture
def demo_file(tmp_path):
    path = tmp_path / "demos.json"
    path.write_text(json.dumps([r.model_dump(mode="json") for r in _demo_requests()]))
    return str(path)


def test_three_demonstration_kinds():
    demos = build_demos(_demo_requests())
    assert [d.kind for d in demos] == ["copy", "update", "retain"] * 2
    assert demos[0].text == "New Fact: The capital of Italy is Milan\nPrompt: The capital of Italy is Milan\n\n"
    assert demos[1].text.endswith("Prompt: Italy's capital city is Milan\n\n")
    assert demos[2].text.endswith("Prompt: The capital of Spain is Madrid\n\n")


def test_context_is_nearest_demos_then_the_new_fact(pm, demo_file):
    m = tiny_model("gpt2", pm)
    r = default_requests()[0]  # The capital of France is -> Rome
    h = m.edit("ike", [r], {"k": 1, "demo_file": demo_file, "max_context_tokens": 100})
    ctx = h.memory[0]["context"]
    # the nearest demonstration is about a capital; the new fact comes last
    assert ctx.startswith("New Fact: The capital of Italy is Milan\nPrompt: The capital of ")
    assert len(h.memory[0]["demo_kinds"]) == 1
    assert ctx.endswith("New Fact: The capital of France is Rome\nPrompt: ")
    assert m.memory_contexts([r.text]) == [ctx]
    # scoring places the context before the query
    manual = m.score([ctx + r.text], [r.target_new], use_memory=False)[0].logprob
    assert m.score([r.text], [r.target_new])[0].logprob == pytest.approx(manual, abs=1e-5)


def test_demonstrations_from_a_dataset_train_split(pm):
    m = tiny_model("gpt2", pm)
    h = m.edit("ike", default_requests()[2:], {"k": 6, "demos": {"dataset": "toy-demos"},
                                                "max_context_tokens": 10_000})
    assert h.meta["ike"]["demo_pool"] == 6 and h.memory[0]["demo_kinds"][-1] in {"copy", "update", "retain"}
    assert len(h.memory[0]["demo_kinds"]) == 6


def test_context_budget_drops_the_least_similar_demos(pm, demo_file):
    m = tiny_model("gpt2", pm)
    r = default_requests()[0]
    full = m.edit("ike", [r], {"k": 6, "demo_file": demo_file, "max_context_tokens": 10_000}).memory[0]
    assert len(full["demo_kinds"]) == 6
    m.undo()
    n_tokens = len(m.tokenizer(full["context"])["input_ids"])
    cut = m.edit("ike", [r], {"k": 6, "demo_file": demo_file, "max_context_tokens": n_tokens - 5}).memory[0]
    assert 0 < len(cut["demo_kinds"]) < len(full["demo_kinds"])
    assert full["context"].endswith(cut["context"])  # the most similar (last) ones are kept


def test_sequential_edits_share_one_memory(pm):
    m = tiny_model("gpt2", pm)
    reqs = default_requests()
    for r in reqs:
        m.edit("ike", [r], {"k": 0})
    ctx = m.memory_contexts(["Bob Jones is a", "Where was Alice Smith born?"])
    assert ctx == ["New Fact: Bob Jones speaks Italian\nPrompt: ", "New Fact: Alice Smith was born in Paris\nPrompt: "]
    m.undo(m.stack[2])
    assert m.memory_contexts(["Bob Jones is a"])[0].startswith("New Fact: ")
    assert "Bob Jones" not in m.memory_contexts(["Bob Jones is a"])[0]


def test_several_facts_per_query(pm):
    m = tiny_model("gpt2", pm)
    m.edit("ike", default_requests(), {"k": 0, "facts_per_query": 2})
    ctx = m.memory_contexts(["Bob Jones speaks"])[0]
    assert ctx.endswith("New Fact: Bob Jones speaks Italian\nPrompt: ") and ctx.count("New Fact:") == 2


def test_composes_with_a_parametric_edit(pm):
    m = tiny_model("gpt2", pm)
    r = default_requests()[0]
    w = m.parameter(m.weight_name(1)).detach().clone()
    m.edit("ft-l", [r], {"layers": [1], "steps": 3, "lr": 1e-2, "norm_constraint": 1e-2})
    m.edit("ike", [r], {"k": 0})
    assert not torch.equal(m.parameter(m.weight_name(1)).detach(), w)
    assert m.memory_contexts([r.text]) == ["New Fact: The capital of France is Rome\nPrompt: "]
    m.undo()
    assert torch.equal(m.parameter(m.weight_name(1)).detach(), w) and m.memory_contexts([r.text]) == [""]


def test_tfidf_weighs_rare_names():
    idx = Index(["Alice Smith was born in Paris", "Bob Jones was born in Rome", "The capital of France is Rome"],
                TfidfEmbedder())
    assert idx.search(["Where was Bob Jones born"], 1)[0][0][0] == 1
    assert idx.search(["capital of France"], 1)[0][0][0] == 2


def test_missing_embedding_model_is_a_clear_error(pm, tmp_path):
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.KmeError, match="cannot load the sentence-embedding model"):
        make_embedder("transformers", m, str(tmp_path / "no-model"))
    with pytest.raises(kme.KmeError, match="needs embedder_model"):
        make_embedder("transformers", m, None)


def test_lm_embedder_retrieves(pm):
    m = tiny_model("gpt2", pm)
    m.edit("ike", default_requests(), {"k": 0, "embedder": "lm"})
    ctx = m.memory_contexts([r.text for r in default_requests()])
    assert all(c.startswith("New Fact: ") for c in ctx)


def test_bad_demo_file_names_the_record(pm, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"case_id": 1, "prompt": "x {}", "subject": "y"}) + "\n")
    m = tiny_model("gpt2", pm)
    with pytest.raises(kme.KmeError, match="record 0"):
        m.edit("ike", default_requests()[:1], {"demo_file": str(bad)})


def test_transformers_embedder_loads_a_local_encoder(pm, tmp_path):
    from transformers import BertConfig, BertModel

    from kme.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, pad_token_id=tok.pad_token_id)).save_pretrained(str(tmp_path))
    tok.save_pretrained(str(tmp_path))
    m = tiny_model("gpt2", pm)
    emb = make_embedder("transformers", m, str(tmp_path))
    vecs = emb.embed(["Alice Smith was born in", "Bob Jones speaks"])
    assert vecs.shape == (2, 16) and torch.allclose(vecs.norm(dim=-1), torch.ones(2), atol=1e-5)
    m.edit("ike", default_requests(), {"k": 0, "embedder": "transformers", "embedder_model": str(tmp_path)})
    assert all(c.startswith("New Fact: ") for c in m.memory_contexts(["Alice Smith was born in"]))
