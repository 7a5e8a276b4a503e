"""The ``kme`` command line. Plugins add commands through ``kme_register_commands``.

Bad input ends with exit code 2 and one message naming the file, field or plugin and the fix.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from typing import Any, Iterator

import click

from kme.compare import compare_cmd
from kme.errors import EditFailedError, KmeError
from kme.files import parse_yaml
from kme.html_report import report_cmd
from kme.plugins import KmePluginManager, build_plugin_manager, print_failures


def _pm(ctx: click.Context) -> KmePluginManager:
    return ctx.obj["pm"]


def _output_options(f: Any) -> Any:
    """``--no-progress``, ``-q`` and ``-v``: kme's own output and that of transformers and
    huggingface_hub (their "Loading weights" bars and warnings) follow them."""
    f = click.option("-v", "--verbose", is_flag=True, help="Print info-level events too.")(f)
    f = click.option("-q", "--quiet", is_flag=True,
                     help="Print results and errors only: no progress bars, no warnings "
                          "(kme's, transformers', huggingface_hub's).")(f)
    return click.option("--no-progress", is_flag=True,
                        help="Hide progress bars (kme's, transformers', huggingface_hub's).")(f)


@contextlib.contextmanager
def _output(no_progress: bool, quiet: bool, verbose: bool) -> Iterator[None]:
    from kme.logs import configure_logging
    from kme.logs import quiet as quiet_scope
    from kme.progress import library_output, progress

    if quiet and verbose:
        raise KmeError("-q/--quiet and -v/--verbose exclude each other")
    if verbose:
        configure_logging(None, verbose=True)
    with quiet_scope(quiet), progress(not (no_progress or quiet)), library_output():
        yield


_OVERRIDES_HELP = ("KEY=VALUE overrides of the pipeline's keys: dotted paths, list items by number, values "
                   "parsed as YAML (editors.0.params.v_lr=0.5 dataset.limit=20 model.dtype=bfloat16).")


@click.command(epilog=_OVERRIDES_HELP)
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder (default: the pipeline's output).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in the run folder.")
@click.option("--overwrite", is_flag=True, help="Replace a previous run in the run folder.")
@click.option("--report", "html_report", is_flag=True, help="Also write RUN/report.html (as `kme report RUN`).")
@_output_options
@click.pass_context
def run(ctx: click.Context, pipeline: str, overrides: tuple[str, ...], out_dir: str | None, resume: bool,
        overwrite: bool, html_report: bool, no_progress: bool, quiet: bool, verbose: bool) -> None:
    """Run PIPELINE (YAML), with optional KEY=VALUE overrides: edit, evaluate, write a run folder."""
    from kme.overrides import blame_overrides
    from kme.pipeline import load_pipeline, run_pipeline

    spec = load_pipeline(pipeline, list(overrides))
    if resume and overwrite:
        raise KmeError("--resume and --overwrite exclude each other")
    with _output(no_progress, quiet, verbose):
        try:
            summary = run_pipeline(spec, _pm(ctx), out_dir=out_dir, resume=resume, overwrite=overwrite,
                                   source=pipeline, progress=not (no_progress or quiet), verbose=verbose)
        except KmeError as e:
            blamed = blame_overrides(e, list(overrides), pipeline)
            if blamed is e:
                raise
            raise blamed from None
    click.echo(_metrics_table(summary))
    click.echo(f"run folder: {summary['config']['output']}")
    if html_report:
        from pathlib import Path

        from kme.html_report import write_html_report

        folder = Path(summary["config"]["output"])
        click.echo(f"report: {write_html_report([folder], folder / 'report.html')}")


@click.command(epilog=_OVERRIDES_HELP)
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.pass_context
def validate(ctx: click.Context, pipeline: str, overrides: tuple[str, ...]) -> None:
    """Validate PIPELINE (with optional KEY=VALUE overrides) against the installed plugins
    without loading any model. A sweep file is validated point by point."""
    from kme.models.loading import check_model_devices
    from kme.overrides import blame_overrides
    from kme.pipeline import load_pipeline, validate_components

    from kme.pipeline.spec import PipelineErrors

    if _is_sweep_file(pipeline):
        from kme.sweep import load_sweep

        if overrides:
            raise KmeError(f"{pipeline} is a sweep file: overrides apply to pipelines",
                           hint="put the values in the sweep's grid or points")
        sw = load_sweep(pipeline, _pm(ctx))  # every point validated, all problems listed
        click.echo(f"{pipeline}: valid sweep ({len(sw.points)} point(s))")
        return
    spec = load_pipeline(pipeline, list(overrides))
    errors: list[KmeError] = []
    try:
        validate_components(spec, _pm(ctx), pipeline)
    except PipelineErrors as e:
        errors.extend(e.errors)
    except KmeError as e:
        errors.append(e)
    try:
        check_model_devices(spec.model, where=pipeline)  # a device this machine lacks fails here, not mid-run
    except KmeError as e:
        errors.append(e)
    errors = [blame_overrides(e, list(overrides), pipeline) for e in errors]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise PipelineErrors(errors, pipeline)
    with_ov = f" with {len(overrides)} override(s)" if overrides else ""
    click.echo(f"{pipeline}: valid{with_ov} ({len(spec.editors)} editor(s), {len(spec.metrics)} metric(s), "
               f"dataset {spec.dataset.name!r}, model {spec.model.name!r})")

def _is_sweep_file(path: str) -> bool:
    """A YAML mapping with ``base`` and no ``model``: a sweep file, not a pipeline."""
    import re

    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if not re.search(r"^base\s*:", text, re.M):  # cheap: most files are pipelines, parsed once later
            return False
        doc = yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - unreadable or malformed: load_pipeline reports it precisely
        return False
    return isinstance(doc, dict) and "base" in doc and "model" not in doc


@click.command()
@click.argument("sweep_file", metavar="SWEEP", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Sweep folder (default: the sweep's output, else runs/<SWEEP name>).")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Worker processes; each loads a model once and reuses it for every point on it.")
@click.option("--overwrite", is_flag=True, help="Replace another sweep in the sweep folder and re-run every point.")
@click.option("--ray", "ray", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run the points as Ray tasks on --jobs actors: a local Ray instance, or the cluster at ADDRESS "
                   "(needs kme-core[ray]).")
@_output_options
@click.pass_context
def sweep(ctx: click.Context, sweep_file: str, out_dir: str | None, jobs: int, overwrite: bool, ray: str | None,
          no_progress: bool, quiet: bool, verbose: bool) -> None:
    """Run SWEEP (YAML): a base pipeline over a grid of overrides, one run folder per point.

    Re-running it skips finished points and resumes interrupted ones (docs/sweeps.md)."""
    from kme.sweep import SweepFailedError, run_sweep

    with _output(no_progress, quiet, verbose):
        doc = run_sweep(sweep_file, _pm(ctx), out_dir=out_dir, jobs=jobs, overwrite=overwrite, ray=ray,
                        progress=not (no_progress or quiet), quiet=quiet, verbose=verbose,
                        echo=lambda line: click.echo(line, err=True))
    click.echo(_sweep_table(doc["points"]))
    click.echo(f"sweep folder: {doc['root']}")
    failed = [p["folder"] for p in doc["points"] if p["status"] == "failed"]
    if failed:
        raise SweepFailedError(f"{len(failed)} of {len(doc['points'])} point(s) failed: {', '.join(failed)}",
                               where=f"{doc['root']}/sweep.json",
                               hint="each point's error is in sweep.json; run the sweep again to retry them")


def _sweep_table(points: list[dict[str, Any]]) -> str:
    names: list[str] = []
    for p in points:
        for k in p["metrics"] or {}:
            if k not in names:
                names.append(k)

    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)

    rows = [("point", "status", *names)]
    rows += [(p["folder"], p["status"], *(f((p["metrics"] or {}).get(n)) for n in names)) for p in points]
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows)

@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, what each provides and which hooks it implements."""
    d = _pm(ctx).describe()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    for p in d["plugins"]:
        ver = f" {p['version']}" if p["version"] else ""
        dist = f" ({p['distribution']}{ver})" if p["distribution"] else ""
        click.echo(f"{p['name']}{dist}{' [built-in]' if p['builtin'] else ''}")
        for kind, names in p["provides"].items():
            click.echo(f"  {kind}: {', '.join(names)}")
        click.echo(f"  hooks: {', '.join(p['hooks'])}")
    for f in d["failures"]:
        click.echo(f"FAILED {f['name']} ({f['distribution']}): {f['phase']}: {f['error']}")

