"""The editor contract on tiny random models, with the paper's defaults."""

from kme.conformance import EditorConformance


class TestDEPNConformance(EditorConformance):
    editor_name = "depn"
    params = {}
