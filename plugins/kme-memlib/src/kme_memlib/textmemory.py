"""Memory editors whose items are natural-language texts that people can read, add and remove
without retraining anything (MemPrompt's feedback, Language Patch's patches).

A subclass says how a request becomes an item, which text of an item is matched against the
query and when a retrieved item applies; its ``template`` param says how the applied items
read before the query. Items live in ``handle.memory`` (JSON), so they travel in patches;
:func:`add_item`, :func:`remove_item` and :func:`list_items` edit them on a loaded model, and
:func:`memory_command` builds the ``kme <editor> list|add|remove`` command group.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import kme
from kme import KmeError, render

from kme_memlib.memory import MemoryEditor, editor_handles

if TYPE_CHECKING:  # pragma: no cover
    import click

    from kme import EditedModel, EditHandle, EditRequest, Location, MemoryHit

__all__ = ["TextMemoryEditor", "add_item", "remove_item", "list_items", "memory_command"]


class TextMemoryEditor(MemoryEditor):
    """Base of memory editors over readable text items (subclass; not registered itself).

    Its params need ``embedder``, ``embedder_model``, ``candidates``, ``max_items`` and a
    ``template`` over :attr:`fields`."""

    fields: ClassVar[tuple[str, ...]] = ()  # the item's text fields, e.g. ("question", "feedback")

    def item_from_request(self, r: "EditRequest") -> dict[str, Any]:
        raise NotImplementedError

    def applies(self, query: str, item: dict[str, Any], score: float) -> bool:
        """Whether a retrieved item applies to ``query`` (``score``: retrieval similarity)."""
        raise NotImplementedError

    def render(self, items: list[dict[str, Any]]) -> str:
        """The context placed before the query for the items that apply (nearest last): the
        ``template`` param filled with each item's fields."""
        return "".join(render(self.params.template, self.fields, **it) for it in items)  # type: ignore[attr-defined]

    def check_item(self, item: dict[str, Any]) -> dict[str, Any]:
        missing = [f for f in self.fields if not str(item.get(f, "")).strip()]
        if missing:
            raise KmeError(f"{self.name} item lacks {', '.join(missing)}",
                           hint=f"a {self.name} item has the fields: {', '.join(self.fields)}")
        return {"id": item.get("id") or uuid.uuid4().hex[:8], **{f: str(item[f]).strip() for f in self.fields},
                **{k: v for k, v in item.items() if k not in self.fields and k != "id"}}

    # -- the editor contract ------------------------------------------------------------
    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        handle = model.new_handle(self, requests)
        handle.memory = [self.check_item({**self.item_from_request(r), "case_id": r.case_id}) for r in requests]
        return handle

    def lookup(self, model: "EditedModel", handle: "EditHandle", prompts: list[str]) -> list["MemoryHit"]:
        handles = self.answering_handles(model, handle)
        if not handles:
            return []
        p = self.params
        items, index = self.memory_index(model, handles, p.embedder, p.embedder_model)  # type: ignore[attr-defined]
        hits = []
        for i, found in enumerate(index.search(prompts, max(1, p.candidates))):  # type: ignore[attr-defined]
            chosen = [(items[j], s) for j, s in found if self.applies(prompts[i], items[j], s)]
            chosen = chosen[: p.max_items]  # type: ignore[attr-defined]
            if chosen:
                hits.append(kme.MemoryHit(prompt_index=i, source=self.name,
                                          context=self.render([it for it, _ in reversed(chosen)]),
                                          score=chosen[0][1]))
        return hits


# -- editing the memory of a loaded model ------------------------------------------------------
def list_items(model: "EditedModel", editor_name: str) -> list[dict[str, Any]]:
    return [it for h in editor_handles(model, editor_name) for it in h.memory]


