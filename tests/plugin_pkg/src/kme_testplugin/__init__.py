"""Entry-point plugin used by the kernel tests: registers an editor and a metric."""

from typing import ClassVar

import kme


class EntryEditor(kme.Editor):
    name = "entry_editor"
    description = "does nothing; proves entry-point discovery"

    def apply(self, model, requests, location=None):
        return model.new_handle(self, requests)


class EntryMetric(kme.Metric):
    name = "entry_metric"
    description = "constant 1"
    scoring: ClassVar[str] = "constant"

    def compute(self, model, requests, context):
        return [1.0] * len(requests)


@kme.hookimpl
def kme_register_editors(register):
    register(EntryEditor)


@kme.hookimpl
def kme_register_metrics(register):
    register(EntryMetric)
