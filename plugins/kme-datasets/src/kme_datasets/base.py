"""The shared shape of every dataset in this plugin: common options (:class:`SourceParams`),
reading, seeded selection, conversion with record-level errors (:class:`SourceDataset`)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import kme
import structlog
from kme import DatasetRecordError, EditRequest, format_validation_error
from pydantic import Field, ValidationError, model_validator

from kme_datasets.fields import Record, SkipRecord, type_name
from kme_datasets.sources import read_hub, read_path

__all__ = ["SourceParams", "SourceDataset", "select_indices"]

log = structlog.get_logger("kme.datasets")


class SourceParams(kme.Params):
    """Options every dataset of this plugin takes.

    Exactly one of ``path`` (a local file as published, or a directory holding one file per
    split) and ``hub_id`` (loaded with ``datasets.load_dataset``) is required.
    """

    path: str | None = Field(None, description="local JSON/JSONL/Parquet/CSV file as published, or a directory of split files")
    hub_id: str | None = Field(None, description="Hugging Face dataset id, loaded with datasets.load_dataset")
    hub_config: str | None = Field(None, description="dataset configuration name on the hub")
    hub_data_files: str | list[str] | None = Field(None, description="data_files passed to load_dataset")
    split: str | None = Field(None, description="hub split (default 'train'); for a directory path, picks the file whose name contains it")
    limit: int | None = Field(None, ge=1, description="keep at most this many source records")
    seed: int | None = Field(None, description="shuffle the source records with this seed before applying limit; omitted: file order")
    train_path: str | None = Field(None, description="file of training records (MEND/SERAC-style editors), same format")
    on_unusable: Literal["skip", "error"] = Field(
        "skip", description="a well-formed record that cannot become an edit request: skip it (logged) or stop")

    @model_validator(mode="after")
    def _one_source(self) -> SourceParams:
        if (self.path is None) == (self.hub_id is None):
            raise ValueError("give exactly one of `path` (a local file as published) or `hub_id`")
        return self


def select_indices(n: int, limit: int | None, seed: int | None) -> list[int]:
    """Which source records to use, in order: file order, or a seeded permutation; then the
    first ``limit``. The same (n, limit, seed) always gives the same list."""
    order = list(range(n))
    if seed is not None:
        random.Random(seed).shuffle(order)
    return order[:limit] if limit is not None else order


class SourceDataset(kme.Dataset):
    """Base of this plugin's datasets: subclasses set the class attributes and implement
    :meth:`convert` (one source record -> edit requests); :meth:`records` when the file is not
    a plain array of records."""

    Params: ClassVar[type[SourceParams]] = SourceParams
    #: Example local file name, shown in the hub error so users know what to download.
    local_file: ClassVar[str] = ""
    params: SourceParams

    def __init__(self, params: SourceParams | dict[str, Any] | None = None):
        super().__init__(params)
        #: (record index, reason) of the records the last load left out (``on_unusable: skip``).
        self.skipped: list[tuple[int, str]] = []

    # -- reading --------------------------------------------------------------------------
    def read(self, path: str | None = None) -> tuple[Any, str, bool]:
        p = self.params
        if path is not None or p.path is not None:
            content, label = read_path(path or p.path, None if path else p.split)
            return content, label, label.lower().endswith(".csv")
        hint = f"e.g. `path: {self.local_file}` from {self.homepage}" if self.local_file else f"see {self.homepage}"
        content, label = read_hub(p.hub_id, config=p.hub_config, split=p.split, data_files=p.hub_data_files,
                                  local_hint=hint)
        return content, label, False

    def records(self, content: Any, label: str) -> list[Any]:
        """The list of source records in a parsed file (override for files that are one object)."""
        if isinstance(content, list):
            return content
        raise self._unexpected_top_level(content, label, "a JSON array of records at the top level")

    def top_object(self, content: Any, label: str, expected: str) -> Record:
        """A file that is one object (for :meth:`records` overrides), as a record whose fields
        report their path; ``expected`` describes it in the error when the file is not an object."""
        if not isinstance(content, dict):
            raise self._unexpected_top_level(content, label, expected)
        return Record(content, label, "<file>", hint=self.format_hint())

    def _unexpected_top_level(self, content: Any, label: str, expected: str) -> DatasetRecordError:
        return DatasetRecordError(f"expected {expected}, got {type_name(content)}", where=label,
                                  hint=self.format_hint())

    def format_hint(self) -> str:
        return f"{self.name} expects {self.source_format}" + (f" (from {self.homepage})" if self.homepage else "")

    # -- converting -----------------------------------------------------------------------
    def convert(self, rec: Record) -> list[EditRequest]:
        raise NotImplementedError

    def prepare(self, records: list[Any], label: str) -> None:
        """Hook run once per file before conversion (datasets whose records refer to each other)."""

    def _convert_all(self, records: list[Any], label: str, indices: Iterable[int], csv_source: bool) -> list[EditRequest]:
        self.prepare(records, label)
        out: list[EditRequest] = []
        skipped: list[tuple[int, str]] = []
        hint = self.format_hint()
        for i in indices:
            rec = Record(records[i], label, i, hint=hint, strings_are_numbers=csv_source)
            try:
                out.extend(self.convert(rec))
            except SkipRecord as s:
                if self.params.on_unusable == "error":
                    where = f" field {s.field!r}" if s.field else ""
                    raise DatasetRecordError(f"record {i}:{where} {s.reason}", where=label,
                                             hint="set `on_unusable: skip` to leave such records out") from None
                skipped.append((i, s.reason))
            except ValidationError as e:
                raise DatasetRecordError(f"record {i}: cannot build an edit request: {format_validation_error(e)}",
                                         where=label, hint=hint) from None
        if skipped:
            log.warning("dataset.records_skipped", dataset=self.name, source=label, count=len(skipped),
                        first=[f"record {i}: {r}" for i, r in skipped[:3]])
        self.skipped = skipped
        ids = [str(r.case_id) for r in out]
        if len(set(ids)) != len(ids):
            dup = next(x for x in ids if ids.count(x) > 1)
            raise DatasetRecordError(f"case id {dup!r} occurs more than once", where=label,
                                     hint="case ids identify edits in a run folder and must be unique")
        return out

    def load(self) -> list[EditRequest]:
        content, label, csv_source = self.read()
        records = self.records(content, label)
        idx = select_indices(len(records), self.params.limit, self.params.seed)
        return self._convert_all(records, label, idx, csv_source)

    def train_requests(self) -> list[EditRequest]:
        if not self.params.train_path:
            return []
        content, label, csv_source = self.read(self.params.train_path)
        records = self.records(content, label)
        return self._convert_all(records, label, range(len(records)), csv_source)
