"""Checks every trained editor makes on the checkpoint its params name, with one wording."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from kme import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["missing_checkpoint", "check_trained_layers", "check_loads"]


def missing_checkpoint(editor: str, what: str = "a trained checkpoint") -> ConfigError:
    """The error for params that name no checkpoint, saying how to get one."""
    return ConfigError(f"{editor} needs {what}", where=f"editor {editor!r} params.checkpoint",
                       hint=f"train one with `kme train {editor} --model MODEL --dataset DATASET --out DIR` and pass "
                            "checkpoint: DIR (`kme run` trains one on the dataset's train split when none is named)")


def check_trained_layers(model: "EditedModel", editor: str, asked: list[int] | None, trained: list[int],
                         why: str) -> None:
    """Refuse params.layers other than the layers the checkpoint was trained for (``why``
    says what would go wrong)."""
    if asked is not None and [model.check_layer(x) for x in asked] != list(trained):
        raise ConfigError(f"layers {asked} differ from the checkpoint's {list(trained)}: {why}",
                          where=f"editor {editor!r} params.layers",
                          hint="leave layers out, or train a checkpoint for these layers")


def check_loads(load: Callable[[], object]) -> None:
    """For ``Editor.check_model``: run ``load`` and re-raise its ConfigError with ``where``
    reduced to the param name (the runner prefixes ``editors[i].params.``)."""
    try:
        load()
    except ConfigError as e:
        field = (e.where or "").split("params.")[-1] or "checkpoint"
        raise ConfigError(e.message, where=field, hint=e.hint) from None
