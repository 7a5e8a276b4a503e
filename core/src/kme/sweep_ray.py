"""The Ray executor of ``kme sweep --ray [ADDRESS]``: the sweep's points as tasks on Ray actors.

Each actor is one worker that, like a ``--jobs`` process, builds the plugin manager once and
keeps one loaded model, reused (unedited again) for every point with the same model spec.
Without an address a local Ray instance is started for the sweep and shut down after it.

Run folders reach the sweep folder either directly — when a worker sees the sweep folder
(the same machine, or a filesystem shared by the cluster) — or, when it does not, as a
gzipped tar of the finished run folder returned with the result and unpacked by the driver
(an interrupted point's partial folder travels the other way so that it resumes).
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from kme.errors import ConfigError

__all__ = ["run_on_ray", "RAY_HINT"]

RAY_HINT = "install it with: pip install 'kme-core[ray]'"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs the 'ray' package, which is not installed", hint=RAY_HINT) from None
    return ray


def _pack(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(str(folder), arcname=".")
    return buf.getvalue()


def _unpack(data: bytes, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(str(folder), filter="data")


class _SweepWorker:
    """One Ray actor: a plugin manager and a model cache, like a ``--jobs`` worker process."""

    def __init__(self, entry: bool, extra: list[Any], threads: int, token_file: str, token: str):
        from kme.sweep import _worker_init

        _worker_init(entry, extra, threads)
        self.token_file = token_file
        self.token = token

    def _sees_sweep_folder(self) -> bool:
        try:
            return Path(self.token_file).read_text() == self.token
        except OSError:
            return False

    def run(self, task: Any, partial: bytes | None) -> dict[str, Any]:
        from kme.sweep import _worker_run

        if self._sees_sweep_folder():
            return _worker_run(task)
        with tempfile.TemporaryDirectory(prefix="kme-ray-") as tmp:
            rd = Path(tmp) / "run"
            if partial is not None:
                _unpack(partial, rd)
            result = _worker_run(replace(task, run_dir=str(rd)))
            if rd.is_dir():
                result["archive"] = _pack(rd)
            return result


def run_on_ray(tasks: list[Any], *, address: str, workers: int, entry: bool, extra: list[Any], root: Path,
               record: Callable[[dict[str, Any]], None]) -> None:
    """Run ``tasks`` (``kme.sweep._Task``) on ``workers`` Ray actors; call ``record`` with each
    result as it arrives, after unpacking any returned run folder into its place.

    ``address``: ``"local"`` starts a local Ray instance with ``workers`` CPUs for this sweep;
    anything else is an existing cluster's address (``"auto"``, ``"ray://host:10001"``, ...)."""
    import uuid

    ray = _import_ray()
    local = address == "local"
    token_file = root / ".kme-ray-token"
    token = uuid.uuid4().hex
    token_file.write_text(token)
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if local:  # workers import what this process imports (plugins added by module name too)
            import sys

            kwargs["num_cpus"] = max(workers, 1)
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
        else:
            kwargs["address"] = address
        try:
            ray.init(**kwargs)
        except ConnectionError as e:
            raise ConfigError(f"cannot connect to the Ray cluster at {address!r}: {e}",
                              where="--ray ADDRESS", hint="start one with `ray start --head`, or pass "
                              "--ray with no address for a local instance; a cluster with token "
                              "authentication (Ray's default since 2.59) also needs RAY_AUTH_MODE=token and "
                              "its token (RAY_AUTH_TOKEN, or ~/.ray/auth_token) in this environment") from None
        started = True
    try:
        n = max(1, min(workers, len(tasks)))
        threads = max(1, (os.cpu_count() or 1) // n) if local else 0
        actor = ray.remote(num_cpus=1)(_SweepWorker)
        actors = [actor.remote(entry, extra, threads, str(token_file.resolve()), token) for _ in range(n)]
        pending: dict[Any, Any] = {}
        queue = list(tasks)

        def submit(a: Any) -> None:
            t = queue.pop(0)
            rd = Path(t.run_dir)
            partial = _pack(rd) if (t.resume and rd.is_dir()) else None
            pending[a.run.remote(t, partial)] = (a, t)

        for a in actors:
            if queue:
                submit(a)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            a, t = pending.pop(ready[0])
            result = ray.get(ready[0])
            archive = result.pop("archive", None)
            if archive is not None:
                rd = Path(t.run_dir)
                if rd.exists():
                    import shutil

                    shutil.rmtree(rd)
                _unpack(archive, rd)
            record(result)
            if queue:
                submit(a)
    finally:
        token_file.unlink(missing_ok=True)
        if started:
            ray.shutdown()
