"""Patches: an edit stack saved as safetensors deltas plus a JSON manifest (never pickle).

A patch directory holds ``manifest.json`` and ``deltas.safetensors``. The manifest records the
base model's fingerprint, the editors with their params, the requests, memory items, extension
state names and package versions. Loading refuses a patch made for another base model, and
checks the whole patch (manifest schema, every tensor present, of the parameter's shape and
finite) before anything is applied, so a damaged patch changes nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kme.data import EditRequest
from kme.errors import KmeError, PatchMismatchError, format_validation_error
from kme.files import read_json

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme.edited import EditedModel, EditHandle

__all__ = ["save_patch", "load_patch", "read_manifest", "read_tensors", "check_tensors", "PatchManifest", "PATCH_FORMAT_VERSION"]

PATCH_FORMAT_VERSION = 1


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class PatchBase(_Loose):
    source: str
    fingerprint: str
    model_type: str | None = None


class PatchEdit(_Loose):
    """One edit of the stack as the manifest lists it."""

    id: int | None = None
    editor: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    requests: list[dict[str, Any]] = Field(default_factory=list)
    deltas: list[str] = Field(default_factory=list)
    memory: list[dict[str, Any]] = Field(default_factory=list)
    state: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)


class PatchManifest(_Loose):
    """``manifest.json``: validated before any tensor is read."""

    kme_patch_version: int
    base_model: PatchBase
    edits: list[PatchEdit]
    versions: dict[str, Any] = Field(default_factory=dict)


def _write_atomic(path: Path, write: Any) -> None:
    """``write(tmp)`` then rename over ``path``: an interrupted save leaves the old file whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_patch(model: "EditedModel", path: str, handles: list["EditHandle"]) -> None:
    from safetensors.torch import save_file

    from kme.versions import package_versions

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for i, h in enumerate(handles):
        for name, d in h.deltas.items():
            tensors[f"{i}/delta/{name}"] = d.contiguous()
        for name, t in h.state.items():
            tensors[f"{i}/state/{name}"] = t.detach().cpu().contiguous()
    manifest = {
        "kme_patch_version": PATCH_FORMAT_VERSION,
        "base_model": {"source": model.source, "fingerprint": model.base_fingerprint,
                       "model_type": model.layout.model_type},
        "edits": [h.manifest() for h in handles],
        "versions": package_versions(),
    }
    text = json.dumps(manifest, indent=2, default=str)
    _write_atomic(out / "deltas.safetensors", lambda tmp: save_file(tensors, tmp, metadata={"format": "kme-patch"}))
    _write_atomic(out / "manifest.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_manifest(path: str | Path) -> PatchManifest:
    """The validated manifest of the patch folder ``path`` (errors name the file and field)."""
    src = Path(path)
    mpath = src / "manifest.json"
    if not mpath.is_file():
        raise KmeError(f"{src} is not a kme patch: no manifest.json", hint="pass the folder save_patch wrote")
    raw = read_json(mpath, what="patch manifest", error=KmeError)
    if not isinstance(raw, dict):
        raise KmeError(f"a patch manifest is a JSON object, got {type(raw).__name__}", where=str(mpath))
    if raw.get("kme_patch_version") != PATCH_FORMAT_VERSION:
        raise KmeError(f"unsupported patch format version {raw.get('kme_patch_version')!r} "
                       f"(this kme reads version {PATCH_FORMAT_VERSION})", where=f"{mpath}: kme_patch_version")
    try:
        return PatchManifest.model_validate(raw)
    except ValidationError as e:
        raise KmeError(f"not a valid patch manifest: {format_validation_error(e)}", where=str(mpath),
                       hint="the folder must be written by save_patch / `kme edit --save-patch`") from None


def read_tensors(path: str | Path) -> dict[str, "torch.Tensor"]:
    """Every tensor of ``deltas.safetensors``; a missing, truncated or foreign file is one error."""
    from safetensors.torch import load_file

    f = Path(path) / "deltas.safetensors"
    if not f.is_file():
        raise KmeError(f"patch {str(path)!r} has no deltas.safetensors", where=str(f),
                       hint="copy the whole patch folder (manifest.json and deltas.safetensors)")
    try:
        return load_file(str(f))
    except Exception as e:  # SafetensorError, HeaderTooLarge, OSError...: a damaged file
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise KmeError(f"cannot read the patch tensors ({msg}): the file is truncated or not safetensors",
                       where=str(f), hint="re-save the patch; it cannot be repaired") from None


def check_tensors(model: "EditedModel | None", manifest: PatchManifest, tensors: dict[str, "torch.Tensor"],
                  mpath: Path) -> None:
    """Every tensor the manifest lists is present and finite; with ``model``, every delta names
    one of its parameters and has that parameter's shape."""
    import torch

    for i, e in enumerate(manifest.edits):
        for kind, names in (("delta", e.deltas), ("state", e.state)):
            for name in names:
                where = f"{mpath}: edits[{i}].{'deltas' if kind == 'delta' else 'state'}"
                t = tensors.get(f"{i}/{kind}/{name}")
                if t is None:
                    raise KmeError(f"{kind} {name!r} is listed but deltas.safetensors holds no tensor "
                                   f"'{i}/{kind}/{name}'", where=where)
                if kind == "delta" and model is not None:
                    p = model._params.get(name)
                    if p is None:
                        raise KmeError(f"the base model has no parameter {name!r}", where=where,
                                       hint="the patch belongs to another architecture")
                    if tuple(t.shape) != tuple(p.shape):
                        raise KmeError(f"delta {name!r} has shape {tuple(t.shape)}, the parameter has "
                                       f"{tuple(p.shape)}", where=where)
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise KmeError(f"{kind} {name!r} holds NaN or inf; nothing was applied", where=where,
                                   hint="the patch was saved from a diverged edit; re-make it")


def load_patch(model: "EditedModel", path: str) -> list["EditHandle"]:
    from kme.edited import EditHandle

    src = Path(path)
    mpath = src / "manifest.json"
    manifest = read_manifest(src)
    base = manifest.base_model
    if base.fingerprint != model.base_fingerprint:
        raise PatchMismatchError(
            f"patch {src} was made for base model {base.source!r} (fingerprint {base.fingerprint}), "
            f"but this model ({model.source!r}) has fingerprint {model.base_fingerprint}",
            hint="load the same base model the patch was saved from (same weights, unedited)",
        )
    # Everything is checked before the first edit is applied.
    plans = []
    for i, e in enumerate(manifest.edits):
        where = f"{mpath}: edits[{i}]"
        known = e.editor in model.pm.editors
        if not known and (e.memory or e.state):
            model.pm.editors.get(e.editor, where=f"{where}.editor")  # unknown: "did you mean"
        editor = None
        if known:
            cls = model.pm.editors.get(e.editor, where=f"{where}.editor")
            editor = cls(cls.parse_params(e.params, where=f"{where}.params"))
            if cls.capabilities.kind == "parametric" and e.memory:
                # parametric editors may keep tensors in state (AlphaEdit's keys), never memory items
                raise KmeError(f"editor {e.editor!r} is parametric: its edits hold no memory items, but "
                               f"this one lists {len(e.memory)}", where=f"{where}.memory")
        requests = []
        for j, r in enumerate(e.requests):
            try:
                requests.append(EditRequest.model_validate(r))
            except ValidationError as err:
                raise KmeError(format_validation_error(err, prefix=f"requests[{j}]"), where=where) from None
        plans.append((e, editor, requests))
    tensors = read_tensors(src)
    check_tensors(model, manifest, tensors, mpath)

    handles: list[EditHandle] = []
    try:
        for i, (e, editor, requests) in enumerate(plans):
            h = EditHandle(editor_name=e.editor, params=e.params, requests=requests, model=model, editor=editor,
                           memory=e.memory, meta=e.meta)
            handles.append(h)
            h.state = {n: tensors[f"{i}/state/{n}"] for n in e.state}
            for name in e.deltas:
                h.add_delta(name, tensors[f"{i}/delta/{name}"])
            h._before.clear()
            if editor is not None:
                try:
                    editor.restore(model, h)
                except KmeError as err:
                    raise KmeError(err.message, hint=err.hint, where=f"{mpath}: edits[{i}]") from None
                except Exception as err:  # memory or state of the wrong shape for this editor
                    raise KmeError(f"editor {e.editor!r} cannot restore this edit ({type(err).__name__}: "
                                   f"{str(err)[:200]})", where=f"{mpath}: edits[{i}]",
                                   hint="its memory/state/meta do not match what the editor saves") from None
            model.stack.append(h)
    except BaseException:
        for h in reversed(handles):  # a patch is applied whole or not at all
            model.rollback(h)
        raise
    return handles
