"""kme-{{cookiecutter.plugin_name}}: {{cookiecutter.description}}."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

import kme

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditHandle, EditRequest, Location


class EditorParams(kme.Params):
    layer: int = Field(0, description="block whose MLP output projection is changed")
    strength: float = Field(1.0, gt=0, description="scale of the change")


class Editor(kme.Editor):
    name = "{{cookiecutter.editor_name}}"
    description = "{{cookiecutter.description}}"
    Params = EditorParams
    capabilities = kme.Capabilities(kind="parametric", batch=True, sequential=True)

    def apply(self, model: "EditedModel", requests: list["EditRequest"],
              location: "Location | None" = None) -> "EditHandle":
        """Replace this with your method. The starting point writes, for each request, a
        rank-one change that maps the MLP key of the subject's last token to the direction of
        the new object's output embedding -- enough to pass the conformance kit."""
        import torch

        handle = model.new_handle(self, requests)
        layer = location.layers[0] if location is not None and location.layers else self.params.layer
        name = model.weight_name(layer, "mlp_out")
        w = model.layout.out_weight_as_linear(model.parameter(name).detach())  # [hidden, mlp]
        keys: list = []
        hook = model.layout.module(model.model, layer, "mlp_out").register_forward_hook(
            lambda mod, args, out: keys.append(args[0][0, -1].detach()))
        head = model.layout.top(model.model, "lm_head").weight.detach()  # [vocab, hidden]
        try:
            for r in requests:
                keys.clear()
                ids = model.tokenizer(r.text, return_tensors="pt")["input_ids"].to(model.device)
                with torch.no_grad():
                    model.model(ids)
                k = keys[0].float()
                target = head[model.target_ids(r.text, r.target_new)[0]].float()
                update = self.params.strength * 10.0 * torch.outer(target / target.norm(), k / (k @ k))
                delta = update.T if model.layout.conv1d else update
                handle.add_delta(name, delta.to(w.dtype))
        finally:
            hook.remove()
        return handle


@kme.hookimpl
def kme_register_editors(register) -> None:  # type: ignore[no-untyped-def]
    register(Editor)
