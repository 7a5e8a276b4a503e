"""The models the locate-and-edit papers published settings for, as preset matches, and the
statistics settings those releases share (Wikipedia, 100,000 records).

Method plugins build their presets (``kme_register_presets``) from these, so that
``kme presets rome --model gpt2-xl`` and a run on GPT-2 XL pick the paper's settings.
Matches are by config shape, so a local copy or fine-tune of the same architecture matches
too; ``preset: none`` turns a preset off.
"""

from __future__ import annotations

import kme

__all__ = ["GPT2_XL", "GPT_J_6B", "LLAMA3_8B", "WIKIPEDIA_STATS"]

GPT2_XL = kme.ModelMatch(model_type="gpt2", num_layers=48, hidden_size=1600)
"""GPT-2 XL (1.5 B): 48 layers × 1600, MLP 6400."""

GPT_J_6B = kme.ModelMatch(model_type="gptj", num_layers=28, hidden_size=4096)
"""GPT-J 6B: 28 layers × 4096, MLP 16384."""

LLAMA3_8B = kme.ModelMatch(model_type="llama", num_layers=32, hidden_size=4096, intermediate_size=14336)
"""Llama-3-8B (and -Instruct): 32 layers × 4096, MLP 14336 (Llama-2-7B's MLP is 11008)."""

WIKIPEDIA_STATS = {"stats_corpus": "hub:wikipedia:20220301.en", "stats_samples": 100_000}
"""The released code's key statistics: ``mom2_dataset: wikipedia``, ``mom2_n_samples: 100000``."""
