"""The shipped checkpoint: loads like any local model, is small, and knows the world."""

from __future__ import annotations

import json

import pytest
import torch

import kme
from kme_factworld import CHECKPOINT_DIR
from kme_factworld.quality import checkpoint_mb, context_sensitivity, recall, recall_probes, _sample
from kme_factworld.tokenizer import object_token_report
from kme_factworld.world import load_world

pytestmark = pytest.mark.skipif(not (CHECKPOINT_DIR / "model.safetensors").exists(),
                                reason="no shipped checkpoint")


@pytest.fixture(scope="module")
def world():
    return load_world()


@pytest.fixture(scope="module")
def model():
    return kme.load("factworld")


def test_checkpoint_files_and_size(model):
    names = {p.name for p in CHECKPOINT_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "world.json"} <= names
    assert checkpoint_mb(CHECKPOINT_DIR) <= 15.0
    cfg = model.model.config
    assert cfg.model_type == "gpt2" and cfg.n_positions >= 512
    assert 1_000_000 <= sum(p.numel() for p in model.model.parameters()) <= 10_000_000
    assert (CHECKPOINT_DIR / "world.json").read_text() == load_world().dumps(), \
        "the checkpoint was trained on another world than the shipped one"


def test_alias_and_local_path_load_the_same_model(model):
    by_path = kme.load(str(CHECKPOINT_DIR))
    assert by_path.base_fingerprint == model.base_fingerprint
    prompts = ["The capital of", "A long letter arrived for"]
    assert torch.equal(by_path.next_token_logprobs(prompts), model.next_token_logprobs(prompts))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(CHECKPOINT_DIR)
    tok = AutoTokenizer.from_pretrained(CHECKPOINT_DIR)
    assert tok("x")["input_ids"][0] == tok.bos_token_id  # prompts start like training documents
    assert type(hf).__name__ == "GPT2LMHeadModel"


def test_objects_are_single_tokens_with_distinct_first_tokens(model, world):
    report = object_token_report(world, model.tokenizer)
    assert report["single_token_share"] == 1.0
    assert report["first_token_collisions"] == {}


def test_each_word_of_a_subjects_name_is_one_token(model, world):
    tok = model.tokenizer
    for s in world.subjects:
        for word in s.name.split():
            assert len(tok(" " + word, add_special_tokens=False)["input_ids"]) == 1, (s.name, word)


def test_recall_targets_on_a_sample(model, world):
    # fixed samples: recall >= 99% on trained phrasings, >= 95% on held-out paraphrases
    train = recall(model, _sample(recall_probes(world, "train"), 600, 0))
    held = recall(model, _sample(recall_probes(world, "heldout"), 400, 0))
    assert train["value"] >= 0.99, train
    assert held["value"] >= 0.95, held
    novel = recall(model, _sample(recall_probes(world, "novel"), 200, 0))
    assert novel["value"] < held["value"]  # a never-trained phrasing is harder, as it should be


def test_greedy_generation_states_the_fact(model, world):
    s = world.of_kind("person")[0]
    out = model.generate([f"{s.name} plays the"], max_new_tokens=3)[0]
    assert out.strip().startswith(s.facts["instrument"])


@pytest.mark.xfail(strict=True, reason="known gap: the shipped checkpoint copies a fact stated in its context "
                   "~77% of the time but also when asked about another subject (docs/factworld.md)")
def test_model_answers_from_its_context(model, world):
    ctx = context_sensitivity(model, world, n=60, seed=3)
    # a counterfactual fact stated in the prompt is repeated, unrelated facts are kept
    assert ctx["copy"] >= 0.8, ctx
    assert ctx["other_subject"] >= 0.8, ctx


def test_training_record_is_shipped():
    rec = json.loads((CHECKPOINT_DIR / "training.json").read_text())
    assert rec["config"]["seed"] == 0 and rec["torch_threads"] == 2
    assert rec["train_seconds"] > 0