@click.command()
@click.pass_context
def datasets(ctx: click.Context) -> None:
    """List datasets: name, source format, where to get it."""
    reg = _pm(ctx).datasets
    for name, cls in reg.items():
        click.echo(f"{name}: {cls.description}")
        if cls.source_format:
            click.echo(f"  format: {cls.source_format}")
        if cls.homepage:
            click.echo(f"  source: {cls.homepage}")

@click.command()
@click.argument("model")
@click.option("--editor", "editor_name", required=True, help="Registered editor name.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Editor param (YAML value).")
@click.option("--prompt", required=True, help="Relation prompt with a {} subject slot.")
@click.option("--subject", required=True)
@click.option("--target", required=True, help="New object o*.")
@click.option("--target-true", default=None, help="Old object o, if known.")
@click.option("--preset", default="auto", show_default=True,
              help="auto (the preset for this model), none, or a preset name (`kme presets`).")
@click.option("--save-patch", type=click.Path(file_okay=False), help="Write the edit as a patch folder.")
@click.option("--save-model", type=click.Path(file_okay=False), help="Write the edited weights (save_pretrained).")
@click.option("--keep-failed", is_flag=True,
              help="Write --save-patch/--save-model even when the edit did not take (the new object is "
                   "not the top-1 answer afterwards).")
