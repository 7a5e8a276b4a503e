"""kme: knowledge-based model editing for large language models.

The kernel: hook specs, plugin manager, data model, the composed edited model, the pipeline
runner and the CLI. Methods, datasets and metrics are plugins.
"""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("kme")
"""Marker for hook implementations: ``@kme.hookimpl``."""

from kme.batching import pad_sequences  # noqa: E402
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
from kme.errors import (  # noqa: E402
    ConfigError,
    DatasetRecordError,
    EditFailedError,
    KmeError,
    ModelLoadError,
    PatchMismatchError,
    UnknownComponentError,
    did_you_mean,
    format_validation_error,
)
from kme.evaluation import EvalContext  # noqa: E402
from kme.files import check_depth, depth_error, read_json, read_text  # noqa: E402
from kme.models import ModelAlias, ModelLayout, ModelSpec, load_model  # noqa: E402
from kme.models.loading import resolve_model_path  # noqa: E402
from kme.patch import PatchManifest, read_manifest  # noqa: E402
from kme.pipeline.protocols import RunProtocol  # noqa: E402
from kme.pipeline.session import BatchResult, RunSession  # noqa: E402
from kme.plugins import KmePluginManager, build_plugin_manager  # noqa: E402
from kme.presets import ModelIdentity, ModelMatch, Preset, TextCorpus, corpus_for  # noqa: E402
from kme.progress import progress_enabled  # noqa: E402
from kme.templates import check_template, render, template_validator  # noqa: E402
from kme.trained import (  # noqa: E402
    TrainedCheckpoint,
    clear_train_state,
    load_train_state,
    load_trained,
    read_trained_manifest,
    save_train_state,
    save_trained,
    train_progress,
)

__version__ = "0.1.0"

#: The plugin API: every kernel name a plugin may import, ``from kme import NAME`` or
#: ``kme.NAME`` (docs/plugin-api.md describes each). Two further modules are public for
#: plugins' tests: ``kme.testing`` (tiny models) and ``kme.conformance`` (the conformance kit).
#: Every other module under ``kme`` is internal; tests/test_plugin_api.py checks that
#: first-party plugins and contrib/ import nothing else.
__all__ = [
    # plugin hooks and components
    "hookimpl", "Component", "Editor", "Locator", "Dataset", "Metric", "Params", "Capabilities",
    # data model
    "EditRequest", "Probe", "PortabilityQuestion", "Location", "MemoryHit", "MetricValue", "EditRecord",
    "RunSummary",
    # the edited model
    "EditedModel", "EditHandle", "TargetScore", "join_target", "EvalContext",
    # models, presets, corpora
    "ModelLayout", "ModelAlias", "ModelSpec", "load", "load_model", "resolve_model_path", "ModelIdentity",
    "ModelMatch", "Preset", "TextCorpus", "corpus_for",
    # plugin manager
    "KmePluginManager", "build_plugin_manager",
    # errors
    "KmeError", "ConfigError", "DatasetRecordError", "EditFailedError", "ModelLoadError", "PatchMismatchError",
    "UnknownComponentError", "did_you_mean", "format_validation_error",
    # input files, templates, progress, patches
    "read_text", "read_json", "check_depth", "depth_error", "check_template", "render", "template_validator",
    "progress_enabled", "read_manifest", "PatchManifest",
    # model inputs
    "pad_sequences",
    # run protocols
    "RunProtocol", "RunSession", "BatchResult",
    # trained editors' checkpoints and training state
    "TrainedCheckpoint", "save_trained", "load_trained", "read_trained_manifest", "save_train_state",
    "load_train_state", "clear_train_state", "train_progress",
]

#: Modules besides ``kme`` itself that plugins may import, for their tests.
TEST_MODULES = ("kme.testing", "kme.conformance")


def load(model: str | ModelSpec, *, plugins: list | None = None) -> EditedModel:
    """Build a plugin manager and load ``model`` (alias, local path or hub id) in one call."""
    pm = build_plugin_manager(plugins)
    return load_model(model, pm)
