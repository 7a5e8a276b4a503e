"""Registries that plugins fill through the ``kme_register_*`` hooks.

A registry checks the base class, refuses duplicate names, remembers which plugin registered
each entry, and answers an unknown name with "did you mean ...?".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from kme.errors import KmeError, UnknownComponentError, did_you_mean

T = TypeVar("T")

__all__ = ["Registry", "Register"]


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
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}; {did_you_mean(name, self._items)}",
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
