"""The PPA editor: one LoRA plug-in per edit batch on the FFN projections, and a scope gate
that sends an in-scope query to the original model with that plug-in switched on and every
other query to the original model alone.

The base weights are never changed. An edit handle holds the plug-in's factors and the gate's
keys in ``handle.state``; at inference the kernel asks :meth:`PpaEditor.lookup` about each
query, and a query the gate admits is answered by a router (:class:`PluginRouter`) that runs
the same model with the chosen plug-in's forward hooks on. Undoing the handle removes it from
the stack, so the gate no longer sees it and nothing else is left to restore; a patch carries
the tensors and rebuilds the same plug-in.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

import kme
from kme import ConfigError, KmeError

from kme_ppa.gate import Pooling, embed
from kme_ppa.lora import Adapter, LoraSettings, module_features, train_adapter

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditedModel, EditHandle, EditRequest, Location, MemoryHit, TargetScore

__all__ = ["PpaEditor", "PpaParams", "PluginRouter"]

Module = Literal["mlp_in", "mlp_gate", "mlp_out", "attn_out"]
FFN: list[Module] = ["mlp_in", "mlp_gate", "mlp_out"]


class PpaParams(kme.Params):
    layers: list[int] | None = Field(
        None, description="blocks whose projections get a LoRA module (negative counts from the end); default: "
                          "every block, as in the released code; a locator's layers override it")
    modules: list[Module] = Field(
        default_factory=lambda: list(FFN), min_length=1,
        description="projections adapted in each block: the FFN's mlp_in, mlp_gate (gated MLPs only; skipped "
                    "where the model has none) and mlp_out; attn_out adds the attention output projection")
    rank: int = Field(8, ge=1, description="LoRA rank")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha (scaling = alpha / rank); default 4 × rank, the "
                                                        "released code's ratio")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the LoRA input while training (released: 0.1)")
    lr: float = Field(1e-2, gt=0, description="AdamW learning rate of the LoRA factors (released: 4e-4 for T5-large "
                                             "over thousands of QA pairs; a single edit needs fewer, larger steps)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (released: 0.01)")
    epochs: int = Field(100, ge=1, description="at most this many passes over the edit batch")
    batch_size: int = Field(64, ge=1, description="edits per optimisation step (released: 64)")
    stop_loss: float = Field(1e-2, ge=0, description="stop once every target token is the top-1 prediction and the "
                                                     "mean negative log-likelihood is below this (0: run every epoch)")
    threshold: float = Field(0.9, gt=-1, le=1, description="least cosine similarity between a query and a stored "
                                                          "edit input that switches the plug-in on (released: 0.9)")
    pooling: Pooling = Field("last", description="gate representation of a text: the hidden state at its last token "
                                                 "(last) or averaged over its tokens (mean, as the released code "
                                                 "does over a bidirectional encoder)")
    gate_layer: int = Field(-1, description="hidden state the gate reads (-1: the final one, after the last norm; "
                                            "0: the embeddings)")
    seed: int = Field(0, description="seed of the LoRA initialisation, dropout and batch order")

    @field_validator("layers")
    @classmethod
    def _layers_distinct(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            if not v:
                raise ValueError("give at least one layer, or leave layers out (every block)")
            if len(set(v)) != len(v):
                raise ValueError("layers must be distinct")
        return v

    @field_validator("modules")
    @classmethod
    def _modules_distinct(cls, v: list[Module]) -> list[Module]:
        if len(set(v)) != len(v):
            raise ValueError("modules must be distinct")
        return v

    def lora(self) -> LoraSettings:
        return LoraSettings(rank=self.rank, alpha=self.alpha if self.alpha is not None else 4.0 * self.rank,
                            dropout=self.dropout, lr=self.lr, weight_decay=self.weight_decay, epochs=self.epochs,
                            batch_size=self.batch_size, stop_loss=self.stop_loss, seed=self.seed)


class PluginRouter:
    """Answers the queries the gate admitted: the same model, this handle's plug-in on.

    It has the three methods the kernel's router protocol needs and calls the model's own
    inference path with memory off (the kernel already placed other memory editors' context
    before each prompt), inside :meth:`Adapter.active`.
    """

    def __init__(self, model: "EditedModel", adapter: Adapter):
        self._model = weakref.ref(model)
        self.adapter = adapter

    def _m(self) -> "EditedModel":
        m = self._model()
        if m is None:  # pragma: no cover - the model owns the handles that own routers
            raise KmeError("the model of this PPA plug-in is gone")
        return m

    def score(self, prompts: list[str], targets: list[str]) -> list["TargetScore"]:
        m = self._m()
        with self.adapter.active(m.model):
            return m.score(prompts, targets, use_memory=False)

    def next_token_logprobs(self, prompts: list[str]) -> "torch.Tensor":
        m = self._m()
        with self.adapter.active(m.model):
            return m.next_token_logprobs(prompts, use_memory=False)

    def generate(self, prompts: list[str], max_new_tokens: int = 20) -> list[str]:
        m = self._m()
        with self.adapter.active(m.model):
            return m.generate(prompts, max_new_tokens=max_new_tokens, use_memory=False)


_routers: "weakref.WeakKeyDictionary[Any, dict[int, PluginRouter]]" = weakref.WeakKeyDictionary()


class PpaEditor(kme.Editor):
    name = "ppa"
    description = ("PPA: a LoRA plug-in on the FFN layers per edit batch, trained on the edits, behind a scope "
                   "gate that sends in-scope inputs to the adapted model and the rest to the original one "
                   "(Lee et al., 2022)")
    Params = PpaParams
    capabilities = kme.Capabilities(kind="memory", batch=True, sequential=True)

    # -- configuration ------------------------------------------------------------------
    def check_model(self, model: "EditedModel") -> None:
        super().check_model(model)
        p: PpaParams = self.params  # type: ignore[assignment]
        n = model.num_layers
        if not -(n + 1) <= p.gate_layer <= n:
            raise ConfigError(f"gate_layer {p.gate_layer} does not exist: the model has {n + 1} hidden states "
                              f"(0 = embeddings .. {n} = final; -1 = final)", where="gate_layer",
                              hint="pick a hidden state in range, e.g. -1")
        if not self._parts(model):
            raise ConfigError(f"none of the modules {p.modules} exists in a {model.layout.model_type} block "
                              "(mlp_gate exists only in gated MLPs)", where="modules",
                              hint="use mlp_in and/or mlp_out")

    def _parts(self, model: "EditedModel") -> list[str]:
        p: PpaParams = self.params  # type: ignore[assignment]
        return [part for part in p.modules if getattr(model.layout, part, None) is not None]

    def target_modules(self, model: "EditedModel", location: "Location | None" = None) -> list[str]:
        """Qualified names of the projections this editor adapts on ``model``."""
        p: PpaParams = self.params  # type: ignore[assignment]
        if location is not None and location.layers:
            layers = list(location.layers)
        elif p.layers is not None:
            layers = list(p.layers)
        else:
            layers = list(range(model.num_layers))
        layers = sorted({model.check_layer(layer) for layer in layers})
        parts = self._parts(model)
        return [model.layout.name(layer, part) for layer in layers for part in parts]  # type: ignore[arg-type]

    # -- editing --------------------------------------------------------------------------
    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        self.check_model(model)
        p: PpaParams = self.params  # type: ignore[assignment]
        names = self.target_modules(model, location)
        handle = model.new_handle(self, requests)
        keys = embed(model, [r.text for r in requests], p.gate_layer, p.pooling)
        adapter, info = train_adapter(model, names, requests, p.lora())
        handle.state = {"keys": keys, **adapter.state()}
        handle.memory = [{"case_id": r.case_id, "prompt": r.text, "target_new": r.target_new} for r in requests]
        handle.meta["ppa"] = {"modules": names, "rank": p.rank, "scaling": adapter.scaling, **info}
        self._bind(model, handle)
        return handle

    def restore(self, model: "EditedModel", handle: "EditHandle") -> None:
        info = handle.meta.get("ppa")
        if not isinstance(info, dict) or not isinstance(info.get("modules"), list) or "scaling" not in info:
            raise KmeError("a PPA edit in this patch has no 'ppa' metadata (modules, scaling)",
                           hint="re-create the patch with this version of kme-ppa")
        keys = handle.state.get("keys")
        hidden = int(model.model.get_input_embeddings().weight.shape[-1])
        if keys is None or keys.dim() != 2 or int(keys.shape[1]) != hidden or int(keys.shape[0]) < 1:
            raise KmeError(f"the PPA gate keys must be a [n, {hidden}] tensor, got "
                           f"{None if keys is None else tuple(keys.shape)}",
                           hint="the patch belongs to another architecture or is damaged")
        adapter = Adapter.from_state(handle.state, info["modules"], float(info["scaling"]))
        for name in adapter.modules:
            try:
                module = model.model.get_submodule(name)
            except AttributeError:
                raise KmeError(f"the model has no module {name!r} for a PPA plug-in",
                               hint="the patch belongs to another architecture") from None
            fin, fout = module_features(module, bool(model.layout.conv1d))
            a, b = adapter.a[name], adapter.b[name]
            if a.dim() != 2 or b.dim() != 2 or a.shape[1] != fin or b.shape[0] != fout or a.shape[0] != b.shape[1]:
                raise KmeError(f"the LoRA factors of {name!r} have shapes {tuple(a.shape)} and {tuple(b.shape)}; "
                               f"the module maps {fin} to {fout} features",
                               hint="the patch belongs to another architecture or is damaged")
        self._bind(model, handle, adapter)

    @staticmethod
    def _bind(model: "EditedModel", handle: "EditHandle", adapter: Adapter | None = None) -> None:
        """Cache the handle's router; undoing the handle drops it."""
        if adapter is None:
            info = handle.meta["ppa"]
            adapter = Adapter.from_state(handle.state, info["modules"], float(info["scaling"]))
        routers = _routers.setdefault(model, {})
        routers[handle.id] = PluginRouter(model, adapter)
        handle.on_undo(lambda: routers.pop(handle.id, None))

    @staticmethod
    def _router(model: "EditedModel", handle: "EditHandle") -> PluginRouter:
        routers = _routers.setdefault(model, {})
        if handle.id not in routers:
            PpaEditor._bind(model, handle)
        return routers[handle.id]

    # -- the gate -------------------------------------------------------------------------
    def lookup(self, model: "EditedModel", handle: "EditHandle", prompts: list[str]) -> list["MemoryHit"]:
        """The first applied PPA handle answers for all of them: each query goes to the plug-in
        whose stored inputs hold its most similar one, when that similarity reaches the
        plug-in's threshold (the released code's rule, ties to the earlier plug-in)."""
        handles = [h for h in model.stack if h.editor_name == self.name and h.applied]
        if not handles or handles[0] is not handle or not prompts:
            return []
        best: list[tuple[float, Any]] = [(float("-inf"), None)] * len(prompts)
        queries: dict[tuple[int, str], Any] = {}
        for h in handles:
            hp = h.editor.params if h.editor is not None else self.params
            setting = (int(hp.gate_layer), str(hp.pooling))
            if setting not in queries:
                queries[setting] = embed(model, prompts, *setting)
            keys = h.state["keys"].float()
            sims = (queries[setting] @ keys.T).max(dim=1).values.tolist()
            for i, s in enumerate(sims):
                if s >= float(hp.threshold) and s > best[i][0]:
                    best[i] = (s, h)
        hits = []
        for i, (s, h) in enumerate(best):
            if h is not None:
                hits.append(kme.MemoryHit(prompt_index=i, source=self.name, score=round(s, 6),
                                          router=self._router(model, h)))
        return hits
