"""Settings for testing locate-and-edit editors on ``kme.testing.tiny_model`` networks.

Random weights move little information from the subject's tokens to the last position and
have tiny MLP outputs, so on them the editors write at the last token (``fact_token:
last``), without the norm limits tuned for trained models, and estimate key statistics from
a few hundred fact-world records (the corpus the fact-world plugin registers). The subject-token path is tested on the fact-world model.

:func:`isolated_stats` is the test fixture every locate-and-edit plugin shares; its
``tests/conftest.py`` imports it (``from kme_editlib.testing import isolated_stats``).
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["TINY_TARGET_PARAMS", "isolated_stats"]

TINY_TARGET_PARAMS: dict[str, Any] = {
    "stats_corpus": "factworld", "stats_samples": 200, "progress": False, "context_template_length_params": [[5, 2]],
    "fact_token": "last", "v_weight_decay": 0.0, "clamp_norm_factor": 1000.0, "kl_factor": 0.0,
    "v_num_grad_steps": 25,
}


@pytest.fixture(autouse=True, scope="session")
def isolated_stats(tmp_path_factory: Any) -> Any:
    """Key statistics of tiny models go to a per-session directory, one torch thread."""
    import torch

    mp = pytest.MonkeyPatch()
    mp.setenv("KME_STATS_DIR", str(tmp_path_factory.mktemp("stats")))
    torch.set_num_threads(1)
    yield
    mp.undo()
