"""Loading any Hugging Face causal LM by hub id, local path or registered alias."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import re

from pydantic import (BaseModel, ConfigDict, Field, SerializationInfo, SerializerFunctionWrapHandler,
                      field_validator, model_serializer, model_validator)

from kme.errors import ModelLoadError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from kme.edited import EditedModel
    from kme.plugins import KmePluginManager

__all__ = ["ModelSpec", "check_device", "check_model_devices", "load_model", "resolve_model_path"]

DType = Literal["auto", "float32", "float16", "bfloat16"]

#: Placement strategies accelerate computes from the free memory of each device.
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


class ModelSpec(BaseModel):
    """Which model to load and how. A bare string in YAML means ``{name: <string>}``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="alias, local directory or hub id")
    dtype: DType = "float32"
    device: str = Field("cpu", description="cpu, cuda, cuda:N or mps")
    device_map: str | dict[str, str | int] | None = Field(
        None, description="auto, balanced, balanced_low_0, sequential, or {module: device} (through accelerate)")
    max_memory: dict[str | int, str | int] | None = Field(
        None, description="{device: size} caps for a computed device_map, e.g. {0: 20GiB, cpu: 60GiB}")
    revision: str | None = None
    trust_remote_code: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("name")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():  # '' would load the current directory
            raise ValueError("must name a model (an alias, a local directory or a hub id)")
        return v

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if not _DEVICE.fullmatch(v):
            raise ValueError(f"{v!r} is not a device kme can place a model on: use cpu, cuda, cuda:N or mps")
        return v

    @field_validator("device_map")
    @classmethod
    def _known_map(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, str):
            if v not in DEVICE_MAP_STRATEGIES:
                raise ValueError(f"{v!r} is not a device_map: use one of {', '.join(DEVICE_MAP_STRATEGIES)} or a "
                                 "mapping {module name: device}")
            return v
        if not v:
            raise ValueError("an empty device_map places no module; name each module's device, e.g. {'': cpu}")
        return {module: _map_device(d, f"device_map[{module!r}]") for module, d in v.items()}

    @field_validator("max_memory")
    @classmethod
    def _known_sizes(cls, v: Any) -> Any:
        if v is None:
            return v
        out: dict[str | int, str | int] = {}
        for dev, size in v.items():
            key = _map_device(dev, f"max_memory key {dev!r}")
            if isinstance(size, bool) or (isinstance(size, int) and size <= 0) or \
                    (isinstance(size, str) and not _SIZE.fullmatch(size.strip())):
                raise ValueError(f"max_memory[{dev!r}] = {size!r} is not a size: use bytes or e.g. '20GiB', '500MB'")
            out[key] = size.strip() if isinstance(size, str) else size
        return out

    @model_validator(mode="after")
    def _one_placement(self) -> "ModelSpec":
        if self.device_map is not None and "device" in self.model_fields_set and self.device != "cpu":
            raise ValueError(f"give device ({self.device!r}) or device_map, not both: with a device_map each "
                             "module's device comes from the map")
        if self.max_memory is not None and self.device_map is None:
            raise ValueError("max_memory caps the devices a device_map may use: add device_map: auto (or balanced)")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        # Unset placement keys are left out, so runs saved before they existed still resume.
        d = handler(self)
        for key in ("device_map", "max_memory"):
            if d.get(key, 0) is None:
                del d[key]
        return d


_DEVICE = re.compile(r"cpu|cuda(:[0-9]{1,3})?|mps")
_SIZE = re.compile(r"[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B)", re.IGNORECASE)


def _map_device(d: Any, what: str) -> str | int:
    """A device named in a device_map or max_memory: ``cpu``, ``mps``, ``cuda[:N]`` or a GPU
    index ``N``; ``disk`` and ``meta`` are refused (kme edits weights, which must be in memory)."""
    if isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1000:
        return d
    if isinstance(d, str) and d.isdigit():
        return int(d)
    if isinstance(d, str) and _DEVICE.fullmatch(d):
        return d
    if d in ("disk", "meta"):
        raise ValueError(f"{what}: {d!r} would offload weights, which kme cannot edit: place every module on "
                         "cpu, cuda:N or mps")
    raise ValueError(f"{what}: {d!r} is not a device: use cpu, cuda, cuda:N, a GPU index N, or mps")


def _has_accelerate() -> bool:
    """Whether the ``device-map`` extra (accelerate, which transformers places weights with) is installed."""
    try:
        import accelerate  # noqa: F401
    except ImportError:
        return False
    return True


def _accelerate_key(d: str | int) -> str | int:
    """accelerate names GPUs by index in max_memory: ``cuda:1`` -> 1, ``cuda`` -> 0."""
    if isinstance(d, str) and d.startswith("cuda"):
        return int(d.split(":")[1]) if ":" in d else 0
    return d


def _as_torch_device(d: str | int) -> str:
    return f"cuda:{d}" if isinstance(d, int) else d


def check_device(device: str | int, where: str = "model.device") -> None:
    """Refuse, before loading weights, a device this torch build or machine does not have."""
    import torch

    device = _as_torch_device(device)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} is not available: this torch build or machine has no CUDA "
                                 "device", where=where, hint="use device: cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s)",
                                 where=where, hint="use cuda:0 .. cuda:N-1")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' is not available on this machine", where=where,
                             hint="use device: cpu")
    elif device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ModelLoadError(f"{device!r} is not a device kme can place a model on", where=where,
                             hint="use cpu, cuda, cuda:N or mps")


