"""Patches: an edit stack saved as safetensors deltas plus a JSON manifest (never pickle).

A patch directory holds ``manifest.json`` and ``deltas.safetensors``. The manifest records the
base model's fingerprint, the editors with their params, the requests, memory items, extension
state names and package versions. Loading refuses a patch made for another base model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from kme.data import EditRequest
from kme.errors import KmeError, PatchMismatchError

if TYPE_CHECKING:  # pragma: no cover
    from kme.edited import EditedModel, EditHandle

__all__ = ["save_patch", "load_patch", "PATCH_FORMAT_VERSION"]

PATCH_FORMAT_VERSION = 1


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
    save_file(tensors, str(out / "deltas.safetensors"), metadata={"format": "kme-patch"})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))


def load_patch(model: "EditedModel", path: str) -> list["EditHandle"]:
    from safetensors.torch import load_file

    from kme.edited import EditHandle

    src = Path(path)
    mpath = src / "manifest.json"
    if not mpath.is_file():
        raise KmeError(f"{src} is not a kme patch: no manifest.json", hint="pass the folder save_patch wrote")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise KmeError(f"{mpath}: not valid JSON ({e})") from None
    if manifest.get("kme_patch_version") != PATCH_FORMAT_VERSION:
        raise KmeError(f"{mpath}: unsupported patch format version {manifest.get('kme_patch_version')!r}")
    base = manifest["base_model"]
    if base["fingerprint"] != model.base_fingerprint:
        raise PatchMismatchError(
            f"patch {src} was made for base model {base['source']!r} (fingerprint {base['fingerprint']}), "
            f"but this model ({model.source!r}) has fingerprint {model.base_fingerprint}",
            hint="load the same base model the patch was saved from (same weights, unedited)",
        )
    tensors = load_file(str(src / "deltas.safetensors"))
    handles = []
    for i, e in enumerate(manifest["edits"]):
        editor_cls = model.pm.editors.get(e["editor"], where=f"{mpath} edits[{i}].editor") \
            if e["editor"] in model.pm.editors or e["memory"] or e["state"] else None
        editor = editor_cls(e["params"]) if editor_cls is not None else None
        h = EditHandle(editor_name=e["editor"], params=e["params"],
                       requests=[EditRequest.model_validate(r) for r in e["requests"]],
                       model=model, editor=editor, memory=e["memory"], meta=e.get("meta", {}))
        h.state = {n: tensors[f"{i}/state/{n}"] for n in e["state"]}
        for name in e["deltas"]:
            h.add_delta(name, tensors[f"{i}/delta/{name}"])
        if editor is not None:
            editor.restore(model, h)
        model.stack.append(h)
        handles.append(h)
    return handles
