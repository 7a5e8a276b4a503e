"""Loading any Hugging Face causal LM by hub id, local path or registered alias."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from kme.errors import ModelLoadError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from kme.edited import EditedModel
    from kme.plugins import KmePluginManager

__all__ = ["ModelSpec", "load_model", "resolve_model_path"]

DType = Literal["auto", "float32", "float16", "bfloat16"]


class ModelSpec(BaseModel):
    """Which model to load and how. A bare string in YAML means ``{name: <string>}``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dtype: DType = "float32"
    device: str = "cpu"
    revision: str | None = None
    trust_remote_code: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


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
        raise ModelLoadError(f"could not load weights or tokenizer of {spec.name!r}: {str(e).splitlines()[0]}",
                             where="model") from None
    model.to(spec.device)
    model.eval()
    return EditedModel(model, tokenizer, pm.layouts.get(model_type), pm, source=spec.name)
