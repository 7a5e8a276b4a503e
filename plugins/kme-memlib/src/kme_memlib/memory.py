"""One searchable memory over every applied handle of a memory editor.

Sequential editing leaves one handle per edit on the model's stack. A query must be answered
from the whole edit memory (the nearest stored edit over all of them), not once per handle,
so the first applied handle of an editor answers for all of them and the others return no
hit. The index over the union of their items is rebuilt only when the set of handles changes.
:class:`MemoryEditor` is the base of editors that work this way.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import kme

from kme_memlib.retrieval import Embedder, Index, make_embedder

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle

__all__ = ["editor_handles", "SharedMemory", "MemoryEditor"]


def editor_handles(model: "EditedModel", name: str) -> list["EditHandle"]:
    """Applied handles of the editor called ``name``, in stack order."""
    return [h for h in model.stack if h.editor_name == name and h.applied]


class SharedMemory:
    """Caches, per model, an :class:`Index` over the items of a set of handles."""

    def __init__(self, key_text: Callable[[dict[str, Any]], str]):
        self.key_text = key_text
        self._cache: weakref.WeakKeyDictionary[Any, tuple[tuple[int, ...], list[dict[str, Any]], Index]] = \
            weakref.WeakKeyDictionary()

    def index(self, model: "EditedModel", handles: Sequence["EditHandle"],
              make_embedder: Callable[[], Embedder]) -> tuple[list[dict[str, Any]], Index]:
        sig = tuple((h.id, len(h.memory)) for h in handles)
        cached = self._cache.get(model)
        if cached is not None and cached[0] == sig:
            return cached[1], cached[2]
        items = [item for h in handles for item in h.memory]
        idx = Index([self.key_text(it) for it in items], make_embedder())
        self._cache[model] = (sig, items, idx)
        return items, idx


class MemoryEditor(kme.Editor):
    """Base of memory editors whose edits are items (dicts) in ``handle.memory``, searched by
    their ``key_field`` over every applied handle of the editor (subclass; not registered
    itself)."""

    capabilities = kme.Capabilities(kind="memory", batch=True, sequential=True)
    key_field: ClassVar[str] = ""  # the item field matched against queries

    _memories: ClassVar[dict[str, SharedMemory]] = {}  # one per editor name

    def answering_handles(self, model: "EditedModel", handle: "EditHandle") -> list["EditHandle"]:
        """Every applied handle of this editor when ``handle`` is the first of them, which
        answers from the memory of all of them; none for any other handle."""
        handles = editor_handles(model, self.name)
        return handles if handles and handles[0] is handle else []

    def memory_index(self, model: "EditedModel", handles: Sequence["EditHandle"], embedder: str = "tfidf",
                     embedder_model: str | None = None) -> tuple[list[dict[str, Any]], Index]:
        """The items of ``handles`` and an index over their ``key_field`` (cached until the
        handles change), embedded by the embedder named ``embedder``."""
        if self.name not in self._memories:
            field = self.key_field
            self._memories[self.name] = SharedMemory(lambda item: item[field])
        return self._memories[self.name].index(model, handles,
                                               lambda: make_embedder(embedder, model, embedder_model))
