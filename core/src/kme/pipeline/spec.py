"""The pipeline file: shape, validation, and resolution against the installed plugins.

A pipeline can name only registered components; no field imports or executes code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kme.errors import ConfigError, format_validation_error
from kme.models.loading import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    from kme.plugins import KmePluginManager

__all__ = ["ComponentRef", "EditorRef", "DatasetRef", "ProtocolSpec", "PipelineSpec", "load_pipeline",
           "parse_pipeline", "validate_components"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentRef(_Strict):
    """``{name, params}``; a bare string means ``{name: <string>}``."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


class EditorRef(ComponentRef):
    """``{name, params, preset}``: ``preset`` is ``auto`` (the preset registered for the
    model, if any), ``none`` (code defaults), or a preset's name (``kme presets``)."""

    preset: str = "auto"


class DatasetRef(BaseModel):
    """``{name, ...options}``: options sit beside the name (``{name: factworld, limit: 50}``)
    or under ``params``; they are validated by the dataset's own Params model."""

    model_config = ConfigDict(extra="allow")

    name: str

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @property
    def options(self) -> dict[str, Any]:
        extra = dict(self.model_extra or {})
        nested = extra.pop("params", None) or {}
        if not isinstance(nested, dict):
            raise ConfigError("dataset.params must be a mapping")
        return {**nested, **extra}


class ProtocolSpec(_Strict):
    """How edits are applied and evaluated.

    ``batch``: requests are split into batches of ``batch_size``; each batch is applied to the
    unedited model, evaluated, and undone (batches are independent).
    ``sequential``: batches are applied one after another and never undone; after each batch
    the batch itself is evaluated, and at ``checkpoints`` (numbers of edits applied; default:
    after every batch) every edit so far is re-evaluated (retention).
    """

    mode: Literal["batch", "sequential"] = "batch"
    batch_size: int = Field(1, ge=1)
    num_edits: int | None = Field(None, ge=1)
    checkpoints: list[int] | None = None
    eval_batch_size: int = Field(64, ge=1)

    @field_validator("checkpoints")
    @classmethod
    def _positive_sorted(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if any(c < 1 for c in v):
            raise ValueError("checkpoints are numbers of edits applied and must be >= 1")
        return sorted(set(v))

    @model_validator(mode="after")
    def _checkpoints_only_sequential(self) -> "ProtocolSpec":
        if self.checkpoints and self.mode != "sequential":
            raise ValueError("checkpoints apply only to mode: sequential")
        return self


class PipelineSpec(_Strict):
    """A whole pipeline file (see docs/pipeline.md)."""

    model: ModelSpec
    dataset: DatasetRef
    editors: list[EditorRef] = Field(default_factory=list)
    locator: ComponentRef | None = None
    metrics: list[ComponentRef] = Field(min_length=1)
    protocol: ProtocolSpec = Field(default_factory=ProtocolSpec)
    seed: int = 0
    output: str | None = None

    def resolved(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        d["dataset"] = {"name": self.dataset.name, **self.dataset.options}
        return d


def parse_pipeline(data: Any, source: str = "<pipeline>") -> PipelineSpec:
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping with keys model, dataset, editors, metrics, protocol; "
                          f"got {type(data).__name__}", where=source)
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e), where=source,
                          hint="see docs/pipeline.md for the pipeline keys") from None


def load_pipeline(path: str | Path) -> PipelineSpec:
    """Read and validate a pipeline YAML file (no plugin or model is touched)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"pipeline file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"malformed YAML{at}: {problem}", where=str(p)) from None
    return parse_pipeline(data, str(p))


def validate_components(spec: PipelineSpec, pm: "KmePluginManager", source: str = "<pipeline>") -> dict[str, Any]:
    """Check that every named component is registered and accepts its params.

    Returns the instantiated components: ``{"dataset", "editors", "locator", "metrics"}``.
    """
    out: dict[str, Any] = {}
    ds_cls = pm.datasets.get(spec.dataset.name, where=f"{source}: dataset.name")
    out["dataset"] = ds_cls(ds_cls.parse_params(spec.dataset.options, where=f"{source}: dataset"))
    out["editors"] = []
    for i, ref in enumerate(spec.editors):
        cls = pm.editors.get(ref.name, where=f"{source}: editors[{i}].name")
        out["editors"].append(cls(cls.parse_params(ref.params, where=f"{source}: editors[{i}].params")))
        if ref.preset not in ("auto", "none"):
            from kme.presets import find_preset

            find_preset(pm, ref.name, None, ref.preset, where=f"{source}: editors[{i}].preset")  # type: ignore[arg-type]
        if spec.protocol.batch_size > 1 and not cls.capabilities.batch:
            raise ConfigError(f"editor {ref.name!r} cannot edit a batch of {spec.protocol.batch_size}",
                              where=f"{source}: protocol.batch_size", hint="use batch_size: 1")
        if spec.protocol.mode == "sequential" and not cls.capabilities.sequential:
            raise ConfigError(f"editor {ref.name!r} does not support sequential editing",
                              where=f"{source}: protocol.mode")
    out["locator"] = None
    if spec.locator is not None:
        cls = pm.locators.get(spec.locator.name, where=f"{source}: locator.name")
        out["locator"] = cls(cls.parse_params(spec.locator.params, where=f"{source}: locator.params"))
    out["metrics"] = []
    names = [m.name for m in spec.metrics]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"metric(s) listed twice: {', '.join(sorted(dup))}", where=f"{source}: metrics")
    for i, ref in enumerate(spec.metrics):
        cls = pm.metrics.get(ref.name, where=f"{source}: metrics[{i}]")
        out["metrics"].append(cls(cls.parse_params(ref.params, where=f"{source}: metrics[{i}].params")))
    return out
