"""The editor contract on tiny random models (see :mod:`kme_editlib.testing` for the params).

Random tiny models' keys fill every direction, so the null space is taken relative to the
largest eigenvalue here."""

from kme.conformance import EditorConformance
from kme_editlib.testing import TINY_TARGET_PARAMS

TINY_ALPHAEDIT = {**TINY_TARGET_PARAMS, "layers": [0, 1], "nullspace_threshold": 0.05, "nullspace_relative": True,
                  "L2": 0.01}


class TestAlphaEditConformance(EditorConformance):
    editor_name = "alphaedit"
    params = TINY_ALPHAEDIT
    expects_top1 = True