def check_model_devices(spec: ModelSpec, where: str | None = None) -> None:
    """Every device ``spec`` names (``device``, or ``device_map`` and ``max_memory``) exists
    here; a computed map (``auto``...) needs accelerate. Called by ``kme validate`` and before
    loading. ``where`` prefixes the field named in the error (e.g. the pipeline file)."""
    def at(field: str) -> str:
        return f"{where}: model.{field}" if where else f"model.{field}"

    if spec.device_map is None:
        check_device(spec.device, at("device"))
        return
    if not _has_accelerate():
        raise ModelLoadError("device_map needs the accelerate package, which is not installed", where=at("device_map"),
                             hint="pip install accelerate, or use device: instead of device_map")
    if isinstance(spec.device_map, dict):
        for module, d in spec.device_map.items():
            check_device(d, at(f"device_map[{module!r}]"))
    for d in spec.max_memory or {}:
        check_device(d, at(f"max_memory[{d!r}]"))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def resolve_model_path(name: str, pm: "KmePluginManager") -> str:
    """Alias -> its target; otherwise the name itself (a local path or a hub id)."""
    if name in pm.aliases:
        return pm.aliases.get(name).target
    return name


def load_model(spec: ModelSpec | str | dict[str, Any], pm: "KmePluginManager") -> "EditedModel":
    """Load a causal LM and wrap it as an :class:`~kme.edited.EditedModel`.

    ``spec``: a :class:`ModelSpec`, its mapping (``{"name": ..., "dtype": "bfloat16",
    "device_map": "auto"}``) or a bare name. Weights load straight onto their device(s) in
    the requested dtype (docs/devices.md).

    Raises :class:`ModelLoadError` naming the model and the fix when it cannot be found, the
    hub cannot be reached, or no layout covers its architecture.

    transformers' "Loading weights" bars and warnings follow kme's switches
    (:func:`kme.progress.library_output`): off under ``--no-progress`` / ``-q``.
    """
    from kme.progress import library_output

    with library_output():
        return _load_model(spec, pm)


def _load_model(spec: ModelSpec | str | dict[str, Any], pm: "KmePluginManager") -> "EditedModel":
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from kme.edited import EditedModel

    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.model_validate(spec)
    check_model_devices(spec)
    target = resolve_model_path(spec.name, pm)
    local = Path(target).expanduser()
    is_local = local.exists()
    if not is_local and (target.startswith((".", "/", "~")) or os.sep in target and target.count("/") > 1):
        raise ModelLoadError(f"model path {target!r} does not exist",
                             hint=f"pass an existing directory, a hub id, or an alias; aliases: "
                                  f"{did_you_mean(spec.name, pm.aliases)}", where="model")
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.revision:
        kwargs["revision"] = spec.revision
    src = str(local) if is_local else target
    try:
        config = AutoConfig.from_pretrained(src, **kwargs)
    except (OSError, ValueError) as e:
        where = "local directory" if is_local else "Hugging Face hub id"
        raise ModelLoadError(
            f"could not load model {spec.name!r} ({where} {src!r}): {str(e).splitlines()[0]}",
            where="model",
            hint=("the hub cannot be reached from here; download the model elsewhere and pass its "
                  "local directory as `model: /path/to/model`" if not is_local else
                  "the directory must hold a config.json and weights saved with save_pretrained"),
        ) from None
    model_type = getattr(config, "model_type", None)
    if model_type not in pm.layouts:
        raise ModelLoadError(
            f"no layout covers architecture {model_type!r} of model {spec.name!r}",
            where="model",
            hint=f"supported: {', '.join(pm.layouts)}; a plugin can add one through "
                 "kme_register_model_layouts",
        )
    dtype = {"auto": "auto", "float32": torch.float32, "float16": torch.float16,
             "bfloat16": torch.bfloat16}[spec.dtype]
    # Weights load straight onto their device in the requested dtype (through accelerate, which
    # transformers needs for any device_map); without accelerate they load on cpu and move.
    placement: dict[str, Any] = {"device_map": spec.device} if _has_accelerate() else {}
    if spec.device_map is not None:
        placement = {"device_map": spec.device_map if isinstance(spec.device_map, str) else
                     {m: _as_torch_device(d) for m, d in spec.device_map.items()}}
        if spec.max_memory:
            placement["max_memory"] = {_accelerate_key(d): size for d, size in spec.max_memory.items()}
    try:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, **placement, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(src, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"could not load weights or tokenizer of {spec.name!r}: {_first_line(e)}",
                             where="model") from None
    except Exception as e:  # e.g. UnpicklingError: torch refuses a pickled checkpoint
        if type(e).__name__ not in ("UnpicklingError", "SafetensorError", "HeaderTooLarge", "JSONDecodeError",
                                    "UnicodeDecodeError", "EnvironmentError"):
            raise
        why = ("its weights are a pickle, which torch refuses to load (it could run code)"
               if type(e).__name__ == "UnpicklingError" else f"{type(e).__name__}: {_first_line(e)}")
        raise ModelLoadError(f"could not read the weights or tokenizer of {spec.name!r}: {why}", where="model",
                             hint="kme loads safetensors weights; re-save the model with "
                                  "save_pretrained(safe_serialization=True)") from None
    if "device_map" not in placement and spec.device != "cpu":
        model.to(spec.device)
    offloaded = sorted({n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.device.type == "meta"})
    if offloaded:
        raise ModelLoadError(f"model {spec.name!r} does not fit the devices of its device_map: "
                             f"{len(offloaded)} module(s) were offloaded (e.g. {offloaded[0]!r}), and kme "
                             "cannot edit offloaded weights", where="model.device_map",
                             hint="raise max_memory, add a device, or use a smaller dtype")
    model.eval()
    return EditedModel(model, tokenizer, pm.layouts.get(model_type), pm, source=spec.name)
