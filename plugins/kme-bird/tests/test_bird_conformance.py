"""The editor contract on tiny random models of every supported family (see
:mod:`kme_editlib.testing` for why these params); ``phrases`` covers the kit's requests,
which name no relation, and ``alpha`` is large enough for the term to matter there."""

from kme.conformance import EditorConformance
from kme_editlib.testing import TINY_TARGET_PARAMS


class TestBIRDConformance(EditorConformance):
    editor_name = "bird"
    params = {**TINY_TARGET_PARAMS, "v_num_grad_steps": 15, "alpha": 0.01,
              "phrases": ["relates to", "is related to"]}
    expects_top1 = True
