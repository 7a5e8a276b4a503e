"""Loading any Hugging Face causal LM by hub id, local path or registered alias."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kme.errors import ModelLoadError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from kme.edited import EditedModel
    from kme.plugins import KmePluginManager

__all__ = ["ModelSpec", "load_model", "resolve_model_path"]

DType = Literal["auto", "float32", "float16", "bfloat16"]


class ModelSpec(BaseModel):
    """Which model to load and how. A bare string in YAML means ``{name: <string>}``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="alias, local directory or hub id")
    dtype: DType = "float32"
    device: str = Field("cpu", description="cpu, cuda, cuda:N or mps")
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


_DEVICE = re.compile(r"cpu|cuda(:[0-9]{1,3})?|mps")


def check_device(device: str) -> None:
    """Refuse, before loading weights, a device this torch build or machine does not have."""
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} is not available: this torch build or machine has no CUDA "
                                 "device", where="model.device", hint="use device: cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s)",
                                 where="model.device", hint="use cuda:0 .. cuda:N-1")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' is not available on this machine", where="model.device",
                             hint="use device: cpu")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def resolve_model_path(name: str, pm: "KmePluginManager") -> str:
    """Alias -> its target; otherwise the name itself (a local path or a hub id)."""
    if name in pm.aliases:
        return pm.aliases.get(name).target
    return name


def load_model(spec: ModelSpec | str, pm: "KmePluginManager") -> "EditedModel":
    """Load a causal LM and wrap it as an :class:`~kme.edited.EditedModel`.

    Raises :class:`ModelLoadError` naming the model and the fix when it cannot be found, the
    hub cannot be reached, or no layout covers its architecture.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from kme.edited import EditedModel

    spec = spec if isinstance(spec, ModelSpec) else ModelSpec(name=spec)
    check_device(spec.device)
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
    try:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, **kwargs)
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
    model.to(spec.device)
    model.eval()
    return EditedModel(model, tokenizer, pm.layouts.get(model_type), pm, source=spec.name)
