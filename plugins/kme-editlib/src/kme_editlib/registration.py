"""Hook implementations that register a plugin's components, for the plugins built on this library."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kme

__all__ = ["registration_hook"]


def registration_hook(*items: Any) -> Callable[[Any], None]:
    """A ``kme_register_*`` hook implementation (marked with ``@kme.hookimpl``) that registers
    ``items`` in order. Bind it to the hook's name in the plugin's entry-point module, where
    pluggy finds it::

        kme_register_editors = registration_hook(MEMITEditor)
        kme_register_presets = registration_hook(*PRESETS)
    """

    @kme.hookimpl
    def hook(register: Any) -> None:
        for item in items:
            register(item)

    return hook
