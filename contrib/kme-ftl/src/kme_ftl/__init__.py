"""FT-L: fine-tune chosen MLP output projections on the new facts, keeping every weight
within an L-infinity ball of its original value (Zhu et al., 2020, "Modifying Memories in
Transformer Models"; the constrained fine-tuning baseline of the survey, section 5.3).

Written only against kme's public API, as any third-party plugin would be: the worked example
of ``contrib/kme-plugin-template``, registered as ``ft-l-demo`` (kme's own FT-L is ``ft-l``,
from ``plugins/kme-ft-l``).
"""

from __future__ import annotations

import kme

from kme_ftl.editor import FTLEditor

__all__ = ["FTLEditor"]


@kme.hookimpl
def kme_register_editors(register) -> None:  # type: ignore[no-untyped-def]
    register(FTLEditor)
