"""``kme factworld ...``: reproduce, check and inspect the fact world and its model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["factworld", "train_checkpoint", "check_model"]


@click.group()
def factworld() -> None:
    """The fact world: kme's offline default model and dataset."""


def train_checkpoint(out: str | Path, seed: int = 0, steps: int | None = None, threads: int = 2,
                     log: Any = None) -> dict[str, Any]:
    """Generate the world from ``seed``, train tokenizer and model, save them to ``out``.

    Returns the training record (also saved as ``training.json``); ``world.json`` is saved
    beside the weights so the checkpoint carries the world it knows.
    """
    from kme_factworld.tokenizer import object_token_report, train_tokenizer
    from kme_factworld.training import TrainConfig, save_checkpoint, tokenizer_texts, train
    from kme_factworld.world import generate_world

    log = log or (lambda s: click.echo(s, err=True))
    world = generate_world(seed)
    tokenizer = train_tokenizer(world, tokenizer_texts(world, seed))
    report = object_token_report(world, tokenizer)
    if report["first_token_collisions"]:
        raise click.ClickException(f"objects share first tokens: {report['first_token_collisions']}")
    cfg = TrainConfig(seed=seed, threads=threads)
    if steps is not None:
        cfg.steps = steps
    model, record = train(world, tokenizer, cfg, log=log)
    record["tokenizer"] = {"vocab_size": len(tokenizer), **report}
    out = save_checkpoint(model, tokenizer, record, out)
    (out / "world.json").write_text(world.dumps(), encoding="utf-8")
    return record


def check_model(model_name: str = "factworld", *, sample: int | None = None, world_path: str | None = None,
                context: bool = True, seed: int = 0) -> dict[str, Any]:
    """Measure a fact-world model: recall on trained / held-out / novel phrasings, size,
    parameter count and (optionally) context sensitivity."""
    import kme
    from kme import resolve_model_path

    from kme_factworld.quality import checkpoint_mb, measure
    from kme_factworld.world import load_world

    pm = kme.build_plugin_manager()
    model = kme.load_model(model_name, pm)
    path = Path(resolve_model_path(model_name, pm))
    if world_path is None and (path / "world.json").exists():
        world_path = str(path / "world.json")
    world = load_world(world_path)
    result = measure(model, world, sample=sample, seed=seed, context=context)
    details = result.pop("details")
    result["checkpoint_mb"] = checkpoint_mb(path) if path.exists() else None
    result["details"] = details
    training = path / "training.json"
    if training.exists():
        rec = json.loads(training.read_text(encoding="utf-8"))
        result["train_seconds"] = rec.get("train_seconds")
    return result


@factworld.command("train")
@click.option("--out", default="factworld-checkpoint", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the checkpoint (created; existing files are overwritten).")
@click.option("--seed", default=0, show_default=True, help="Seed of the world and of training (0 = shipped).")
@click.option("--steps", default=None, type=int, help="Optimiser steps (default: as shipped).")
@click.option("--threads", default=2, show_default=True, help="torch CPU threads.")
def train_cmd(out: str, seed: int, steps: int | None, threads: int) -> None:
    """Reproduce the fact-world checkpoint from a seed (a few minutes on 2 CPU cores)."""
    record = train_checkpoint(out, seed, steps, threads)
    click.echo(json.dumps({"out": out, "train_seconds": record["train_seconds"], "steps": record["config"]["steps"]}))


@factworld.command("check")
@click.option("--model", "model_name", default="factworld", show_default=True, help="Alias or local checkpoint directory.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--sample", default=None, type=int, help="Score a random sample of this many probes per group.")
@click.option("--world", "world_path", default=None, type=click.Path(dir_okay=False, exists=True),
              help="World file (default: the checkpoint's world.json, else the shipped world).")
@click.option("--no-context", is_flag=True, help="Skip the context-sensitivity probes.")
def check_cmd(model_name: str, as_json: bool, sample: int | None, world_path: str | None, no_context: bool) -> None:
    """Measure the model: recall (trained, held-out, novel phrasings), size, parameters."""
    result = check_model(model_name, sample=sample, world_path=world_path, context=not no_context)
    if as_json:
        click.echo(json.dumps(result))
        return
    for key in ("recall_train", "recall_heldout_paraphrase", "recall_novel_template", "checkpoint_mb", "parameters"):
        click.echo(f"{key:28s} {result[key]}")
    for key in ("context_sensitivity", "context_sensitivity_16_demos"):
        if key in result:
            click.echo(f"{key:28s} " + ", ".join(f"{k}={v}" for k, v in result[key].items()))


@factworld.command("world")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default="-", show_default=True, help="File to write (- for stdout).")
@click.option("--verify", is_flag=True, help="Check that the shipped world file equals the generated one.")
def world_cmd(seed: int, out: str, verify: bool) -> None:
    """Generate the world JSON from a seed (or verify the shipped one)."""
    from kme_factworld.world import WORLD_PATH, generate_world

    text = generate_world(seed).dumps()
    if verify:
        same = WORLD_PATH.read_text(encoding="utf-8") == text
        click.echo(f"{WORLD_PATH}: {'matches' if same else 'DIFFERS from'} the world generated from seed {seed}")
        raise click.exceptions.Exit(0 if same else 1)
    if out == "-":
        click.echo(text, nl=False)
    else:
        Path(out).write_text(text, encoding="utf-8")


@factworld.command("corpus")
@click.option("--out", default="-", show_default=True, help="File to write, one document per line (- for stdout).")
@click.option("--seed", default=0, show_default=True)
@click.option("--passes", default=1, show_default=True, help="Passes over the world (varied phrasings/contexts).")
def corpus_cmd(out: str, seed: int, passes: int) -> None:
    """Write the world's text (for activation statistics such as MLP-key covariance)."""
    from kme_factworld import corpus

    lines = corpus(seed=seed, passes=passes)
    text = "\n".join(line.replace("\n", " ") for line in lines) + "\n"
    if out == "-":
        click.echo(text, nl=False)
    else:
        Path(out).write_text(text, encoding="utf-8")
