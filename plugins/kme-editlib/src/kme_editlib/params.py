"""Parameters shared by the locate-and-edit editors (pydantic mixins; unknown fields refused)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

import kme

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, Location

    from kme_editlib.targets import TargetConfig

__all__ = ["StatsParams", "TargetParams", "MultiLayerParams"]


class StatsParams(kme.Params):
    """Where the key second moment ``C = E[k kᵀ]`` comes from."""

    mom2_adjustment: bool = Field(True, description="use C (False: identity, i.e. plain least squares)")
    stats_corpus: str = Field("auto", description="auto (the corpus registered for the model), a registered "
                              "corpus name, file:PATH or hub:NAME[:CONFIG[:SPLIT]]")
    stats_samples: int = Field(100_000, ge=1, description="corpus records for C (the papers: 100,000)")
    stats_max_length: int = Field(128, ge=2, description="tokens kept per record")
    stats_dir: str | None = Field(None, description="cache directory (default $KME_STATS_DIR or ~/.cache/kme/stats)")
    progress: bool = Field(True, description="show progress bars")

    def check_stats(self, model: "EditedModel") -> None:
        """Resolve the statistics corpus now, so a missing one stops a run before any edit."""
        if self.mom2_adjustment:
            from kme_editlib.corpus import resolve_corpus

            resolve_corpus(self.stats_corpus, model)

    def second_moments(self, model: "EditedModel", layers: list[int],
                       info: dict | None = None) -> dict[int, "torch.Tensor | None"]:
        """``{layer: C}`` (None without ``mom2_adjustment``); ``info`` receives the corpus,
        the records read and the cache files, for the run record."""
        if not self.mom2_adjustment:
            if info is not None:
                info.update({"mom2_adjustment": False})
            return {layer: None for layer in layers}
        from kme_editlib.stats import key_second_moments

        return dict(key_second_moments(model, layers, corpus=self.stats_corpus, samples=self.stats_samples,
                                       max_length=self.stats_max_length, cache_dir=self.stats_dir,
                                       progress=self.progress, info=info))


class TargetParams(kme.Params):
    """The target-vector optimisation (ROME's v*, MEMIT's z); defaults are ROME's GPT-2 XL values."""

    v_num_grad_steps: int = Field(20, ge=1, description="Adam steps")
    v_lr: float = Field(0.5, gt=0, description="Adam learning rate")
    v_weight_decay: float = Field(0.5, ge=0, description="weight of ‖δ‖/‖v‖²")
    clamp_norm_factor: float = Field(4.0, gt=0, description="‖δ‖ is clamped to this × ‖v‖")
    kl_factor: float = Field(0.0625, ge=0, description="weight of the KL term on the kl_prompt")
    kl_prompt: str = Field("{} is a", description="essence prompt with a '{}' subject slot")
    kl_position: Literal["subject", "last"] = Field(
        "subject", description="token of the KL prompt the KL term reads: the fact token (subject's last; the "
        "released code) or the prompt's last token (the paper's text)")
    key_average: Literal["by_context_kind", "flat"] = Field(
        "by_context_kind", description="keys averaged within each kind of context (bare prompt, each prefix "
        "length) and then over kinds (MEMIT's released code), or flat over every context")
    early_stop_loss: float = Field(0.05, ge=0, description="a request stops once its loss is below this")
    fact_token: Literal["subject_last", "subject_first", "last"] = "subject_last"
    context_template_length_params: list[tuple[int, int]] = Field(
        default_factory=lambda: [(5, 10), (10, 10)],
        description="random prefixes as (tokens, count) pairs; [] for the bare prompt only")
    seed: int = Field(0, description="seed of the prefix sampler")
    chunk_size: int = Field(256, ge=1, description="sequences per forward pass during the optimisation")

    @field_validator("kl_prompt")
    @classmethod
    def _one_slot(cls, v: str) -> str:
        if v.count("{}") != 1:
            raise ValueError("kl_prompt must contain exactly one '{}' subject slot, e.g. '{} is a'")
        return v

    def target_config(self) -> "TargetConfig":
        from kme_editlib.targets import TargetConfig

        return TargetConfig(steps=self.v_num_grad_steps, lr=self.v_lr, weight_decay=self.v_weight_decay,
                            clamp_norm_factor=self.clamp_norm_factor, kl_factor=self.kl_factor,
                            early_stop_loss=self.early_stop_loss, kl_prompt=self.kl_prompt,
                            kl_position=self.kl_position, fact_token=self.fact_token, chunk_size=self.chunk_size)

    def prefixes(self, model: "EditedModel") -> list[str]:
        from kme_editlib.contexts import context_prefixes

        return context_prefixes(model, self.context_template_length_params, seed=self.seed)

    def key_groups(self, prefixes: list[str]) -> list[int] | None:
        """How :func:`kme_editlib.keys.average_keys` groups ``prefixes`` (None: flat)."""
        if self.key_average == "flat" or len(prefixes) <= 1:
            return None
        from kme_editlib.contexts import context_kinds

        groups = context_kinds(self.context_template_length_params)
        return groups if sum(groups) == len(prefixes) else None


class MultiLayerParams(TargetParams, StatsParams):
    """What the multi-layer editors (MEMIT, PMET, AlphaEdit) share (defaults: MEMIT's GPT-J values)."""

    layers: list[int] | None = Field(None, description="critical MLP layers (default: locator, published, or rule)")
    layer_window: int | None = Field(None, ge=1, description="with a locator: how many layers end at its best one")
    mom2_update_weight: float | None = Field(
        None, gt=0, description="λ (default: published for the model, else d_ff·15000/16384)")
    v_num_grad_steps: int = Field(25, ge=1, description="Adam steps")
    clamp_norm_factor: float = Field(0.75, gt=0, description="‖δ‖ is clamped to this × ‖h‖")
    context_template_length_params: list[tuple[int, int]] = Field(
        default_factory=lambda: [(10, 5)], description="random prefixes as (tokens, count) pairs")

    def critical_layers(self, model: "EditedModel", location: "Location | None",
                        source: str = "params") -> tuple[list[int], str]:
        """The layers to edit and why; ``source``: where ``layers`` came from."""
        from kme_editlib.defaults import resolve_layers

        return resolve_layers(model, "window", self.layers, location, self.layer_window, source=source)
