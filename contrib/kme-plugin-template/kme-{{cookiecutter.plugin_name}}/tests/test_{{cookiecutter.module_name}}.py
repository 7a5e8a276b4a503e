"""The whole editor contract, from kme's conformance kit."""

from kme.conformance import EditorConformance


class TestConformance(EditorConformance):
    editor_name = "{{cookiecutter.editor_name}}"
    params = {"layer": 1}
