"""The editor contract on tiny random models, edited at the verb span.

The kit's requests gain verb and object spans in ``meta``; on random weights the editors
write at the last token (see :mod:`kme_editlib.testing`), so the span is re-anchored but
the token edited is the prompt's last one.
"""

from kme.conformance import EditorConformance, default_requests
from kme_editlib.testing import TINY_TARGET_PARAMS

SPANS = {0: ("of", "capital"), 1: ("was born", "Alice Smith"), 2: ("speaks", "Bob Jones")}


def spanned_requests():
    return [r.model_copy(update={"meta": {"verb": SPANS[r.case_id][0], "object": SPANS[r.case_id][1]}})
            for r in default_requests()]


class TestMEMITCSKConformance(EditorConformance):
    editor_name = "memit-csk"
    params = {**TINY_TARGET_PARAMS, "layers": [0, 1], "edit_token": "verb"}
    expects_top1 = True

    def requests(self):
        return spanned_requests()
