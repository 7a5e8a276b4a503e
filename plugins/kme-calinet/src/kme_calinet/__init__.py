"""CALINET (Dong et al., Findings of EMNLP 2022, "Calibrating Factual Knowledge in Pretrained
Language Models"; survey section 5.2.3).

A small feed-forward network of calibration memory slots runs parallel to the FFN of chosen
blocks, its output added to theirs: FFN'(h) = FFN(h) + GELU(h K_c) V_c. Only the slots are
trained, on the facts to calibrate, many facts at once; the base weights stay frozen.
"""

from __future__ import annotations

from typing import Any

import kme

from kme_calinet.editor import CalinetEditor

__all__ = ["CalinetEditor"]


@kme.hookimpl
def kme_register_editors(register: Any) -> None:
    register(CalinetEditor)
