"""The editor contract on tiny random models (see :mod:`kme_editlib.testing` for the params)."""

from kme.conformance import EditorConformance
from kme_editlib.testing import TINY_TARGET_PARAMS


class TestPMETConformance(EditorConformance):
    editor_name = "pmet"
    params = {**TINY_TARGET_PARAMS, "layers": [0, 1]}
    expects_top1 = True
