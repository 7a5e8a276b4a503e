"""Hook specifications: the whole contract between the kme kernel and its plugins.

Every hook is listed in ``docs/hooks.md`` (a test enforces it). Implementations are marked
with ``@kme.hookimpl``; a function named like a hook but unmarked, or a marked function whose
name matches no spec, is reported as an error when the plugin loads.

Phases:

1. **Registration** -- called once per plugin manager, right after plugins load, to collect
   what each plugin provides (editors, locators, datasets, metrics, model layouts and
   aliases, presets, corpora, run protocols, CLI commands).
2. **Operation** -- called by the kernel while a model is being edited and evaluated:
   ``kme_locate``, ``kme_edit``, ``kme_memory_lookup``, ``kme_prepare_metric``, ``kme_evaluate``. The kernel's
   built-in ``dispatch`` plugin implements each by calling the registered component; other
   plugins may wrap them (``wrapper=True``) for cross-cutting concerns -- timing, logging,
   NaN guards -- or answer first (``tryfirst=True``).
3. **Lifecycle** -- notifications around a pipeline run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

    from kme.components import Editor, Locator, Metric
    from kme.data import EditRequest, Location, MemoryHit
    from kme.edited import EditedModel, EditHandle
    from kme.evaluation import EvalContext
    from kme.registry import Register

hookspec = pluggy.HookspecMarker("kme")

# --------------------------------------------------------------------------------------
# Phase 1: registration
# --------------------------------------------------------------------------------------


@hookspec
def kme_register_editors(register: "Register") -> None:
    """Register the editing methods this plugin provides.

    :param register: call ``register(EditorSubclass)`` once per editor. The class must
        subclass :class:`kme.Editor` and set ``name``, ``description``, ``Params`` (a
        pydantic model with ``extra="forbid"``) and ``capabilities``. Duplicate names are
        refused.
    :returns: nothing.

    Called once per plugin manager, after all plugins are loaded. Not firstresult: every
    implementation is called. Keep heavy imports (torch kernels, numerical libraries) inside
    the editor's methods, not at module import.
    """


@hookspec
def kme_register_locators(register: "Register") -> None:
    """Register the locators (where does a fact live?) this plugin provides.

    :param register: call ``register(LocatorSubclass)``; the class subclasses
        :class:`kme.Locator`.
    :returns: nothing.

    Called once per plugin manager after loading. Not firstresult.
    """


@hookspec
def kme_register_datasets(register: "Register") -> None:
    """Register the datasets this plugin provides.

    :param register: call ``register(DatasetSubclass)``; the class subclasses
        :class:`kme.Dataset` and turns its native records into :class:`kme.EditRequest`.
    :returns: nothing.

    Called once per plugin manager after loading. Not firstresult.
    """


@hookspec
def kme_register_metrics(register: "Register") -> None:
    """Register the metrics this plugin provides.

    :param register: call ``register(MetricSubclass)``; the class subclasses
        :class:`kme.Metric` and declares its ``scoring`` mode.
    :returns: nothing.

    Called once per plugin manager after loading. Not firstresult.
    """


@hookspec
def kme_register_model_layouts(register: "Register") -> None:
    """Register architecture layouts: where blocks, attention, MLP projections, embeddings
    and the final norm live in a Hugging Face model of a given ``config.model_type``.

    :param register: call ``register(ModelLayout(...))``.
    :returns: nothing.

    Called once per plugin manager after loading. Not firstresult. The kernel registers
    GPT-2, GPT-J, GPT-NeoX, Llama, Mistral and Qwen2 itself, through this same hook.
    """


@hookspec
def kme_register_model_aliases(register: "Register") -> None:
    """Register short model names (``factworld``) that resolve to a local directory or hub id.

    :param register: call ``register(ModelAlias(name=..., target=..., description=...))``;
        ``target`` is a local path or hub id loaded with ``from_pretrained`` like any other.
    :returns: nothing.

    Called once per plugin manager after loading. Not firstresult.
    """


@hookspec
def kme_register_presets(register: "Register") -> None:
    """Register recommended editor params for particular models (presets).

    :param register: call ``register(kme.Preset(name=..., editor=..., model=kme.ModelMatch(...),
        params={...}, reference=...))``. ``name`` must be unique across plugins; ``editor``
        is a registered editor's name (it may belong to another plugin: a model plugin ships
        presets for the editors it was tuned with); ``model`` matches by alias, weights
        fingerprint or config shape.
    :returns: nothing.

    Called once per plugin manager after loading, after the editors are registered.
    Not firstresult. Presets are applied when an editor is built for a loaded model (``kme run``,
    ``EditedModel.edit("name")``, ``kme edit``): explicit params > the most specific
    matching preset > the editor's code defaults; the run folder records the source of
    every param. A preset whose params the editor refuses is reported when it is used.
    """


@hookspec
def kme_register_corpora(register: "Register") -> None:
    """Register named text corpora (key statistics read them: ``stats_corpus: NAME``).

    :param register: call ``register(kme.TextCorpus(name=..., records=callable, size=...,
        models=[kme.ModelMatch(...)]))``. ``records()`` returns a fresh iterator of text
        records; ``models`` names the models this corpus is the default for, so that
        ``stats_corpus: auto`` resolves to it on those models (and is an error elsewhere).
    :returns: nothing.

    Called once per plugin manager after loading. Not firstresult. Keep reading the text
    inside ``records`` (lazy), not in the hook.
    """


@hookspec
def kme_register_protocols(register: "Register") -> None:
    """Register run protocols: how a pipeline applies, evaluates and undoes its batches.

    :param register: call ``register(MyProtocol)`` with a subclass of
        :class:`kme.RunProtocol`; its ``name`` is what a pipeline's ``protocol.mode`` names and
        its ``Params`` validate ``protocol.params``.
    :returns: nothing.

    Called once per plugin manager after loading. Not firstresult. The kernel registers
    ``batch`` and ``sequential`` through this hook like any plugin would.
    """


@hookspec
def kme_register_commands(cli: "click.Group") -> None:
    """Add sub-commands to the ``kme`` command line.

    :param cli: the top-level click group; add commands or groups to it.
    :returns: nothing.

    Called once when the CLI starts, after plugins load. Not firstresult.
    """


# --------------------------------------------------------------------------------------
# Phase 2: operation
# --------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def kme_locate(model: "EditedModel", locator: "Locator", requests: list["EditRequest"]) -> "Location | None":
    """Find where in ``model`` the facts of ``requests`` live.

    :param model: the (possibly already edited) model.
    :param locator: the configured locator instance the pipeline named.
    :param requests: the requests to locate.
    :returns: a :class:`kme.Location`, or ``None`` to let the next implementation answer.

    Called before editing when a pipeline names a ``locator``; editors receive the location
    in their context. firstresult: the first non-``None`` answer wins. The built-in dispatch
    plugin answers by calling ``locator.locate(model, requests)``.
    """


@hookspec(firstresult=True)
def kme_edit(
    model: "EditedModel", editor: "Editor", requests: list["EditRequest"], location: "Location | None"
) -> "EditHandle | None":
    """Apply ``requests`` to ``model`` with ``editor`` and return an undoable handle.

    :param model: the composed edited model; weight changes must go through
        ``handle.add_delta`` (or ``handle.set_param``) so they can be undone bit for bit and
        saved in a patch; memory items through ``handle.memory``.
    :param editor: the configured editor instance.
    :param requests: one batch of requests to apply together.
    :param location: what the pipeline's locator found, or ``None``.
    :returns: the :class:`kme.EditHandle` that records the edit, or ``None`` to let the next
        implementation answer.

    Called once per batch, editors in pipeline order. firstresult. Wrappers around this hook
    see every edit of every editor: the kernel's ``guards`` plugin times it, records peak
    memory, logs it and rolls back an edit that leaves non-finite weights.
    """


@hookspec
def kme_memory_lookup(model: "EditedModel", prompts: list[str]) -> "list[MemoryHit] | None":
    """Retrieve stored edits relevant to ``prompts`` at inference time.

    :param model: the edited model, whose ``stack`` holds every applied edit handle.
    :param prompts: the queries about to be scored or generated from.
    :returns: hits (each names the prompt index it belongs to and the context text to place
        before that prompt; optionally a ``router`` that answers the prompt instead of the
        edited model, as SERAC's counterfactual model does), or ``None``.

    Called by the kernel's single inference path (``EditedModel.score`` /
    ``EditedModel.generate``) before every batch, so memory editors compose with parametric
    ones. Not firstresult: the hits of every implementation are combined in stack order.
    """


@hookspec(firstresult=True)
def kme_evaluate(
    model: "EditedModel", metric: "Metric", requests: list["EditRequest"], context: "EvalContext"
) -> "list[float | None] | None":
    """Score ``model`` on ``requests`` with ``metric``.

    :param model: the edited (or, for baselines, unedited) model.
    :param metric: the configured metric instance.
    :param requests: the requests whose probes to score.
    :param context: evaluation context: the protocol phase, the pre-edit output cache, the
        run's random generator.
    :returns: one value per request (``None`` where the request has no probe for this
        metric), or ``None`` to let the next implementation answer.

    Called after each batch of edits (and once on the unedited model for baselines).
    firstresult. The built-in dispatch plugin calls ``metric.compute(...)``.
    """


@hookspec(firstresult=True)
def kme_prepare_metric(
    model: "EditedModel", metric: "Metric", requests: list["EditRequest"], context: "EvalContext"
) -> "bool | None":
    """Let ``metric`` read what it needs from the unedited ``model`` before any edit.

    :param model: the unedited model.
    :param metric: the configured metric instance.
    :param requests: every request of the run.
    :param context: the evaluation context (``phase`` is ``baseline``); what the metric
        stores in ``context.cache`` is saved with the run and reused on resume.
    :returns: ``True`` once the metric is prepared, or ``None`` to let the next
        implementation answer.

    Called once per run, before the baseline is scored (not again on resume: the cache is
    read back). firstresult. The built-in dispatch plugin calls ``metric.prepare(...)``;
    the guards plugin times it like ``kme_evaluate``.
    """


# --------------------------------------------------------------------------------------
# Phase 3: lifecycle
# --------------------------------------------------------------------------------------


@hookspec
def kme_run_start(config: dict[str, Any], run_dir: str) -> None:
    """A pipeline run is starting (or resuming).

    :param config: the resolved pipeline configuration (JSON-serialisable).
    :param run_dir: the run folder.
    :returns: nothing.

    Called once per ``kme run`` after the config validates and before the model loads.
    Not firstresult.
    """


@hookspec
def kme_run_end(summary: dict[str, Any], run_dir: str) -> None:
    """A pipeline run finished and ``summary.json`` was written.

    :param summary: the summary as written.
    :param run_dir: the run folder.
    :returns: nothing.

    Called once per completed ``kme run``. Not firstresult.
    """
