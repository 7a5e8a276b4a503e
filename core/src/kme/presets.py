"""Presets: recommended editor params for a model, contributed by whichever plugin knows them.

A method's code defaults are its paper's settings for the paper's models; on another model
they may edit nothing. A preset says "on *this* model, run *this* editor with *these*
params": the fact-world plugin ships tuned presets for its own model, the locate-and-edit
plugins ship their papers' released settings for GPT-2 XL, GPT-J and Llama-3-8B. Plugins
register them through ``kme_register_presets``; ``kme presets`` lists them.

Resolution, per param (recorded in the run folder): explicit pipeline params > the preset
that matches the model > the editor's code default. When several presets of an editor match,
the most specific wins: a weights fingerprint beats an alias, which beats a config shape.
``preset: none`` on an editor turns presets off; ``preset: NAME`` picks one by name.

Statistics corpora follow the same idea: a plugin registers a named text corpus
(``kme_register_corpora``) and may say which models it is the default corpus for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kme.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from kme.components import Component, Params
    from kme.edited import EditedModel
    from kme.plugins import KmePluginManager

__all__ = ["ModelIdentity", "ModelMatch", "Preset", "TextCorpus", "ResolvedParams", "find_preset",
           "resolve_params", "corpus_for", "model_identity_from_config", "identity_of", "unknown_corpus_hint"]


class _ModelFields(BaseModel):
    """The fields a model is known by: how the user named it, its weights' fingerprint and
    its config's shape."""

    model_config = ConfigDict(extra="forbid")

    alias: str | None = None
    fingerprint: str | None = None
    model_type: str | None = None
    num_layers: int | None = None
    hidden_size: int | None = None
    intermediate_size: int | None = None


class ModelIdentity(_ModelFields):
    """What presets and corpora are matched against (fingerprint: when the weights are loaded)."""

    def describe(self) -> str:
        shape = (f"{self.model_type}, {self.num_layers} layers × {self.hidden_size}"
                 + (f", MLP {self.intermediate_size}" if self.intermediate_size else ""))
        return f"{self.alias or '<unnamed>'} ({shape})"


_SHAPE_FIELDS = ("model_type", "num_layers", "hidden_size", "intermediate_size")


class ModelMatch(_ModelFields):
    """Which models a preset or corpus is for. Give an ``alias`` (a registered model alias,
    as the user names it), a weights ``fingerprint`` (``EditedModel.base_fingerprint``), or a
    config shape (``model_type`` plus any of ``num_layers``, ``hidden_size``,
    ``intermediate_size``); every field given must match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _something(self) -> "ModelMatch":
        if not (self.alias or self.fingerprint or self.model_type):
            raise ValueError("a model match needs an alias, a fingerprint or a model_type")
        if not self.model_type and any(getattr(self, f) is not None for f in _SHAPE_FIELDS[1:]):
            raise ValueError("shape fields (num_layers, hidden_size, intermediate_size) need a model_type")
        return self

    @property
    def specificity(self) -> int:
        """3: fingerprint, 2: alias, 1: config shape (more shape fields break ties)."""
        if self.fingerprint:
            return 30
        if self.alias:
            return 20
        return 10 + sum(getattr(self, f) is not None for f in _SHAPE_FIELDS)

    def matches(self, ident: ModelIdentity) -> bool:
        for f in ("alias", "fingerprint", *_SHAPE_FIELDS):
            want = getattr(self, f)
            if want is not None and getattr(ident, f) != want:
                return False
        return True

    def describe(self) -> str:
        if self.fingerprint:
            return f"fingerprint {self.fingerprint}"
        if self.alias:
            return f"alias {self.alias}"
        parts = [self.model_type or ""]
        if self.num_layers:
            parts.append(f"{self.num_layers} layers")
        if self.hidden_size:
            parts.append(f"width {self.hidden_size}")
        if self.intermediate_size:
            parts.append(f"MLP {self.intermediate_size}")
        return ", ".join(parts)


class Preset(BaseModel):
    """Recommended params for one editor on the models ``model`` matches.

    ``name`` is unique across plugins (convention: ``<editor>/<model>``, e.g.
    ``rome/gpt2-xl``); ``params`` are validated against the editor's Params when the preset
    is used; ``reference`` says where the numbers come from (a paper's released
    hyperparameter file, a measurement in the docs); ``notes`` may give a reason per param.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    editor: str
    model: ModelMatch
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    reference: str = ""
    notes: dict[str, str] = Field(default_factory=dict)


class TextCorpus(BaseModel):
    """A named text corpus (for key statistics and anything else that reads plain text).

    ``records`` returns a fresh iterator of text records each time it is called; ``size``
    is the number of records when known (progress bars and statistics caches use it);
    ``models`` lists the models this is the default corpus for (``stats_corpus: auto``).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    records: Callable[[], Iterable[str]]
    description: str = ""
    size: int | None = None
    models: list[ModelMatch] = Field(default_factory=list)


class ResolvedParams(BaseModel):
    """An editor's params after presets: the values, where each came from, which preset."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    params: Any
    sources: dict[str, str]
    preset: str | None = None
    preset_plugin: str | None = None

    def record(self) -> dict[str, Any]:
        """JSON for the run folder: every param with its value and source."""
        values = self.params.model_dump(mode="json")
        return {"preset": self.preset, "params": values, "sources": dict(self.sources)}


