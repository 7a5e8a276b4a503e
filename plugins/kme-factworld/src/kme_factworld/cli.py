"""``kme factworld ...``: reproduce, check and inspect the fact world and its model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["factworld", "train_config", "train_checkpoint", "check_model"]


@click.group()
def factworld() -> None:
    """The fact world: kme's offline default model and dataset."""


def train_config(world: str = "default", seed: int = 0, steps: int | None = None, threads: int = 2,
                 device: str = "cpu", overrides: dict[str, Any] | None = None) -> Any:
    """The :class:`~kme_factworld.training.TrainConfig` of ``world``'s model with the given
    changes (``overrides``: field -> value, checked against the config's fields)."""
    import dataclasses

    from kme import ConfigError, did_you_mean

    from kme_factworld.training import TRAIN_CONFIGS, TrainConfig, check_autocast

    if world not in TRAIN_CONFIGS:
        raise ConfigError(f"unknown world {world!r}; {did_you_mean(world, list(TRAIN_CONFIGS))}",
                          where="kme factworld train --world", hint=f"worlds: {', '.join(TRAIN_CONFIGS)}")
    cfg = dataclasses.replace(TRAIN_CONFIGS[world], seed=seed, threads=threads, device=device)
    if steps is not None:
        cfg.steps = steps
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for key, value in (overrides or {}).items():
        if key not in fields or key in ("world", "extra"):
            known = [k for k in fields if k not in ("world", "extra")]
            raise ConfigError(f"unknown training setting {key!r}; {did_you_mean(key, known)}",
                              where="kme factworld train --set", hint=f"settings: {', '.join(known)}")
        current = getattr(cfg, key)
        try:
            if value is None or value == "none":
                value = None if key == "n_inner" else value
            elif isinstance(current, bool):
                word = str(value).lower()
                if word not in ("1", "true", "yes", "0", "false", "no"):
                    raise ValueError(value)
                value = word in ("1", "true", "yes")
            elif isinstance(current, int) or key == "n_inner":
                value = int(value)
            elif isinstance(current, float):
                value = float(value)
        except ValueError:
            raise ConfigError(f"training setting {key}={value!r} is not a {type(current).__name__}",
                              where="kme factworld train --set") from None
        if key == "profiles" and value < 0:
            raise ConfigError(f"training setting profiles={value} is negative (profile lines per subject per pass)",
                              where="kme factworld train --set", hint="use 0 (none) or more")
        setattr(cfg, key, value)
    check_autocast(cfg.autocast)
    return cfg


def _recall_sampler(world: Any, tokenizer: Any, n: int, seed: int) -> Any:
    """Recall on a fixed sample of trained and held-out probes, for the training history."""
    import random

    from kme_factworld.quality import recall, recall_probes, wrap

    rng = random.Random(seed + 3)
    probes = {k: rng.sample(recall_probes(world, k), min(n, len(recall_probes(world, k))))
              for k in ("train", "heldout")}

    def fn(model: Any) -> dict[str, float]:
        m = wrap(model, tokenizer)
        return {f"recall_{k}": round(recall(m, p)["value"], 4) for k, p in probes.items()}

    return fn


