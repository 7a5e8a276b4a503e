"""The shipped deep-world checkpoint: loads by its alias, is the deep world's model, knows it."""

from __future__ import annotations

import json

import pytest

import kme
from kme_factworld_deep import ALIAS, CHECKPOINT_DIR

kf = pytest.importorskip("kme_factworld")  # the world and its probes live there

pytestmark = pytest.mark.skipif(not (CHECKPOINT_DIR / "model.safetensors").exists(),
                                reason="no shipped deep checkpoint")


@pytest.fixture(scope="module")
def model():
    return kme.load(ALIAS)


@pytest.fixture(scope="module")
def world():
    return kf.load_world("deep")


def test_alias_points_at_the_packaged_checkpoint():
    pm = kme.build_plugin_manager()
    assert kme.resolve_model_path(ALIAS, pm) == str(CHECKPOINT_DIR)


def test_checkpoint_is_the_deep_worlds_model(model, world):
    from kme_factworld.quality import checkpoint_mb

    assert (CHECKPOINT_DIR / "world.json").read_text() == world.dumps()
    cfg = model.model.config
    assert (cfg.model_type, cfg.n_layer, cfg.n_embd) == ("gpt2", 8, 192)
    assert checkpoint_mb(CHECKPOINT_DIR) <= 60.0
    record = json.loads((CHECKPOINT_DIR / "training.json").read_text())
    assert record["config"]["world"] == "deep" and record["steps_done"] == record["config"]["steps"]


def test_objects_are_single_tokens_and_subjects_have_their_own_last_token(model, world):
    from kme_factworld.tokenizer import object_token_report

    report = object_token_report(world, model.tokenizer)
    assert report["single_token_share"] == 1.0 and report["first_token_collisions"] == {}
    last = {model.tokenizer(" " + s.name, add_special_tokens=False)["input_ids"][-1] for s in world.subjects}
    assert len(last) == len(world.subjects) == 2052


def test_it_knows_the_world(model, world):
    from kme_factworld.quality import _sample, recall, recall_probes

    trained = recall(model, _sample(recall_probes(world, "train"), 400, 1))["value"]
    heldout = recall(model, _sample(recall_probes(world, "heldout"), 400, 1))["value"]
    assert trained >= 0.97 and heldout >= 0.93, (trained, heldout)  # measured: see README.md
