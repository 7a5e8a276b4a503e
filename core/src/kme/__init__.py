"""kme: knowledge-based model editing for large language models.

The kernel: hook specs, plugin manager, data model, the composed edited model, the pipeline
runner and the CLI. Methods, datasets and metrics are plugins.
"""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("kme")
"""Marker for hook implementations: ``@kme.hookimpl``."""

from kme.components import Capabilities, Component, Dataset, Editor, Locator, Metric, Params  # noqa: E402
from kme.data import (  # noqa: E402
    EditRecord,
    EditRequest,
    Location,
    MemoryHit,
    MetricValue,
    PortabilityQuestion,
    Probe,
    RunSummary,
)
from kme.edited import EditedModel, EditHandle, TargetScore, join_target  # noqa: E402
from kme.errors import KmeError  # noqa: E402
from kme.evaluation import EvalContext  # noqa: E402
from kme.models import ModelAlias, ModelLayout, ModelSpec, load_model  # noqa: E402
from kme.plugins import build_plugin_manager  # noqa: E402
from kme.presets import ModelIdentity, ModelMatch, Preset, TextCorpus  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "hookimpl", "Capabilities", "Component", "Dataset", "Editor", "Locator", "Metric", "Params",
    "EditRecord", "EditRequest", "Location", "MemoryHit", "MetricValue", "PortabilityQuestion", "Probe",
    "RunSummary", "EditedModel", "EditHandle", "TargetScore", "join_target", "KmeError", "EvalContext",
    "ModelAlias", "ModelLayout", "ModelSpec", "load_model", "build_plugin_manager", "load",
    "ModelIdentity", "ModelMatch", "Preset", "TextCorpus",
]


def load(model: str | ModelSpec, *, plugins: list | None = None) -> EditedModel:
    """Build a plugin manager and load ``model`` (alias, local path or hub id) in one call."""
    pm = build_plugin_manager(plugins)
    return load_model(model, pm)
