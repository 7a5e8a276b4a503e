"""T-Patcher (Huang et al., ICLR 2023, "Transformer-Patcher: One Mistake Worth One Neuron";
survey section 5.2.3, Eq. 16).

Each edit appends one neuron -- key k_p, bias b_p, value v_p -- to the feed-forward layer of
the last block: FFN(h) = FFN_orig(h) + GELU(h . k_p + b_p) v_p. The patch is trained with the
edit loss, an activation loss (the patch must fire on the edit) and a memory loss (it must
stay silent on unrelated inputs), with every original weight frozen.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_t_patcher.editor import TPatcherEditor

__all__ = ["TPatcherEditor"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(TPatcherEditor)
