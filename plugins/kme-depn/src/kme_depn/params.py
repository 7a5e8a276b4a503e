"""DEPN's parameters (defaults from the paper's released code)."""

from __future__ import annotations

from pydantic import Field

import kme

__all__ = ["DEPNParams"]


class DEPNParams(kme.Params):
    layers: list[int] | None = Field(None, description="FFN layers searched (default: all)")
    ig_steps: int = Field(20, ge=1, description="Riemann steps of the integrated gradients (paper: 20)")
    threshold: float = Field(0.1, gt=0, le=1, description="a text's privacy neurons: attribution summed over the "
                             "private string's tokens above this × the text's largest (paper: 0.1)")
    share: float = Field(0.5, gt=0, le=1, description="aggregator: keep neurons found in at least this share of "
                         "the batch's private texts (paper: 0.5)")
    max_neurons: int | None = Field(10, ge=1, description="deactivate at most this many, most frequent across the "
                                    "batch first, then by attribution (paper's code: 10); null: all kept")
