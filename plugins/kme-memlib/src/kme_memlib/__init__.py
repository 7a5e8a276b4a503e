"""kme-memlib: the machinery memory editors share (IKE, MemPrompt, Language Patch, MeLLo,
SERAC, and the extension editors CALINET and T-Patcher).

- :mod:`kme_memlib.retrieval` -- embedders (TF-IDF, the model's own hidden states, a
  sentence-embedding model) and cosine top-k search;
- :mod:`kme_memlib.tfidf` -- TF-IDF weights and cosine, pure Python (also kme-metrics'
  reference score);
- :mod:`kme_memlib.memory` -- one searchable index over every applied handle of an editor,
  and :class:`~kme_memlib.memory.MemoryEditor`, the base of editors answering from it;
- :mod:`kme_memlib.textmemory` -- editors whose items are readable texts, and the
  ``kme <editor> list|add|remove`` command group that edits them in a saved patch;
- :mod:`kme_memlib.neurons` -- neurons added beside a module through a forward hook, bound to
  an edit handle;
- :mod:`kme_memlib.facts` -- an edit's new fact as one sentence.

A library, not a plugin: it has no ``kme`` entry point and registers nothing.
"""

from __future__ import annotations

__all__: list[str] = []