@_output_options
@click.pass_context
def edit(ctx: click.Context, model: str, editor_name: str, params: tuple[str, ...], prompt: str,
         subject: str, target: str, target_true: str | None, preset: str, save_patch: str | None,
         save_model: str | None, keep_failed: bool, no_progress: bool, quiet: bool, verbose: bool) -> None:
    """Edit one fact of MODEL (alias, path or hub id) and save the result.

    Prints the probability of the new object before and after the edit and whether it is now
    the top-1 answer. An edit that did not take exits 1 and writes nothing, unless --keep-failed.
    """
    with _output(no_progress, quiet, verbose):
        _edit(ctx, model, editor_name, params, prompt, subject, target, target_true, preset, save_patch,
              save_model, keep_failed)


class EditDidNotTakeError(KmeError):
    """``kme edit``: the editor ran, but the new object is not the top-1 answer afterwards."""

    exit_code = 1


def _describe(label: str, score: Any) -> str:
    prob = math.exp(score.logprob)
    top = "top-1" if score.all_correct else "not top-1"
    return f"  {label} P(target) = {prob:.4g} ({top})"


def _edit(ctx: click.Context, model: str, editor_name: str, params: tuple[str, ...], prompt: str,
          subject: str, target: str, target_true: str | None, preset: str, save_patch: str | None,
          save_model: str | None, keep_failed: bool) -> None:
    from pydantic import ValidationError

    from kme.data import EditRequest
    from kme.errors import ConfigError, format_validation_error
    from kme.models.loading import load_model

    pm = _pm(ctx)
    cls = pm.editors.get(editor_name, where="--editor")
    explicit = _parse_params(params)
    cls.parse_params(explicit, where="--param")
    try:
        req = EditRequest(case_id=0, prompt=prompt, subject=subject, target_new=target, target_true=target_true)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e), where="edit request") from None
    m = load_model(model, pm)
    editor = m.make_editor(editor_name, explicit, preset=preset, where="--param")
    try:
        editor.check_model(m)
    except KmeError as e:
        raise type(e)(e.message, hint=e.hint, where="--param" + (f" {e.where}" if e.where else "")) from None
    if editor.resolution is not None and editor.resolution.preset:
        click.echo(f"preset {editor.resolution.preset} ({editor.resolution.preset_plugin})")
    before = m.generate([req.text], max_new_tokens=5)[0]
    score_before = m.score([req.text], [req.target_new])[0]
    try:
        m.edit(editor, [req])
    except KmeError:
        raise
    except Exception as e:  # the editor itself failed (e.g. an overflow); the edit was rolled back
        raise EditFailedError(f"editor {editor_name!r} raised {type(e).__name__}: {str(e)[:300]}; "
                              "the edit was rolled back", hint="check its params (learning rate, layers)") \
            from None
    after = m.generate([req.text], max_new_tokens=5)[0]
    score_after = m.score([req.text], [req.target_new])[0]
    click.echo(f"{req.text!r}\n  before: {before!r}\n  after:  {after!r}")
    click.echo(f"target {req.target_new!r} (all {score_after.n_tokens} token(s), teacher-forced):")
    click.echo(_describe("before:", score_before))
    click.echo(_describe("after: ", score_after))
    if score_after.all_correct:
        click.echo("the edit took: the new object is the top-1 answer")
    elif keep_failed and (save_patch or save_model):
        click.echo(f"warning: the edit did not take ({req.target_new!r} is not the top-1 answer); "
                   "writing it anyway (--keep-failed)", err=True)
    else:
        written = "; nothing was written" if save_patch or save_model else ""
        raise EditDidNotTakeError(
            f"the edit did not take: {req.target_new!r} is not the top-1 answer to {req.text!r} after the "
            f"edit{written}", where="kme edit",
            hint="try other params (more steps, a higher learning rate, other layers)"
                 + (", or pass --keep-failed to write it anyway" if written else ""))
    if save_patch:
        m.save_patch(save_patch)
        click.echo(f"patch written to {save_patch}")
    if save_model:
        m.save_pretrained(save_model)
        click.echo(f"edited model written to {save_model}")

