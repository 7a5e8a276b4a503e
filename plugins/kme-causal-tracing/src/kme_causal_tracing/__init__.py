"""Causal tracing (Meng et al., 2022, §2.1; survey §5.4.3): where does a model recall a fact?

The subject's token embeddings are corrupted with Gaussian noise; one hidden state (or one
window of MLP / attention outputs) at one token is restored to its clean value; the share of
the correct prediction that comes back is that state's indirect effect. The locator
``causal-tracing`` writes the heat maps (JSON + PNG) and ranks layers by the MLP effect at the
subject's last token. The tracing itself is :func:`kme_causal_tracing.trace.trace_request`.
"""

from __future__ import annotations

from kme_editlib.registration import registration_hook

from kme_causal_tracing.locator import CausalTracingLocator

__all__ = ["kme_register_locators"]

kme_register_locators = registration_hook(CausalTracingLocator)
