"""Patch neurons added to an FFN through a forward hook, one hook per edit handle."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["PatchNeurons"]


class PatchNeurons:
    """``n`` extra FFN neurons: ``out += GELU(x @ keys.T + bias) @ (values * scale)``.

    ``x`` is the FFN's input (the normalised hidden state entering the MLP), so a patch neuron
    is an extra column of the first FFN matrix (key, bias) and an extra row of the second
    (value), in any architecture, without touching the original weights. The value is stored
    unscaled and multiplied by ``scale`` (the reference implementation's amplification of the
    value, which speeds its training).
    """

    def __init__(self, module: torch.nn.Module, keys: torch.Tensor, bias: torch.Tensor, values: torch.Tensor,
                 scale: float):
        self.module = module
        self.keys, self.bias, self.values = keys, bias, values
        self.scale = scale
        self.enabled = True
        self.hook: Any = module.register_forward_hook(self._forward)

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation of every patch neuron, ``[..., n]``."""
        return x.float() @ self.keys.T.float() + self.bias.float()

    def _forward(self, module: torch.nn.Module, inputs: tuple, output: Any) -> Any:
        if not self.enabled or self.keys.shape[0] == 0:
            return None
        x = inputs[0]
        out = output[0] if isinstance(output, tuple) else output
        act = torch.nn.functional.gelu(self.activations(x))
        add = act @ (self.values.float() * self.scale)
        new = out + add.to(out.dtype)
        return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

    def remove(self) -> None:
        if self.hook is not None:
            self.hook.remove()
            self.hook = None
