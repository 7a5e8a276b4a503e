"""Reading a dataset's published file (JSON, JSON lines, Parquet, CSV) or a hub dataset.

Nothing here knows a dataset's schema: the result is the parsed file (a list of records, or
the top-level object for files published as one object, such as MEND's WikiGen columns or
KnowEdit's Sanitation split) plus a label naming where it came from, for error messages.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from kme import ConfigError, DatasetRecordError, KmeError, check_depth, depth_error, read_text

__all__ = ["DatasetUnavailableError", "read_path", "read_hub", "resolve_split_file", "SUFFIXES"]

SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")


class DatasetUnavailableError(KmeError):
    """A dataset named by hub id could not be fetched (offline, unknown id, no such split)."""


def resolve_split_file(path: Path, split: str | None) -> Path:
    """A directory holding one file per split (KnowEdit, MEND, SituatedQA layouts): pick the
    data file whose name contains ``split``."""
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
    if not files:
        raise ConfigError(f"no {', '.join(SUFFIXES)} file in directory {str(path)!r}", where="dataset.path")
    if split is None:
        if len(files) == 1:
            return files[0]
        raise ConfigError(f"directory {str(path)!r} holds several data files: "
                          f"{', '.join(p.name for p in files)}", where="dataset.path",
                          hint="name the file in `path`, or give `split` to pick the file whose name contains it")
    hits = [p for p in files if split in p.stem]
    if len(hits) != 1:
        found = ", ".join(p.name for p in hits) if hits else "none"
        raise ConfigError(f"split {split!r} matches {len(hits)} files in {str(path)!r} ({found}); "
                          f"files there: {', '.join(p.name for p in files)}", where="dataset.split",
                          hint="name the file in `path` directly")
    return hits[0]


def _read_json_lines(text: str, label: str) -> list[Any]:
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(check_depth(json.loads(line), f"{label}: line {n}", error=DatasetRecordError))
        except json.JSONDecodeError as e:
            raise DatasetRecordError(f"line {n} is not valid JSON ({e.msg} at column {e.colno})", where=label,
                                     hint="a .jsonl file holds one JSON object per line") from None
        except RecursionError:
            raise depth_error(f"{label}: line {n}", DatasetRecordError) from None
    return out


def read_path(path: str | os.PathLike[str], split: str | None = None) -> tuple[Any, str]:
    """Parse a local file; return ``(content, label)``. A directory picks the file for ``split``."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"dataset file {str(p)!r} does not exist", where="dataset.path",
                          hint="download the published file and give its local path")
    if p.is_dir():
        p = resolve_split_file(p, split)
    label = str(p)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            return pq.read_table(p).to_pylist(), label
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise DatasetRecordError(f"cannot read Parquet: {e}", where=label) from None
    text = read_text(p, what="dataset file", error=DatasetRecordError, where=label)
    if suffix == ".csv":
        try:
            return list(csv.DictReader(io.StringIO(text, newline=""))), label
        except csv.Error as e:
            raise DatasetRecordError(f"not valid CSV ({e})", where=label) from None
    if suffix == ".jsonl":
        return _read_json_lines(text, label), label
    if suffix != ".json":
        raise ConfigError(f"unsupported file type {suffix!r} for {label!r}", where="dataset.path",
                          hint="give a .json, .jsonl, .parquet or .csv file as published")
    try:
        return check_depth(json.loads(text), label, error=DatasetRecordError), label
    except RecursionError:
        raise depth_error(label, DatasetRecordError) from None
    except json.JSONDecodeError as e:
        # Some datasets publish JSON lines under a .json name (ECBD, KILT files).
        if e.msg == "Extra data":
            return _read_json_lines(text, label), label
        raise DatasetRecordError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
                                 where=label) from None


def _offline_env() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))


def read_hub(hub_id: str, *, config: str | None, split: str | None, data_files: Any, local_hint: str) -> tuple[list[dict], str]:
    """Load ``hub_id`` with :func:`datasets.load_dataset`; any failure (no network, offline
    mode, unknown id or split) becomes one :class:`DatasetUnavailableError` that says how to
    pass the local file instead."""
    split = split or "train"
    label = f"hub:{hub_id}" + (f"/{config}" if config else "") + f"[{split}]"
    hint = (f"download the published file once and pass it with `path:` instead of `hub_id:` "
            f"({local_hint})")
    try:
        import datasets

        if _offline_env():  # honour the variables even when datasets was imported before they were set
            datasets.config.HF_DATASETS_OFFLINE = True
            datasets.config.HF_HUB_OFFLINE = True
        ds = datasets.load_dataset(hub_id, name=config, split=split, data_files=data_files)
    except Exception as e:  # network, offline, missing repo/split: all reach the user the same way
        mode = " (offline mode: HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set)" if _offline_env() else ""
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DatasetUnavailableError(
            f"cannot load {hub_id!r} split {split!r} from the Hugging Face hub{mode}: "
            f"{type(e).__name__}: {msg}"[:600], where="dataset.hub_id", hint=hint) from None
    return ds.to_list(), label