@click.command("presets")
@click.argument("editor", required=False)
@click.option("--model", "model_name", default=None,
              help="Show the preset that applies to this model (alias or local directory; only its config is read).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def presets_cmd(ctx: click.Context, editor: str | None, model_name: str | None, as_json: bool) -> None:
    """List presets (recommended editor params per model), or the one that applies to --model."""
    from kme.presets import find_preset

    pm = _pm(ctx)
    if editor is not None:
        pm.editors.get(editor, where="EDITOR")
    rows = [p for _, p in pm.presets.items() if editor is None or p.editor == editor]
    chosen: dict[str, Any] = {}
    if model_name is not None:
        ident = _identity(pm, model_name)
        names = [editor] if editor else sorted({p.editor for p in rows})
        for ed in names:
            p = find_preset(pm, ed, ident, "auto", where="--model")
            chosen[ed] = p.name if p else None
        rows = [p for p in rows if p.name in chosen.values()]
    if as_json:
        click.echo(json.dumps({"model": model_name, "applies": chosen or None, "presets": [
            {**p.model_dump(mode="json"), "plugin": pm.presets.owner(p.name)} for p in rows]}, indent=2))
        return
    if model_name is not None:
        click.echo(f"model {model_name}: {ident.describe()}")
        for ed, name in chosen.items():
            if name is None:
                click.echo(f"  {ed}: no preset (code defaults)")
    if not rows and model_name is None:
        click.echo("no presets installed" + (f" for editor {editor!r}" if editor else ""))
    for p in rows:
        click.echo(f"{p.name}  [{pm.presets.owner(p.name)}]  editor {p.editor}, model {p.model.describe()}")
        if p.description:
            click.echo(f"  {p.description}")
        for k, v in p.params.items():
            why = f"  # {p.notes[k]}" if k in p.notes else ""
            click.echo(f"    {k}: {json.dumps(v)}{why}")
        if p.reference:
            click.echo(f"  reference: {p.reference}")

@click.group()
def patch() -> None:
    """Inspect and apply saved patches."""

@patch.command("info")
@click.argument("path", type=click.Path(file_okay=False))
def patch_info(path: str) -> None:
    """Show what a patch holds."""
    from pathlib import Path

    from kme.patch import check_tensors, read_manifest, read_tensors

    m = read_manifest(path)
    check_tensors(None, m, read_tensors(path), Path(path) / "manifest.json")
    click.echo(f"base model: {m.base_model.source} ({m.base_model.fingerprint})")
    for e in m.edits:
        click.echo(f"- {e.editor}: {len(e.requests)} request(s), {len(e.deltas)} weight delta(s), "
                   f"{len(e.memory)} memory item(s)")

@patch.command("apply")
@click.argument("model")
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--save-model", type=click.Path(file_okay=False), required=True,
              help="Where to write the patched model.")
