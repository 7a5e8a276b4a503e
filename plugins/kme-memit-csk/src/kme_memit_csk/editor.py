"""The MEMIT-CSK editor.

Commonsense statements ("People in Osterby drink from the river") are not recalled through
the subject alone: the paper's causal traces show strong MLP effects at the verb and the
object as well, and its edits are best at whichever span tracing favours. MEMIT-CSK is
therefore MEMIT with a choice of edit location: the keys ``k_i`` and the target vectors
``z_i`` are read at the last token of the subject, verb or object span (``edit_token``).
The update itself is MEMIT's (MEMIT Alg. 1, survey Eq. 27).

Requests carry their verb and object spans in ``EditRequest.meta["verb"]`` and
``meta["object"]`` (``factworld-commonsense``, the ``pep3k``/``20q`` readers fill them).
Each request is re-anchored on the chosen span (:func:`kme_editlib.spans.anchor_request`),
so ``fact_token`` (``subject_last``, ``subject_first``, ``last``) counts within that span,
as the released code's ``{edit_token}_{last|first}`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from kme_editlib.editors import MultiLayerEditor
from kme_editlib.params import MultiLayerParams

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location

    from kme_editlib.targets import TargetResult

__all__ = ["MEMITCSKEditor", "MEMITCSKParams"]


class MEMITCSKParams(MultiLayerParams):
    edit_token: Literal["subject", "verb", "object"] = Field(
        "object", description="span whose last token is edited (the released script's best setting: object); "
        "verb and object come from each request's meta['verb'] / meta['object']")


class MEMITCSKEditor(MultiLayerEditor):
    name = "memit-csk"
    description = ("MEMIT for commonsense statements, edited at the subject, verb or object token "
                   "(Gupta et al., 2023)")
    Params = MEMITCSKParams

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        from kme_editlib.spans import anchor_request

        span = self.params.edit_token  # type: ignore[attr-defined]
        anchored = [anchor_request(r, span) for r in requests]  # every span checked before any change
        handle = super().apply(model, anchored, location)
        handle.requests = list(requests)  # the edit record names the requests as given
        handle.meta["edit_token"] = span
        handle.meta["edit_spans"] = [a.subject for a in anchored]
        return handle

    def record(self, model: "EditedModel", res: "TargetResult", layers: list[int], covs: dict) -> dict[str, Any]:
        return {**super().record(model, res, layers, covs), "z_steps_mean": sum(res.steps) / len(res.steps)}
