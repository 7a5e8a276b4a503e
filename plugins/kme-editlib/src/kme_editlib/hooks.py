"""Reading and writing activations through the architecture layout, for every supported family.

Points an editor reads or writes are named ``(layer, part)``:

- ``"block"``: the residual stream after block ``layer`` (MEMIT's ``h^L``);
- ``"mlp_out"``: the MLP's output projection; its *input* is the key ``k`` and its output
  the value ``v`` of the linear associative memory ROME rewrites;
- ``"attn_out"``: the attention output projection (PMET's attention hidden state);
- ``"mlp"``: the whole MLP module (causal tracing's MLP-only restoration).

Hooks are plain forward hooks registered on the modules the layout names, removed on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from kme import pad_sequences

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["HookSet", "module_at", "eval_mode", "frozen_params", "forward", "run_unpadded", "capture_keys_values",
           "output_tensor", "replace_output"]

Point = tuple[int, str]


def module_at(model: "EditedModel", layer: int, part: str) -> torch.nn.Module:
    """The module of ``part`` in block ``layer`` (range-checked)."""
    return model.layout.module(model.model, model.check_layer(layer), part)  # type: ignore[arg-type]


def output_tensor(out: Any) -> torch.Tensor:
    """The hidden-state tensor of a module's output (blocks may return tuples)."""
    return out[0] if isinstance(out, tuple) else out


def replace_output(out: Any, new: torch.Tensor) -> Any:
    return (new, *out[1:]) if isinstance(out, tuple) else new


class HookSet:
    """A set of forward hooks removed together (a context manager)."""

    def __init__(self) -> None:
        self._handles: list[Any] = []

    def on_output(self, module: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
        """``fn(hidden)`` sees the module's output tensor; a returned tensor replaces it."""

        def hook(_mod: torch.nn.Module, _inp: Any, out: Any) -> Any:
            new = fn(output_tensor(out))
            return None if new is None else replace_output(out, new)

        self._handles.append(module.register_forward_hook(hook))

    def on_input(self, module: torch.nn.Module, fn: Callable[[torch.Tensor], None]) -> None:
        """``fn(x)`` sees the module's first positional input (the MLP key for ``mlp_out``)."""

        def hook(_mod: torch.nn.Module, inp: Any) -> None:
            fn(inp[0])

        self._handles.append(module.register_forward_pre_hook(hook))

    def replace_input(self, module: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """``fn(x)`` returns the tensor the module receives instead of its first input."""

        def hook(_mod: torch.nn.Module, inp: Any) -> Any:
            return (fn(inp[0]), *inp[1:])

        self._handles.append(module.register_forward_pre_hook(hook))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> "HookSet":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


@contextlib.contextmanager
def eval_mode(model: "EditedModel") -> Iterator[None]:
    """Eval mode (no dropout) for the block; the model's train/eval mode restored on exit."""
    was_training = model.model.training
    model.model.eval()
    try:
        yield
    finally:
        model.model.train(was_training)


@contextlib.contextmanager
def frozen_params(model: "EditedModel") -> Iterator[None]:
    """No gradient for the model's own weights (only injected vectors are optimised), eval
    mode; both restored on exit."""
    flags = {n: p.requires_grad for n, p in model.model.named_parameters()}
    for p in model.model.parameters():
        p.requires_grad_(False)
    try:
        with eval_mode(model):
            yield
    finally:
        for n, p in model.model.named_parameters():
            p.requires_grad_(flags[n])


def forward(model: "EditedModel", ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits of a right-padded batch (no cache)."""
    return model.model(input_ids=ids, attention_mask=mask, use_cache=False).logits


def run_unpadded(model: "EditedModel", ids: torch.Tensor) -> Any:
    """The model's output on rows of equal length (no padding, no cache)."""
    return model.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)


@torch.no_grad()
def capture_keys_values(model: "EditedModel", seqs: list[list[int]], indices: list[int], layers: list[int],
                        *, batch_size: int = 64, values: bool = False) -> dict[int, tuple[torch.Tensor, torch.Tensor | None]]:
    """MLP keys (input of ``mlp_out``) and optionally values (its output) at one position per
    sequence, for each of ``layers``: ``{layer: (keys [n, d_ff], values [n, d_model] | None)}``.
    The batch is halved on out-of-memory (:mod:`kme_editlib.fit`)."""
    from kme_editlib.fit import Fit, original_widths

    keys: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    vals: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    pad_id = model.tokenizer.pad_token_id

    widths = original_widths([len(s) for s in seqs], batch_size)

    def at(x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        # index tensors on the captured tensor's device (a device-mapped model's layer)
        rows = torch.arange(stop - start, device=x.device)
        idx = torch.tensor(indices[start:stop], device=x.device)
        return x[rows, idx].float().cpu()

    def run(start: int, stop: int) -> None:
        ids, mask = pad_sequences(seqs[start:stop], pad_id, model.device, width=max(widths[start:stop]))
        k_here: dict[int, torch.Tensor] = {}
        v_here: dict[int, torch.Tensor] = {}
        with HookSet() as hs:
            for layer in layers:
                mod = module_at(model, layer, "mlp_out")
                hs.on_input(mod, lambda x, layer=layer: k_here.__setitem__(layer, at(x, start, stop)))
                if values:
                    hs.on_output(mod, lambda y, layer=layer: v_here.__setitem__(layer, at(y, start, stop)))
            forward(model, ids, mask)
        for layer in layers:  # committed once the whole batch has run
            keys[layer].append(k_here[layer])
            if values:
                vals[layer].append(v_here[layer])

    Fit(batch_size, "key capture").run(len(seqs), run)
    return {layer: (torch.cat(keys[layer]), torch.cat(vals[layer]) if values else None) for layer in layers}


def mlp_out_weight(model: "EditedModel", layer: int) -> tuple[str, torch.Tensor, torch.Tensor | None]:
    """``(parameter name, weight as [out, in] float, bias or None)`` of block ``layer``'s MLP
    output projection."""
    name = model.weight_name(layer, "mlp_out")
    w = model.parameter(name)
    mod = module_at(model, layer, "mlp_out")
    bias = getattr(mod, "bias", None)
    return name, model.layout.out_weight_as_linear(w.detach()).float(), None if bias is None else bias.detach().float()


def to_storage(model: "EditedModel", delta_linear: torch.Tensor) -> torch.Tensor:
    """A ``[out, in]`` update in the parameter's own storage layout (GPT-2's Conv1D is transposed)."""
    return delta_linear.T.contiguous() if model.layout.conv1d else delta_linear
