"""Neurons added beside a module through a forward hook, one hook per edit handle: the
extension editors' memory (CALINET's calibration slots, T-Patcher's patch neurons).

The module's output gains :meth:`SideNeurons.added` of its input; the base weights are never
touched. :meth:`SideNeurons.bind` ties the hook to an edit handle: undo removes it, toggling
the handle switches it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from kme import EditHandle

__all__ = ["SideNeurons"]


class SideNeurons:
    """``out += added(x)`` on one module (``x``: its first input), while ``enabled``."""

    def __init__(self, module: "torch.nn.Module"):
        self.module = module
        self.enabled = True
        self.hook: Any = module.register_forward_hook(self._forward)

    def added(self, x: "torch.Tensor") -> "torch.Tensor | None":
        """What the neurons add to the module's output for input ``x`` (``None``: nothing)."""
        raise NotImplementedError

    def _forward(self, module: "torch.nn.Module", inputs: tuple, output: Any) -> Any:
        if not self.enabled:
            return None
        add = self.added(inputs[0])
        if add is None:
            return None
        out = output[0] if isinstance(output, tuple) else output
        new = out + add.to(out.dtype)
        return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

    def remove(self) -> None:
        if self.hook is not None:
            self.hook.remove()
            self.hook = None

    def bind(self, handle: "EditHandle") -> None:
        """Undoing ``handle`` removes the neurons; toggling it switches them."""
        handle.on_undo(self.remove)

        def toggle(enabled: bool) -> None:
            self.enabled = enabled

        handle.on_toggle(toggle)
