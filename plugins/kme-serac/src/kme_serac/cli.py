"""``kme serac train``: an alias of ``kme train serac`` that keeps SERAC's own options."""

from __future__ import annotations

from typing import Any

import click

__all__ = ["serac"]


@click.group()
def serac() -> None:
    """SERAC: train the scope classifier and counterfactual model an editor checkpoint holds."""


@serac.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", "model_name", required=True, help="Base model (alias, local path or hub id).")
@click.option("--dataset", "dataset_name", required=True, help="Registered dataset whose train split is used.")
@click.option("--dataset-params", default="{}", help="JSON object of the dataset's params.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Checkpoint folder (default: trained/serac-<model>).")
@click.option("--classifier-steps", type=int, default=None, help="Scope classifier steps (param classifier_steps).")
@click.option("--counterfactual-steps", type=int, default=None,
              help="Counterfactual model steps (param counterfactual_steps).")
@click.option("--params", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Further editor params (YAML values), e.g. batch_size=16.")
@click.option("--limit", type=int, default=None, help="Use at most this many training requests.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted training in --out.")
@click.option("--overwrite", is_flag=True, help="Replace a checkpoint already in --out.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("-q", "--quiet", is_flag=True, help="Print results and errors only.")
@click.option("-v", "--verbose", is_flag=True, help="Print info-level events too.")
@click.pass_context
def train(ctx: click.Context, classifier_steps: int | None, counterfactual_steps: int | None,
          params: tuple[str, ...], **options: Any) -> None:
    """Train on DATASET's train split, starting from MODEL's weights; write --out.

    The same as `kme train serac` (see `kme train --help`)."""
    extra = [f"classifier_steps={classifier_steps}"] if classifier_steps is not None else []
    extra += [f"counterfactual_steps={counterfactual_steps}"] if counterfactual_steps is not None else []
    root = ctx.find_root()
    command = root.command.get_command(root, "train") if isinstance(root.command, click.Group) else None
    if command is None:  # pragma: no cover - the kernel always has it
        raise click.UsageError("this kme has no `kme train` command; update kme-core")
    ctx.invoke(command, editor_name="serac", params=(*extra, *params), **options)