def model_identity_from_config(config: Any, alias: str | None = None, fingerprint: str | None = None) -> ModelIdentity:
    """A :class:`ModelIdentity` from a transformers config (no weights needed)."""
    def first(*names: str) -> int | None:
        for n in names:
            v = getattr(config, n, None)
            if isinstance(v, int):
                return v
        return None

    hidden = first("hidden_size", "n_embd", "d_model")
    inter = first("intermediate_size", "n_inner", "ffn_dim")
    if inter is None and getattr(config, "model_type", None) in ("gpt2", "gptj") and hidden:
        inter = 4 * hidden  # GPT-2 / GPT-J leave n_inner unset for 4 × width
    return ModelIdentity(alias=alias, fingerprint=fingerprint, model_type=getattr(config, "model_type", None),
                         num_layers=first("num_hidden_layers", "n_layer", "num_layers"), hidden_size=hidden,
                         intermediate_size=inter)


def find_preset(pm: "KmePluginManager", editor: str, ident: ModelIdentity, choice: str = "auto",
                where: str | None = None) -> Preset | None:
    """The preset ``choice`` selects for ``editor`` on the model ``ident``: ``auto`` (the
    most specific match, or None), ``none``, or a preset's name (which must be for
    ``editor``). Two matches equally specific are an error naming both."""
    if choice == "none":
        return None
    if choice != "auto":
        preset = pm.presets.get(choice, where=where)
        if preset.editor != editor:
            raise ConfigError(f"preset {choice!r} is for editor {preset.editor!r}, not {editor!r}", where=where,
                              hint=f"`kme presets {editor}` lists the presets of {editor!r}")
        return preset
    hits = [p for _, p in pm.presets.items() if p.editor == editor and p.model.matches(ident)]
    if not hits:
        return None
    hits.sort(key=lambda p: -p.model.specificity)
    if len(hits) > 1 and hits[0].model.specificity == hits[1].model.specificity:
        raise ConfigError(f"presets {hits[0].name!r} ({pm.presets.owner(hits[0].name)}) and {hits[1].name!r} "
                          f"({pm.presets.owner(hits[1].name)}) both match {ident.describe()} for editor {editor!r}",
                          where=where, hint="name one with `preset: NAME`, or `preset: none`")
    return hits[0]


def resolve_params(pm: "KmePluginManager", cls: type["Component"], explicit: dict[str, Any] | None,
                   ident: ModelIdentity | None, choice: str = "auto", where: str | None = None) -> ResolvedParams:
    """Explicit params > the preset for this model > the component's code defaults.

    ``cls`` is a registered component class; ``ident`` None (no model yet) skips presets.
    The merged params are validated by ``cls.Params``; a preset the editor refuses is
    reported with the preset's name and plugin.
    """
    explicit = dict(explicit or {})
    preset = find_preset(pm, cls.name, ident, choice, where) if ident is not None and \
        getattr(cls, "kind_label", "") == "editor" else None
    merged = dict(explicit)
    owner = None
    if preset is not None:
        owner = pm.presets.owner(preset.name)
        merged = {**preset.params, **explicit}
        try:
            cls.Params.model_validate(merged)
        except Exception:
            try:
                cls.Params.model_validate(dict(preset.params))
            except Exception as e:  # the preset itself is wrong: name it
                raise ConfigError(f"preset {preset.name!r} of plugin {owner!r} gives params editor "
                                  f"{cls.name!r} refuses: {str(e).splitlines()[0]}", where=where,
                                  hint="use `preset: none` and report it to the plugin's authors") from None
    params: Params = cls.parse_params(merged, where=where)
    sources = {}
    for f in type(params).model_fields:
        if f in explicit:
            sources[f] = "params"
        elif preset is not None and f in preset.params:
            sources[f] = f"preset:{owner}"
        else:
            sources[f] = "default"
    return ResolvedParams(params=params, sources=sources, preset=preset.name if preset else None,
                          preset_plugin=owner)


def corpus_for(pm: "KmePluginManager", ident: ModelIdentity) -> TextCorpus | None:
    """The registered corpus that declares itself the default for this model (most specific)."""
    hits = [(m.specificity, c) for _, c in pm.corpora.items() for m in c.models if m.matches(ident)]
    if not hits:
        return None
    hits.sort(key=lambda x: -x[0])
    return hits[0][1]


def identity_of(model: "EditedModel") -> ModelIdentity:
    """The identity of a loaded model (alias as the user named it, fingerprint, shape)."""
    alias = model.source if model.source in model.pm.aliases else None
    return model_identity_from_config(model.model.config, alias=alias, fingerprint=model.base_fingerprint)


def unknown_corpus_hint(pm: "KmePluginManager") -> str:
    names = ", ".join(pm.corpora) or "(none registered)"
    return (f"registered corpora: {names}; or file:PATH (a text file, one record per line, or .jsonl with "
            "a 'text' field) or hub:NAME[:CONFIG[:SPLIT]] (e.g. hub:wikitext:wikitext-103-raw-v1)")