def train_checkpoint(out: str | Path, seed: int = 0, steps: int | None = None, threads: int = 2,
                     log: Any = None, *, world: str = "default", resume: bool = False, device: str = "cpu",
                     overrides: dict[str, Any] | None = None, stop_after: int | None = None,
                     eval_every: int = 0, eval_sample: int = 300) -> dict[str, Any]:
    """Generate the world from ``seed``, train tokenizer and model, save them to ``out``.

    Returns the training record (also saved as ``training.json``); ``world.json`` is saved
    beside the weights so the checkpoint carries the world it knows. ``resume``: continue
    from the training state a stopped run left in ``out``. ``eval_every``: every that many
    steps, recall on ``eval_sample`` trained and held-out probes goes into the history.
    """
    from kme_factworld.tokenizer import object_token_report, train_tokenizer
    from kme_factworld.training import RESUME_FILE, save_checkpoint, tokenizer_texts, train
    from kme_factworld.world import generate_world

    log = log or (lambda s: click.echo(s, err=True))
    cfg = train_config(world, seed, steps, threads, device, overrides)
    if resume:
        from kme_factworld.training import _load_state

        _load_state(Path(out) / RESUME_FILE, cfg)  # fail before the tokenizer is trained
    the_world = generate_world(seed, cfg.world)
    tokenizer = train_tokenizer(the_world, tokenizer_texts(the_world, seed), vocab_size=cfg.vocab_size)
    report = object_token_report(the_world, tokenizer)
    if report["first_token_collisions"]:
        raise click.ClickException(f"objects share first tokens: {report['first_token_collisions']}")
    eval_fn = _recall_sampler(the_world, tokenizer, eval_sample, seed) if eval_every else None
    model, record = train(the_world, tokenizer, cfg, log=log, out=out, resume=resume, stop_after=stop_after,
                          eval_fn=eval_fn, eval_every=eval_every)
    record["tokenizer"] = {"vocab_size": len(tokenizer), **report}
    if record["steps_done"] < cfg.steps:
        return record  # interrupted on purpose: the training state is in ``out``
    out = save_checkpoint(model, tokenizer, record, out)
    (out / "world.json").write_text(the_world.dumps(), encoding="utf-8")
    (out / RESUME_FILE).unlink(missing_ok=True)  # finished: the checkpoint replaces the state
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
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Directory for the checkpoint (created; existing files are overwritten). "
                   "Default: factworld-checkpoint, or factworld-<world>-checkpoint.")
@click.option("--world", default="default", show_default=True,
              help="Which world and model: default (the shipped 4-layer model) or deep (kme-factworld-deep's).")
@click.option("--seed", default=0, show_default=True, help="Seed of the world and of training (0 = shipped).")
@click.option("--steps", default=None, type=int, help="Optimiser steps (default: as shipped).")
@click.option("--threads", default=2, show_default=True, help="torch CPU threads.")
@click.option("--device", default="cpu", show_default=True, help="torch device to train on (cpu, cuda, cuda:1, ...).")
@click.option("--resume", is_flag=True, help="Continue from the training state a stopped run left in --out.")
@click.option("--checkpoint-every", type=int, default=None,
              help="Steps between resumable training states (default: the world's; 0 = none).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Change a training setting (n_layer=8, n_embd=192, n_inner=1536, lr=0.002, ...); repeatable.")
@click.option("--stop-after", type=int, default=None, help="Stop after this many steps, keeping the state to resume.")
@click.option("--eval-every", type=int, default=0, show_default=True,
              help="Log recall on 300 trained and 300 held-out probes every this many steps (0: never).")
def train_cmd(out: str | None, world: str, seed: int, steps: int | None, threads: int, device: str, resume: bool,
              checkpoint_every: int | None, sets: tuple[str, ...], stop_after: int | None, eval_every: int) -> None:
    """Reproduce a fact-world checkpoint from a seed (default world: ~11 min on 2 CPU cores)."""
    from kme import ConfigError

    overrides: dict[str, Any] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is not KEY=VALUE", where="kme factworld train --set")
        overrides[key.strip()] = value.strip()
    if checkpoint_every is not None:
        overrides["checkpoint_every"] = checkpoint_every
    out = out or ("factworld-checkpoint" if world == "default" else f"factworld-{world}-checkpoint")
    record = train_checkpoint(out, seed, steps, threads, world=world, resume=resume, device=device,
                              overrides=overrides, stop_after=stop_after, eval_every=eval_every)
    click.echo(json.dumps({"out": out, "train_seconds": record["train_seconds"], "steps": record["config"]["steps"],
                           "steps_done": record["steps_done"], "resumes": record["resumes"],
                           "finished": record["steps_done"] >= record["config"]["steps"]}))


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
