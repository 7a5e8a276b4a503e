"""``kme train NAME``: train a registered editor's trained parts on a dataset's train split.

One command for every editor that declares ``capabilities.needs_training`` (SERAC, MEND, KE,
...): it loads the model, takes the dataset's ``train_requests()`` only, and calls
``Editor.train(model, requests, out)``, which writes a checkpoint folder (``kme.save_trained``:
``manifest.json`` naming the base model's fingerprint, ``weights.safetensors``) and, while it
runs, ``train-state.pt`` to resume from. A pipeline then names the folder in the editor's
params (docs/global-opt.md#training-trained-editors).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import click

from kme.cli import _output, _output_options, _parse_params
from kme.errors import ConfigError, KmeError
from kme.plugins import KmePluginManager
from kme.trained import MANIFEST, TRAIN_STATE

__all__ = ["train_cmd", "trainable_editors", "default_out", "model_slug", "check_out"]

TRAINED_ROOT = "trained"


def trainable_editors(pm: KmePluginManager) -> list[tuple[str, str]]:
    """(name, description) of every installed editor that declares ``needs_training``."""
    return sorted((name, cls.description) for name, cls in pm.editors.items() if cls.capabilities.needs_training)


def model_slug(model: str) -> str:
    """A folder-name form of a model name: a local directory's own name, an alias as it is,
    a hub id with ``/`` as ``--`` (``meta-llama/Llama-3-8B`` -> ``meta-llama--Llama-3-8B``)."""
    p = Path(model).expanduser()
    name = p.resolve().name if p.exists() else model.replace("/", "--")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def default_out(editor: str, model: str) -> Path:
    """Where ``kme train`` writes without ``--out``: ``trained/EDITOR-MODEL`` under the
    current directory."""
    return Path(TRAINED_ROOT) / f"{editor}-{model_slug(model)}"


def check_out(out: Path, *, resume: bool, overwrite: bool) -> str:
    """Decide what to do with the checkpoint folder ``out`` before anything is loaded:
    ``"fresh"`` (train from the start) or ``"resume"`` (its ``train-state.pt`` is continued).
    A finished checkpoint is replaced only with ``overwrite``; an interrupted one is continued
    only with ``resume`` (or replaced with ``overwrite``); a non-empty folder that is no
    checkpoint is never touched."""
    if resume and overwrite:
        raise KmeError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{str(out)!r} exists and is not a folder", where="--out")
    finished = (out / MANIFEST).is_file()
    interrupted = (out / TRAIN_STATE).is_file()
    if interrupted:
        if resume:
            return "resume"
        if not overwrite:
            raise ConfigError(f"{str(out)!r} holds an interrupted training ({TRAIN_STATE})", where="--out",
                              hint="pass --resume to continue it, or --overwrite to start over")
    elif finished:
        if not overwrite:
            what = "; nothing to resume" if resume else ""
            raise ConfigError(f"{str(out)!r} already holds a trained checkpoint ({MANIFEST}){what}", where="--out",
                              hint="pass --overwrite to replace it, or choose another --out")
    elif out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"{str(out)!r} is not empty and holds no trained checkpoint ({MANIFEST} or "
                          f"{TRAIN_STATE}); kme train does not write into it", where="--out",
                          hint="choose another --out (or empty this folder)")
    if overwrite and (finished or interrupted):
        shutil.rmtree(out)
    if resume:
        click.echo(f"nothing to resume in {str(out)!r}: training from the start", err=True)
    return "fresh"


class _TrainCommand(click.Command):
    """``kme train --help`` ends with the installed trainable editors."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        pm = (ctx.find_object(dict) or {}).get("pm")
        if pm is None:
            return
        rows = trainable_editors(pm)
        with formatter.section("Trainable editors"):
            if rows:
                formatter.write_dl(rows)
            else:
                formatter.write_text("none installed (no editor declares capabilities.needs_training)")


@click.command("train", cls=_TrainCommand, epilog=(
    "Without --out the checkpoint goes to trained/EDITOR-MODEL under the current directory. A folder with a "
    "finished checkpoint (manifest.json) is refused unless --overwrite; one with an interrupted training "
    "(train-state.pt) unless --resume, which continues it."))
