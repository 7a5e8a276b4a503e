"""Registries that plugins fill through the ``kme_register_*`` hooks.

A registry checks the base class, refuses duplicate names, remembers which plugin registered
each entry, and answers an unknown name with "did you mean ...?" -- and, for a first-party
component whose package is not installed, with the ``pip install`` that provides it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from kme.errors import KmeError, UnknownComponentError, did_you_mean

T = TypeVar("T")

__all__ = ["Registry", "Register", "FIRST_PARTY", "provided_by"]

#: Which first-party distribution registers each component, by distribution and registry kind
#: (names separated by spaces). tests/test_packaging.py keeps it equal to what the plugins register.
_PROVIDERS: dict[str, dict[str, str]] = {
    "kme-alphaedit": {"editor": "alphaedit", "preset": "alphaedit/gpt-j-6b alphaedit/gpt2-xl alphaedit/llama3-8b"},
    "kme-bird": {"editor": "bird", "preset": "bird/factworld"},
    "kme-calinet": {"editor": "calinet"},
    "kme-causal-tracing": {"locator": "causal-tracing"},
    "kme-datasets": {"dataset": "20q bias-in-bios convsent counterfact crows-pairs ecbd fever hallucination knowedit "
                                "mcf mmedit mquake nq-situatedqa pararel pep3k scotus trex vitaminc wikigen zsre"},
    "kme-depn": {"editor": "depn", "preset": "depn/factworld"},
    "kme-editable-training": {"editor": "editable-training", "preset": "editable-training/factworld"},
    "kme-f-learning": {"editor": "f-learning", "preset": "f-learning/factworld"},
    "kme-factworld": {"dataset": "factworld factworld-commonsense factworld-contrastive factworld-private "
                                 "factworld-deep factworld-deep-commonsense factworld-deep-contrastive "
                                 "factworld-deep-private",
                      "model alias": "factworld", "corpus": "factworld factworld-deep factworld-deep-train-split",
                      "preset": "alphaedit/factworld grace/factworld ike/factworld memit/factworld pmet/factworld "
                                "rome/factworld"},
    "kme-factworld-deep": {"model alias": "factworld-deep",
                           "preset": "alphaedit/factworld-deep memit/factworld-deep rome/factworld-deep"},
    "kme-ft-l": {"editor": "ft-l", "preset": "ft-l/factworld"},
    "kme-ft-m": {"editor": "ft-m", "preset": "ft-m/factworld"},
    "kme-ftl": {"editor": "ft-l-demo"},
    "kme-grace": {"editor": "grace"},
    "kme-ike": {"editor": "ike"},
    "kme-kaft": {"editor": "kaft"},
    "kme-ke": {"editor": "ke", "preset": "ke/factworld"},
    "kme-kgeditor": {"editor": "kgeditor", "preset": "kgeditor/factworld"},
    "kme-kn": {"editor": "kn", "locator": "knowledge-neurons"},
    "kme-language-patch": {"editor": "language-patch"},
    "kme-mello": {"editor": "mello"},
    "kme-memit": {"editor": "memit", "preset": "memit/gpt-j-6b memit/gpt2-xl memit/llama3-8b"},
    "kme-memit-csk": {"editor": "memit-csk", "preset": "memit-csk/factworld memit-csk/gpt2-large memit-csk/gpt2-xl"},
    "kme-memprompt": {"editor": "memprompt"},
    "kme-mend": {"editor": "mend", "preset": "mend/factworld"},
    "kme-metrics": {"metric": "accuracy consistency contrastive_gap efficacy_magnitude efficacy_score fluency "
                              "generality locality multihop_accuracy neighborhood_magnitude neighborhood_score "
                              "paraphrase_magnitude paraphrase_score portability privacy_leak retainability "
                              "reversibility scalability scalability_relative token_accuracy"},
    "kme-pcgu": {"editor": "pcgu", "preset": "pcgu/factworld"},
    "kme-pmet": {"editor": "pmet", "preset": "pmet/gpt-j-6b pmet/gpt2-xl pmet/llama3-8b"},
    "kme-ppa": {"editor": "ppa"},
    "kme-recadam": {"editor": "recadam", "preset": "recadam/factworld"},
    "kme-rome": {"editor": "rome", "preset": "rome/gpt-j-6b rome/gpt2-xl rome/llama3-8b"},
    "kme-serac": {"editor": "serac"},
    "kme-slag": {"editor": "slag", "preset": "slag/factworld"},
    "kme-t-patcher": {"editor": "t-patcher"},
}

#: registry kind -> component name -> the first-party distribution that provides it.
FIRST_PARTY: dict[str, dict[str, str]] = {}
for _dist, _kinds in _PROVIDERS.items():
    for _kind, _names in _kinds.items():
        for _name in _names.split():
            FIRST_PARTY.setdefault(_kind, {})[_name] = _dist


def provided_by(kind: str, name: str) -> str | None:
    """A sentence naming the first-party package that provides ``name`` and how to install it, or None."""
    dist = FIRST_PARTY.get(kind, {}).get(name)
    if dist is None:
        return None
    from importlib_metadata import PackageNotFoundError, version

    try:
        version(dist)
    except PackageNotFoundError:
        return f"it is provided by {dist}: pip install {dist}"
    return f"it is provided by {dist}, which is installed but did not register it (`kme plugins` shows load failures)"


class Registry(Generic[T]):
    def __init__(self, kind: str, base: type, *, instances: bool = False,
                 key: Callable[[Any], str] = lambda x: x.name):
        self.kind = kind
        self.base = base
        self.instances = instances
        self._key = key
        self._items: dict[str, T] = {}
        self._owner: dict[str, str] = {}

    def add(self, item: T, owner: str = "?") -> None:
        ok = isinstance(item, self.base) if self.instances else (
            isinstance(item, type) and issubclass(item, self.base))
        if not ok:
            what = "an instance" if self.instances else "a subclass"
            raise KmeError(
                f"plugin {owner!r} registered {item!r} as a {self.kind}, but it is not {what} "
                f"of {self.base.__module__}.{self.base.__qualname__}"
            )
        name = self._key(item)
        if not name or not isinstance(name, str):
            raise KmeError(f"plugin {owner!r} registered a {self.kind} without a name: {item!r}")
        if name in self._items:
            raise KmeError(
                f"{self.kind} {name!r} is registered twice: by {self._owner[name]!r} and by {owner!r}",
                hint="rename one of them, or uninstall one of the plugins",
            )
        self._items[name] = item
        self._owner[name] = owner

    def get(self, name: str, where: str | None = None) -> T:
        try:
            return self._items[name]
        except KeyError:
            install = provided_by(self.kind, name)
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}; " + (f"{install}; " if install else "")
                + did_you_mean(name, self._items),
                where=where,
                hint=f"`kme plugins` lists the installed {self.kind}s",
            ) from None

    def owner(self, name: str) -> str:
        return self._owner[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._items.items())


class Register:
    """The callable handed to a ``kme_register_*`` hook: ``register(item)``."""

    def __init__(self, registry: Registry, owner: str):
        self._registry = registry
        self._owner = owner

    def __call__(self, item: Any) -> Any:
        self._registry.add(item, self._owner)
        return item
