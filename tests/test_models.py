"""Model access: layouts for every supported family, loading errors."""

from __future__ import annotations

import pytest
import torch

from kme.errors import KmeError, ModelLoadError
from kme.models.loading import load_model
from kme.testing import TINY_FAMILIES, tiny_model


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_layout_resolves_every_module(pm, family):
    m = tiny_model(family, pm)
    found = m.layout.resolve_all(m.model)
    assert isinstance(found["mlp_out"], torch.nn.Module)
    w = m.parameter(m.layout.weight_name(m.num_layers - 1, "mlp_out"))
    inner = m.model.config.to_dict().get("n_inner") or m.model.config.to_dict().get("intermediate_size") \
        or 4 * m.model.config.to_dict().get("n_embd", 0)
    # viewed as [out, in]: out = hidden size, in = MLP width
    assert m.layout.out_weight_as_linear(w).shape[1] == inner
    assert m.num_layers == 4
    with pytest.raises(KmeError, match="layer 7 does not exist"):
        m.layout.module(m.model, 7, "mlp_out")


def test_local_path_loads_like_any_model(pm, model_dir):
    m = load_model(model_dir, pm)
    assert m.layout.model_type == "gpt2" and m.stack == []
    assert m.base_fingerprint == load_model({"name": model_dir} if False else model_dir, pm).base_fingerprint


def test_unknown_architecture_is_refused(pm, tmp_path):
    from transformers import AutoModelForCausalLM, OPTConfig

    from kme.testing import tiny_tokenizer

    cfg = OPTConfig(vocab_size=len(tiny_tokenizer()), hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                    num_attention_heads=2, word_embed_proj_dim=16)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="no layout covers architecture 'opt'") as e:
        load_model(str(tmp_path), pm)
    assert "kme_register_model_layouts" in e.value.render()


def test_missing_path_and_unreachable_hub(pm):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("./no/such/model", pm)
    with pytest.raises(ModelLoadError, match="hub cannot be reached"):
        load_model("some-org/some-model-that-is-not-here", pm)
