"""Patch neurons added to an FFN through a forward hook, one hook per edit handle."""

from __future__ import annotations

import torch

from kme_memlib.neurons import SideNeurons

__all__ = ["PatchNeurons"]


class PatchNeurons(SideNeurons):
    """``n`` extra FFN neurons: ``out += GELU(x @ keys.T + bias) @ (values * scale)``.

    ``x`` is the FFN's input (the normalised hidden state entering the MLP), so a patch neuron
    is an extra column of the first FFN matrix (key, bias) and an extra row of the second
    (value), in any architecture, without touching the original weights. The value is stored
    unscaled and multiplied by ``scale`` (the reference implementation's amplification of the
    value, which speeds its training).
    """

    def __init__(self, module: torch.nn.Module, keys: torch.Tensor, bias: torch.Tensor, values: torch.Tensor,
                 scale: float):
        self.keys, self.bias, self.values = keys, bias, values
        self.scale = scale
        super().__init__(module)

    def activations(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation of every patch neuron, ``[..., n]``."""
        return x.float() @ self.keys.T.float() + self.bias.float()

    def added(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.keys.shape[0] == 0:
            return None
        return torch.nn.functional.gelu(self.activations(x)) @ (self.values.float() * self.scale)
