"""The editor contract on tiny random models, with the paper's defaults (λ₁ = 1, λ₂ = 8)."""

from kme.conformance import EditorConformance


class TestKNConformance(EditorConformance):
    editor_name = "kn"
    params = {}
    expects_top1 = True