def add_item(model: "EditedModel", editor_name: str, item: dict[str, Any],
             params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add ``item`` to the last handle of ``editor_name`` (a new handle when there is none)."""
    handles = editor_handles(model, editor_name)
    if handles:
        handle = handles[-1]
        editor = handle.editor
    else:
        editor = model.pm.editors.get(editor_name)(params)
        handle = model.new_handle(editor, [])
        model.stack.append(handle)
    assert isinstance(editor, TextMemoryEditor)
    checked = editor.check_item(item)
    if any(it["id"] == checked["id"] for it in list_items(model, editor_name)):
        raise KmeError(f"{editor_name} item id {checked['id']!r} already exists", hint="choose another id")
    handle.memory.append(checked)
    return checked


def remove_item(model: "EditedModel", editor_name: str, item_id: str) -> dict[str, Any]:
    for h in editor_handles(model, editor_name):
        for j, it in enumerate(h.memory):
            if it["id"] == item_id:
                return h.memory.pop(j)
    known = ", ".join(it["id"] for it in list_items(model, editor_name)) or "(none)"
    raise KmeError(f"no {editor_name} item with id {item_id!r}", hint=f"ids: {known}")


# -- the command group ---------------------------------------------------------------------
def _read_manifest(patch_dir: str) -> dict[str, Any]:
    path = Path(patch_dir) / "manifest.json"
    if not path.is_file():
        raise KmeError(f"{patch_dir} is not a kme patch: no manifest.json",
                       hint="create one with `add --model NAME`, or pass a folder written by save_patch")
    from kme import read_manifest

    return read_manifest(patch_dir).model_dump(mode="json")


def memory_command(editor_name: str, fields: tuple[str, ...], help_text: str) -> "click.Group":
    """``kme <editor_name> list|add|remove``: manage the items of a saved patch."""
    import click

    @click.group(name=editor_name, help=help_text)
    def group() -> None:
        pass

    @group.command("list")
    @click.argument("patch_dir", type=click.Path(file_okay=False))
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def list_cmd(patch_dir: str, as_json: bool) -> None:
        """List the items stored in PATCH_DIR (no model needed)."""
        manifest = _read_manifest(patch_dir)
        items = [it for e in manifest.get("edits", []) if e.get("editor") == editor_name for it in e.get("memory", [])]
        if as_json:
            click.echo(json.dumps(items, indent=2))
            return
        if not items:
            click.echo(f"{patch_dir}: no {editor_name} items")
        for it in items:
            click.echo(f"{it['id']}  " + "  |  ".join(f"{f}: {it.get(f, '')}" for f in fields))

    def _open(patch_dir: str, model_name: str) -> "EditedModel":
        model = kme.load(model_name)
        if (Path(patch_dir) / "manifest.json").is_file():
            model.load_patch(patch_dir)
        return model

    @group.command("add")
    @click.argument("patch_dir", type=click.Path(file_okay=False))
    @click.option("--model", "model_name", required=True, help="Base model the patch belongs to (alias or path).")
    @click.option("--id", "item_id", default=None, help="Item id (default: a random one).")
    def add_cmd(patch_dir: str, model_name: str, item_id: str | None, **values: str) -> None:
        """Add an item to PATCH_DIR (created if missing); nothing is retrained."""
        model = _open(patch_dir, model_name)
        item = add_item(model, editor_name, {"id": item_id, **values})
        model.save_patch(patch_dir)
        click.echo(f"added {item['id']} to {patch_dir}")

    for f in reversed(fields):
        add_cmd = click.option(f"--{f.replace('_', '-')}", f, required=True, help=f"The item's {f}.")(add_cmd)

    @group.command("remove")
    @click.argument("patch_dir", type=click.Path(file_okay=False))
    @click.argument("item_id")
    @click.option("--model", "model_name", required=True, help="Base model the patch belongs to (alias or path).")
    def remove_cmd(patch_dir: str, item_id: str, model_name: str) -> None:
        """Remove item ITEM_ID from PATCH_DIR."""
        _read_manifest(patch_dir)
        model = _open(patch_dir, model_name)
        remove_item(model, editor_name, item_id)
        model.save_patch(patch_dir)
        click.echo(f"removed {item_id} from {patch_dir}")

    return group
