"""The pipeline file: shape, validation, and resolution against the installed plugins.

A pipeline can name only registered components; no field imports or executes code.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kme.errors import ConfigError, KmeError, format_validation_error
from kme.files import parse_yaml, read_text
from kme.models.loading import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    from kme.pipeline.session import Components
    from kme.plugins import KmePluginManager

__all__ = ["ComponentRef", "EditorRef", "DatasetRef", "ProtocolSpec", "PipelineSpec", "PipelineErrors",
           "load_pipeline", "parse_pipeline", "validate_components"]

T = TypeVar("T")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: An int that YAML wrote as an int: ``true`` or ``"3"`` is refused, not read as 1 or 3.
StrictInt = Annotated[int, Field(strict=True)]


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

    @model_validator(mode="after")
    def _one_place_per_option(self) -> "DatasetRef":
        extra = dict(self.model_extra or {})
        nested = extra.pop("params", None)
        if nested is None:
            return self
        if not isinstance(nested, dict):
            raise ValueError(f"params must be a mapping of the dataset's options, got {type(nested).__name__}")
        twice = sorted(set(nested) & set(extra))
        if twice:
            raise ValueError(f"option(s) {', '.join(map(str, twice))} given both beside the name and under "
                             "params; give each once")
        return self

    @property
    def options(self) -> dict[str, Any]:
        extra = dict(self.model_extra or {})
        nested = extra.pop("params", None) or {}
        return {**nested, **extra}


class ProtocolSpec(_Strict):
    """How edits are applied and evaluated.

    ``mode`` names a registered protocol (``kme plugins`` lists them; plugins add more through
    ``kme_register_protocols``), ``params`` are that protocol's own settings. Built in:

    ``batch``: requests are split into batches of ``batch_size``; each batch is applied to the
    unedited model, evaluated, and undone (batches are independent).
    ``sequential``: batches are applied one after another and never undone; after each batch
    the batch itself is evaluated, and at ``checkpoints`` (numbers of edits applied; default:
    about ten points over the run) every edit so far is re-evaluated (retention).
    """

    mode: str = "batch"
    params: dict[str, Any] = Field(default_factory=dict)
    batch_size: StrictInt = Field(1, ge=1)
    num_edits: StrictInt | None = Field(None, ge=1)
    checkpoints: list[StrictInt] | None = None
    eval_batch_size: StrictInt = Field(64, ge=1)

    @field_validator("checkpoints")
    @classmethod
    def _positive_sorted(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if any(c < 1 for c in v):
            raise ValueError("checkpoints are numbers of edits applied and must be >= 1")
        return sorted(set(v))



class PipelineSpec(_Strict):
    """A whole pipeline file (see docs/pipeline.md)."""

    model: ModelSpec
    dataset: DatasetRef
    editors: list[EditorRef] = Field(default_factory=list)
    locator: ComponentRef | None = None
    metrics: list[ComponentRef] = Field(min_length=1)
    protocol: ProtocolSpec = Field(default_factory=ProtocolSpec)
    seed: StrictInt = Field(0, ge=0, lt=2**63, description="seeds Python, NumPy and torch (a 63-bit integer)")
    output: str | None = None

    def resolved(self) -> dict[str, Any]:
        d = self.model_dump(mode="json")
        d["dataset"] = {"name": self.dataset.name, **self.dataset.options}
        if not d["protocol"]["params"]:
            del d["protocol"]["params"]  # as before protocols took params: old runs still resume
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


def load_pipeline(path: str | Path, overrides: "list[str] | dict[str, Any] | None" = None) -> PipelineSpec:
    """Read and validate a pipeline YAML file (no plugin or model is touched).

    ``overrides``: dotted ``KEY=VALUE`` overrides applied to the file's mapping before it is
    validated (:func:`kme.overrides.apply_overrides`)."""
    p = Path(path)
    if not p.is_file() and not p.is_dir():
        raise ConfigError(f"pipeline file {str(p)!r} does not exist")
    data = parse_yaml(read_text(p, what="pipeline file"), str(p))
    if overrides:
        from kme.overrides import parse_with_overrides

        return parse_with_overrides(data, overrides, str(p))
    return parse_pipeline(data, str(p))


class PipelineErrors(ConfigError):
    """Several problems in one pipeline, each a :class:`~kme.errors.KmeError` naming its field;
    rendered one per line so a user fixes them all in one go."""

    def __init__(self, errors: list[KmeError], source: str):
        self.errors = errors
        super().__init__(f"{len(errors)} problems:\n" + "\n".join(
            "  - " + e.render().replace("\n", "\n    ") for e in errors), where=source)

    max_chars = 20_000


def validate_components(spec: PipelineSpec, pm: "KmePluginManager", source: str = "<pipeline>") -> "Components":
    """Check that every named component is registered, accepts its params and fits the
    protocol; return them configured (editors are configured again for the model by the run).

    Every problem is reported: one raises that error itself, several raise
    :class:`PipelineErrors` listing each (all exit code 2)."""
    from kme.pipeline.session import Components

    errors: list[KmeError] = []

    def check(fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except KmeError as e:
            errors.append(e)
            return None

    def build(registry: Any, name: str, params: dict[str, Any], where_name: str, where_params: str) -> Any:
        """(class, configured instance): either is None when it was refused (the error is kept)."""
        cls = check(lambda: registry.get(name, where=f"{source}: {where_name}"))
        if cls is None:
            return None, None
        parsed = check(lambda: cls.parse_params(params, where=f"{source}: {where_params}"))
        return cls, (cls(parsed) if parsed is not None else None)

    proto_cls, protocol = build(pm.protocols, spec.protocol.mode, spec.protocol.params, "protocol.mode",
                                "protocol.params")
    if proto_cls is not None and spec.protocol.checkpoints and not proto_cls.uses_checkpoints:
        errors.append(ConfigError(f"checkpoints apply only to protocols that keep edits (sequential), not to "
                                  f"mode: {spec.protocol.mode}", where=f"{source}: protocol.checkpoints"))
    _, dataset = build(pm.datasets, spec.dataset.name, spec.dataset.options, "dataset.name", "dataset")
    editors = []
    for i, ref in enumerate(spec.editors):
        cls, editor = build(pm.editors, ref.name, ref.params, f"editors[{i}].name", f"editors[{i}].params")
        if cls is None:
            continue
        if editor is not None:
            editors.append(editor)
        if ref.preset not in ("auto", "none"):
            from kme.presets import find_preset

            check(lambda: find_preset(pm, ref.name, None, ref.preset,  # type: ignore[arg-type]
                                      where=f"{source}: editors[{i}].preset"))
        if cls.capabilities.trains_base:
            errors.append(ConfigError(f"{ref.name!r} trains a new base model; it edits nothing in a pipeline",
                                      where=f"{source}: editors[{i}].name",
                                      hint=f"`kme train {ref.name} --model MODEL --dataset DATASET --out DIR`, "
                                           "then name DIR as the pipeline's model: DIR"))
            continue
        if spec.protocol.batch_size > 1 and not cls.capabilities.batch:
            errors.append(ConfigError(f"editor {ref.name!r} cannot edit a batch of {spec.protocol.batch_size}",
                                      where=f"{source}: protocol.batch_size", hint="use batch_size: 1"))
        if proto_cls is not None and proto_cls.kind == "sequential" and not cls.capabilities.sequential:
            errors.append(ConfigError(f"editor {ref.name!r} does not support sequential editing",
                                      where=f"{source}: protocol.mode"))
    locator = None
    if spec.locator is not None:
        _, locator = build(pm.locators, spec.locator.name, spec.locator.params, "locator.name", "locator.params")
    dup = {n for n, k in Counter(m.name for m in spec.metrics).items() if k > 1}
    if dup:
        errors.append(ConfigError(f"metric(s) listed twice: {', '.join(sorted(dup))}", where=f"{source}: metrics"))
    metrics = []
    seen: set[str] = set()
    for i, ref in enumerate(spec.metrics):
        if ref.name in seen and not ref.params:  # a duplicate: reported above, not once per copy
            continue
        seen.add(ref.name)
        _, metric = build(pm.metrics, ref.name, ref.params, f"metrics[{i}]", f"metrics[{i}].params")
        if metric is not None:
            metrics.append(metric)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise PipelineErrors(errors, source)
    assert dataset is not None and protocol is not None
    return Components(dataset=dataset, editors=editors, locator=locator, metrics=metrics, protocol=protocol)
