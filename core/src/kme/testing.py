"""Helpers for tests of kme and of kme plugins: tiny random models of every supported
family, built from config with no download, and a byte-level tokenizer trained on the spot."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from kme.edited import EditedModel
    from kme.plugins import KmePluginManager

__all__ = ["tiny_tokenizer", "tiny_config", "tiny_model", "TINY_FAMILIES"]

TINY_FAMILIES = ("gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2")

_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Alice Smith was born in London and works for Acme. Bob Jones speaks French.",
    "The Eiffel Tower is located in Paris. The Colosseum is located in Rome.",
    "Danielle Darrieux's mother tongue is French. Toko Yasuda plays the piano.",
    "0 1 2 3 4 5 6 7 8 9 a b c d e f g h i j k l m n o p q r s t u v w x y z",
]


@functools.lru_cache(maxsize=1)
def tiny_tokenizer(vocab_size: int = 320) -> Any:
    """A byte-level BPE tokenizer (GPT-2 style, ``<|endoftext|>`` as bos/eos/pad)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    return fast


def tiny_config(family: str, vocab_size: int, n_layer: int = 4, d: int = 32) -> Any:
    from transformers import (GPT2Config, GPTJConfig, GPTNeoXConfig, LlamaConfig, MistralConfig,
                              Qwen2Config)

    common = dict(vocab_size=vocab_size, bos_token_id=0, eos_token_id=0)
    if family == "gpt2":
        return GPT2Config(n_layer=n_layer, n_embd=d, n_head=2, n_positions=128, **common)
    if family == "gptj":
        return GPTJConfig(n_layer=n_layer, n_embd=d, n_head=2, n_positions=128, rotary_dim=8, **common)
    if family == "gpt_neox":
        return GPTNeoXConfig(num_hidden_layers=n_layer, hidden_size=d, num_attention_heads=2,
                             intermediate_size=4 * d, max_position_embeddings=128, **common)
    cls = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config}[family]
    return cls(num_hidden_layers=n_layer, hidden_size=d, num_attention_heads=2, num_key_value_heads=1,
               intermediate_size=2 * d, max_position_embeddings=128, **common)


def tiny_model(family: str = "gpt2", pm: "KmePluginManager | None" = None, *, seed: int = 0,
               n_layer: int = 4, d: int = 32) -> "EditedModel":
    """A randomly initialised model of ``family`` wrapped as an :class:`EditedModel`."""
    import torch
    from transformers import AutoModelForCausalLM

    from kme.edited import EditedModel
    from kme.plugins import build_plugin_manager

    pm = pm or build_plugin_manager(load_entrypoints=False)
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, len(tok), n_layer, d))
    model.eval()
    return EditedModel(model, tok, pm.layouts.get(model.config.model_type), pm, source=f"tiny-{family}")
