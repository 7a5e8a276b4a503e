"""The editor contract on tiny random models of every supported family (see
:mod:`kme_editlib.testing` for why these params)."""

from kme.conformance import EditorConformance
from kme_editlib.testing import TINY_TARGET_PARAMS


class TestROMEConformance(EditorConformance):
    editor_name = "rome"
    params = TINY_TARGET_PARAMS
    expects_top1 = True
