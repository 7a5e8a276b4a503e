"""Base classes for everything a pipeline can name: editors, locators, datasets, metrics.

A plugin subclasses one of these, sets the class attributes, and registers the class through
the matching ``kme_register_*`` hook. The kernel instantiates it with validated params.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from kme.errors import ConfigError, format_validation_error

if TYPE_CHECKING:  # pragma: no cover
    from kme.data import EditRequest, Location, MemoryHit
    from kme.edited import EditedModel, EditHandle
    from kme.evaluation import EvalContext
    from kme.presets import ResolvedParams

__all__ = ["Params", "Capabilities", "Component", "Editor", "Locator", "Dataset", "Metric"]


class Params(BaseModel):
    """Base for component params: unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Capabilities(BaseModel):
    """What an editor can do; the runner and ``kme plugins`` read these.

    ``batch``: edits several requests in one call (else a pipeline's ``batch_size`` must be 1).
    ``sequential``: its edits can accumulate (protocols of kind ``sequential``).
    ``needs_training``: has trained parts; when :meth:`Editor.is_trained` is false the runner
    calls :meth:`Editor.train` on the dataset's train split before the baseline.
    ``trains_base``: (with ``needs_training``) :meth:`Editor.train` writes a new base model (a
    ``from_pretrained`` folder) that a pipeline names as its ``model``, not parts the component
    uses itself: ``kme train`` prints the ``model:`` line, and a pipeline refuses it as an editor.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["parametric", "memory", "extension"] = "parametric"
    batch: bool = True
    sequential: bool = True
    needs_training: bool = False
    trains_base: bool = False


class Component:
    """Common shape of every registered component."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    kind_label: ClassVar[str] = "component"

    def __init__(self, params: Params | dict[str, Any] | None = None):
        self.params = self.parse_params(params)

    @classmethod
    def parse_params(cls, params: Params | dict[str, Any] | None, where: str | None = None) -> Params:
        if isinstance(params, cls.Params):
            return params
        try:
            return cls.Params.model_validate(params or {})
        except ValidationError as e:
            where = where or f"{cls.kind_label} {cls.name!r} params"
            fields = ", ".join(cls.Params.model_fields) or "(none)"
            raise ConfigError(
                format_validation_error(e),
                where=where,
                hint=f"{cls.kind_label} {cls.name!r} accepts: {fields}",
            ) from None

    @classmethod
    def info(cls) -> dict[str, Any]:
        return {
            "name": cls.name,
            "description": cls.description,
            "params": cls.Params.model_json_schema(),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.params!r}>"