@click.argument("editor_name", metavar="EDITOR")
@click.option("--model", "model_name", required=True, help="Base model (alias, local directory or hub id).")
@click.option("--dataset", "dataset_name", required=True, help="Registered dataset; its train split is used.")
@click.option("--dataset-params", default="{}", show_default=True, help="JSON object of the dataset's params.")
@click.option("--params", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Editor param (YAML value), e.g. its training settings; repeat for more.")
@click.option("--preset", default="auto", show_default=True,
              help="auto (the preset for this model), none, or a preset name (`kme presets`).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Checkpoint folder (default: trained/EDITOR-MODEL).")
@click.option("--resume", is_flag=True, help="Continue the interrupted training in --out (its train-state.pt).")
@click.option("--overwrite", is_flag=True, help="Replace a checkpoint (finished or interrupted) in --out.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Train on at most this many train-split requests (the first ones).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds Python, NumPy and torch, and the editor's `seed` param when it has one and "
                   "--params does not set it.")
@click.option("--dtype", default="float32", show_default=True, help="Model dtype (float32, bfloat16, float16).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or mps.")
@_output_options
@click.pass_context
def train_cmd(ctx: click.Context, editor_name: str, model_name: str, dataset_name: str, dataset_params: str,
              params: tuple[str, ...], preset: str, out_dir: str | None, resume: bool, overwrite: bool,
              limit: int | None, seed: int, dtype: str, device: str, no_progress: bool, quiet: bool,
              verbose: bool) -> None:
    """Train EDITOR's trained parts on DATASET's train split, from MODEL; write a checkpoint.

    Prints the checkpoint folder and the pipeline line that uses it."""
    pm: KmePluginManager = ctx.find_object(dict)["pm"]
    cls = pm.editors.get(editor_name, where="EDITOR")
    if not cls.capabilities.needs_training:
        names = [n for n, _ in trainable_editors(pm)]
        raise ConfigError(f"editor {editor_name!r} has nothing to train (it does not declare "
                          "capabilities.needs_training): it edits without training", where="EDITOR",
                          hint=f"trainable editors: {', '.join(names)}" if names
                          else "no installed editor needs training")
    explicit = _parse_params(params)
    if "seed" in cls.Params.model_fields and "seed" not in explicit:
        explicit["seed"] = seed
    cls.parse_params(explicit, where="--params")
    requests = _train_requests(pm, dataset_name, dataset_params, limit)
    out = Path(out_dir) if out_dir else default_out(editor_name, model_name)
    mode = check_out(out, resume=resume, overwrite=overwrite)

    from kme.models.loading import ModelSpec, load_model
    from kme.pipeline.runner import _seed_everything
    from pydantic import ValidationError

    try:
        spec = ModelSpec(name=model_name, dtype=dtype, device=device)
    except ValidationError as e:
        from kme.errors import format_validation_error

        raise ConfigError(format_validation_error(e), where="--model/--dtype/--device") from None
    with _output(no_progress, quiet, verbose):
        _seed_everything(seed)
        model = load_model(spec, pm)
        editor = model.make_editor(editor_name, explicit, preset=preset, where="--params")
        try:
            editor.check_model(model)
        except KmeError as e:
            raise type(e)(e.message, hint=e.hint, where="EDITOR" + (f" {e.where}" if e.where else "")) from None
        if editor.resolution is not None and editor.resolution.preset and not quiet:
            click.echo(f"preset {editor.resolution.preset} ({editor.resolution.preset_plugin})", err=True)
        if not quiet:
            click.echo(f"{'resuming' if mode == 'resume' else 'training'} {editor_name} on {len(requests)} "
                       f"request(s) of {dataset_name}'s train split, model {model_name}, into {out}", err=True)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        updates = editor.train(model, requests, str(out)) or {}
        seconds = time.perf_counter() - t0
    _report(editor_name, out, updates, seconds, base=cls.capabilities.trains_base)


def _train_requests(pm: KmePluginManager, dataset_name: str, dataset_params: str, limit: int | None) -> list[Any]:
    """The dataset's train split (only), before any model is loaded."""
    try:
        dparams = json.loads(dataset_params)
    except json.JSONDecodeError as e:
        raise ConfigError(f"not valid JSON ({e})", where="--dataset-params",
                          hint='e.g. --dataset-params \'{"seed": 1}\'') from None
    if not isinstance(dparams, dict):
        raise ConfigError(f"must be a JSON object, got {type(dparams).__name__}", where="--dataset-params")
    ds_cls = pm.datasets.get(dataset_name, where="--dataset")
    ds = ds_cls(ds_cls.parse_params(dparams, where="--dataset-params"))
    requests = list(ds.train_requests())
    if not requests:
        raise ConfigError(f"dataset {dataset_name!r} has no train split to train on", where="--dataset",
                          hint="use a dataset with a train split (e.g. factworld); kme train never trains on the "
                               "requests a pipeline evaluates")
    return requests[:limit] if limit else requests


def _report(editor_name: str, out: Path, updates: dict[str, Any], seconds: float, base: bool = False) -> None:
    import yaml

    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        try:
            metrics = json.loads(manifest_path.read_text()).get("metrics") or {}
        except json.JSONDecodeError:
            metrics = {}
        if metrics:
            click.echo(json.dumps(metrics, indent=2, sort_keys=True, default=str))
    else:
        click.echo(f"warning: editor {editor_name!r} wrote no {MANIFEST} to {str(out)!r}; kme train cannot tell "
                   "a finished checkpoint there from an unfinished one", err=True)
    if base:  # capabilities.trains_base: the folder is a model, not an editor's checkpoint
        click.echo(f"trained in {seconds:.1f} s")
        click.echo(f"base model: {out}")
        click.echo("use it in a pipeline:")
        click.echo(f"  model: {out}")
        return
    shown = {k: str(v) if isinstance(v, Path) else v for k, v in (updates or {"checkpoint": str(out)}).items()}
    snippet = yaml.safe_dump({"name": editor_name, "params": shown}, default_flow_style=True, width=10_000).strip()
    click.echo(f"trained in {seconds:.1f} s")
    click.echo(f"checkpoint: {out}")
    click.echo("use it in a pipeline:")
    click.echo(f"  editors: [{snippet}]")
