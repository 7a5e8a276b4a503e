"""``kme serac train``: train SERAC's scope classifier and counterfactual model."""

from __future__ import annotations

import json

import click

__all__ = ["serac"]


@click.group()
def serac() -> None:
    """SERAC: train the scope classifier and counterfactual model an editor checkpoint holds."""


@serac.command("train")
@click.option("--model", "model_name", required=True, help="Base model (alias, local path or hub id).")
@click.option("--dataset", "dataset_name", required=True, help="Registered dataset whose train split is used.")
@click.option("--dataset-params", default="{}", help="JSON object of the dataset's params.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Checkpoint folder.")
@click.option("--classifier-steps", type=int, default=None, help="Scope classifier steps.")
@click.option("--counterfactual-steps", type=int, default=None, help="Counterfactual model steps.")
@click.option("--limit", type=int, default=None, help="Use at most this many training requests.")
@click.option("--seed", type=int, default=0, show_default=True)
def train(model_name: str, dataset_name: str, dataset_params: str, out_dir: str, classifier_steps: int | None,
          counterfactual_steps: int | None, limit: int | None, seed: int) -> None:
    """Train on DATASET's train split, starting from MODEL's weights; write --out."""
    import kme
    from kme import ConfigError

    from kme_serac.training import TrainConfig, train_serac

    try:
        dparams = json.loads(dataset_params)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--dataset-params is not valid JSON ({e})", hint='e.g. --dataset-params \'{"seed": 1}\'') \
            from None
    pm = kme.build_plugin_manager()
    model = kme.load_model(model_name, pm)
    ds = pm.datasets.get(dataset_name, where="--dataset")(dparams)
    reqs = list(ds.train_requests())
    if limit:
        reqs = reqs[:limit]
    cfg = TrainConfig(seed=seed)
    if classifier_steps is not None:
        cfg.classifier_steps = classifier_steps
    if counterfactual_steps is not None:
        cfg.counterfactual_steps = counterfactual_steps
    record = train_serac(model, reqs, out_dir, cfg, log=lambda s: click.echo(s, err=True))
    click.echo(json.dumps({k: record[k] for k in ("training", "held_out") if k in record}, indent=2))
    click.echo(f"checkpoint: {out_dir}")