class Editor(Component):
    """An editing method. Parametric editors change weights through the handle; memory
    editors store items in ``handle.memory`` and answer :meth:`lookup`; extension editors add
    modules and register their removal with ``handle.on_undo``."""

    kind_label: ClassVar[str] = "editor"
    capabilities: ClassVar[Capabilities] = Capabilities()
    resolution: "ResolvedParams | None" = None
    """Set when the editor was configured for a model (presets): each param's source."""

    def apply(
        self, model: "EditedModel", requests: list["EditRequest"], location: "Location | None" = None
    ) -> "EditHandle":
        """Apply ``requests``; create the handle with ``model.new_handle(self, requests)``."""
        raise NotImplementedError(f"editor {self.name!r} does not implement apply()")

    def precompute(self, model: "EditedModel", batches: list[list["EditRequest"]]) -> None:
        """Independent batches ahead: compute together, on the unedited ``model``, what
        :meth:`apply` would compute for each of ``batches`` alone, so that ``apply`` can use it.

        The batch protocol calls it on the pipeline's first editor, on the unedited model, for
        the next chunk of batches (``protocol.params.precompute``); ``apply`` must still give
        what it gives without it (use a result only when the model is in the state it was
        computed on). Default: nothing."""

    def is_trained(self) -> bool:
        """Editors with ``capabilities.needs_training``: whether the params name trained parts
        (a checkpoint) to use. The runner trains the editor first when this is false."""
        return True

    def train(self, model: "EditedModel", requests: list["EditRequest"], out_dir: str) -> dict[str, Any]:
        """Fit the editor's trained parts on ``requests`` (a dataset's train split, never the
        requests being edited) starting from ``model``, write them under ``out_dir``, and
        return the params that point at them (e.g. ``{"checkpoint": out_dir}``).

        Called by the runner once per run folder (a resumed run reuses the result) when
        ``capabilities.needs_training`` is set and :meth:`is_trained` is false; the run's
        ``config.json`` records the returned params with the source ``trained``."""
        raise NotImplementedError(f"editor {self.name!r} declares needs_training but does not implement train()")

    def check_model(self, model: "EditedModel") -> None:
        """Raise :class:`kme.errors.ConfigError` (``where`` naming the param) if these params
        cannot work on ``model``: a layer it lacks, a corpus it has none of, ... The runner
        calls it once after the model loads, so a bad setting stops the run before any edit.

        The default checks params named ``layer`` (an int) and ``layers`` (a list of ints)
        against the model's blocks; an override that keeps them should call ``super()``."""
        from kme.errors import KmeError

        for name in ("layer", "layers"):
            value = getattr(self.params, name, None)
            values = value if isinstance(value, list) else [value]
            for i, v in enumerate(values):
                if isinstance(v, int) and not isinstance(v, bool):
                    try:
                        model.check_layer(v)
                    except KmeError as e:
                        raise ConfigError(e.message, hint=e.hint,
                                          where=name + (f"[{i}]" if isinstance(value, list) else "")) from None

    def lookup(self, model: "EditedModel", handle: "EditHandle", prompts: list[str]) -> list["MemoryHit"]:
        """Memory editors: the stored items of ``handle`` relevant to ``prompts``."""
        return []

    def restore(self, model: "EditedModel", handle: "EditHandle") -> None:
        """Rebuild non-weight state (memory indexes, added modules) after a patch loads.

        Weight deltas are re-applied by the kernel; override this when ``handle.memory`` or
        ``handle.state`` must be turned back into live objects.
        """

    @classmethod
    def info(cls) -> dict[str, Any]:
        return {**super().info(), "capabilities": cls.capabilities.model_dump()}


class Locator(Component):
    """Finds where a fact lives (layers, modules, neurons)."""

    kind_label: ClassVar[str] = "locator"

    def locate(self, model: "EditedModel", requests: list["EditRequest"]) -> "Location":
        raise NotImplementedError(f"locator {self.name!r} does not implement locate()")


class Dataset(Component):
    """Turns a dataset's native records into :class:`kme.EditRequest` objects.

    ``source_format`` and ``homepage`` are shown by ``kme plugins`` so users know which file
    to pass and where to get it.
    """

    kind_label: ClassVar[str] = "dataset"
    source_format: ClassVar[str] = ""
    homepage: ClassVar[str] = ""

    def load(self) -> Iterable["EditRequest"]:
        raise NotImplementedError(f"dataset {self.name!r} does not implement load()")

    def train_requests(self) -> Iterable["EditRequest"]:
        """Requests for methods that train (MEND, SERAC); empty when the dataset has none."""
        return []

    @classmethod
    def info(cls) -> dict[str, Any]:
        return {**super().info(), "source_format": cls.source_format, "homepage": cls.homepage}


class Metric(Component):
    """Scores a model on requests' probes; one value per request.

    ``scoring`` names how an answer is judged (``probability-comparison``,
    ``teacher-forced-token-accuracy``, ``greedy-exact-match``, ``agreement``, ...).
    ``protocols`` lists the protocols it applies to.
    """

    kind_label: ClassVar[str] = "metric"
    scoring: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    protocols: ClassVar[tuple[str, ...]] = ("batch", "sequential")

    def prepare(self, model: "EditedModel", requests: list["EditRequest"], context: "EvalContext") -> None:
        """Called once per run on the unedited model over every request, before any edit.

        Store what later calls need (unedited predictions for locality, ...) in
        ``context.cache[self.name]``; it must be JSON-serialisable (it is saved with the run
        and reused on resume).
        """

    def compute(
        self, model: "EditedModel", requests: list["EditRequest"], context: "EvalContext"
    ) -> list[float | None]:
        raise NotImplementedError(f"metric {self.name!r} does not implement compute()")

    def details(self, context: "EvalContext | None" = None) -> dict[str, Any]:
        """Extra facts for ``summary.json`` (``metrics.<name>.details``): counts, ties, what a
        score was computed from. Called once when the run is summarised; empty by default."""
        return {}

    @classmethod
    def info(cls) -> dict[str, Any]:
        return {**super().info(), "scoring": cls.scoring, "higher_is_better": cls.higher_is_better}
