"""Attribution parameters shared by the locator and the editor (Dai et al.'s defaults)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

import kme

__all__ = ["AttributionParams"]


class AttributionParams(kme.Params):
    layers: list[int] | None = Field(None, description="FFN layers searched (default: all)")
    ig_steps: int = Field(20, ge=1, description="Riemann steps of the integrated gradients (paper: 20)")
    threshold: float = Field(0.2, gt=0, le=1, description="keep neurons above this × the prompt's max attribution")
    share: float = Field(0.5, gt=0, le=1, description="keep neurons found in at least this share of the prompts")
    max_neurons: int | None = Field(20, ge=1, description="at most this many neurons per fact (strongest first)")
    use_paraphrases: bool = Field(False, description="also attribute on paraphrase_prompts (they are evaluation "
                                  "probes in most datasets: using them to locate leaks them into the edit)")
    target: Literal["true", "prediction"] = Field("true", description="attribute target_true (if given) or the prediction")

    def attribution_kwargs(self) -> dict:
        return {"layers": self.layers, "steps": self.ig_steps, "threshold": self.threshold, "share": self.share,
                "max_neurons": self.max_neurons, "use_paraphrases": self.use_paraphrases, "target": self.target}
