"""The kernel's architecture layouts, registered through the public hook like a plugin's."""

from __future__ import annotations

from kme import hookimpl
from kme.models.layouts import BUILTIN_LAYOUTS


@hookimpl
def kme_register_model_layouts(register) -> None:  # type: ignore[no-untyped-def]
    for layout in BUILTIN_LAYOUTS:
        register(layout)
