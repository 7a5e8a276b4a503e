"""The kernel's run protocols, registered through the hook like any plugin's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kme import hookimpl
from kme.pipeline.protocols import BatchProtocol, SequentialProtocol

if TYPE_CHECKING:  # pragma: no cover
    from kme.registry import Register


@hookimpl
def kme_register_protocols(register: "Register") -> None:
    register(BatchProtocol)
    register(SequentialProtocol)