@click.pass_context
def patch_apply(ctx: click.Context, model: str, path: str, save_model: str) -> None:
    """Apply the patch at PATH to MODEL and save the result."""
    from pathlib import Path

    from kme.models.loading import load_model
    from kme.patch import check_tensors, read_manifest, read_tensors

    # a damaged patch is refused before the (possibly long) model load
    check_tensors(None, read_manifest(path), read_tensors(path), Path(path) / "manifest.json")
    m = load_model(model, _pm(ctx))
    hs = m.load_patch(path)
    m.save_pretrained(save_model)
    click.echo(f"applied {len(hs)} edit(s); patched model written to {save_model}")



def make_cli(pm: KmePluginManager) -> click.Group:
    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="kme-core", prog_name="kme")
    @click.pass_context
    def cli(ctx: click.Context) -> None:
        """kme: knowledge-based model editing for LLMs."""
        ctx.ensure_object(dict)
        ctx.obj["pm"] = pm

    from kme.train_cli import train_cmd  # imports this module's output options

    for command in (run, validate, sweep, plugins, datasets, edit, presets_cmd, patch, compare_cmd, report_cmd,
                    train_cmd):
        cli.add_command(command)
    return cli


def _identity(pm: KmePluginManager, name: str) -> Any:
    """A model's identity from its alias and config alone (no weights are loaded)."""
    from pathlib import Path

    from kme.errors import ModelLoadError
    from kme.models.loading import resolve_model_path
    from kme.presets import model_identity_from_config

    target = resolve_model_path(name, pm)
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(Path(target).expanduser()) if Path(target).expanduser().exists()
                                            else target)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"could not read the config of model {name!r}: {str(e).splitlines()[0]}",
                             where="--model", hint="pass an alias or a local model directory") from None
    return model_identity_from_config(config, alias=name if name in pm.aliases else None)


def _parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise KmeError(f"--param {item!r} must be KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = parse_yaml(v, f"--param {k.strip()}")
    return out


def _metrics_table(summary: dict[str, Any]) -> str:
    from kme.pipeline.report import format_ci

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    rows = [("metric", "value ± 95% CI", "baseline", "scoring")]
    for name, m in summary["metrics"].items():
        rows.append((name, "-" if m["value"] is None else format_ci(m["value"], m.get("ci")), f(m["baseline"]),
                     m["scoring"]))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows)


def main(argv: list[str] | None = None, pm: KmePluginManager | None = None) -> int:
    """Run ``kme ARGV``; return the exit code. ``pm``: an already built plugin manager (tests
    that run many commands in-process), else one is built from the installed plugins."""
    from pydantic import ValidationError

    from kme.logs import configure_logging

    configure_logging(None)
    try:
        if pm is None:
            pm = build_plugin_manager()
            print_failures(pm)
        cli = make_cli(pm)
        pm.hook.kme_register_commands(cli=cli)
        cli.main(args=argv, prog_name="kme", standalone_mode=False)
        return 0
    except KmeError as e:
        click.echo(f"error: {e.render()}", err=True)
        return e.exit_code
    except ValidationError as e:  # a model validated outside a component: still one clear message
        from kme.errors import format_validation_error

        click.echo(f"error: {format_validation_error(e)}", err=True)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
