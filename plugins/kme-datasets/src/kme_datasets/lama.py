"""LAMA-style relational facts: T-REx (LAMA's facts with its relation templates, as in
CaliNet's T-REx-100/-1000) and ParaRel (the same facts with ParaRel's paraphrased patterns)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from kme import ConfigError, DatasetRecordError, EditRequest
from pydantic import Field, model_validator

from kme_datasets.base import SourceDataset, SourceParams
from kme_datasets.fields import Record, SkipRecord
from kme import read_text
from kme_datasets.prompts import lama_prompt

__all__ = ["TRex", "ParaRel", "LamaParams", "read_relation_templates", "read_patterns"]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(read_text(path, what="dataset file", error=DatasetRecordError).splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetRecordError(f"line {n} is not valid JSON ({e.msg})", where=str(path)) from None
            if not isinstance(row, dict):
                raise DatasetRecordError(f"line {n} must be a JSON object", where=str(path))
            rows.append(row)
    return rows


def read_relation_templates(path: str) -> dict[str, str]:
    """LAMA's ``relations.jsonl``: ``{"relation": "P19", "template": "[X] was born in [Y] .", ...}``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"relations file {path!r} does not exist", where="dataset.relations_path",
                          hint="LAMA's data/relations.jsonl (one {relation, template, label} per line)")
    out = {}
    for n, row in enumerate(_jsonl(p)):
        rel, tpl = row.get("relation"), row.get("template")
        if not isinstance(rel, str) or not isinstance(tpl, str):
            raise DatasetRecordError(f"line {n + 1}: fields 'relation' and 'template' must be strings", where=str(p))
        out[rel] = tpl
    return out


def read_patterns(path: str) -> dict[str, list[str]]:
    """ParaRel patterns: one ``graphs_json/<relation>.jsonl`` file (``{"pattern": ...}`` per
    line, relation taken from the file name) or a directory of such files."""
    p = Path(path).expanduser()
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    if not files or not files[0].is_file():
        raise ConfigError(f"patterns path {path!r} holds no .jsonl pattern file", where="dataset.patterns_path",
                          hint="ParaRel's data/pattern_data/graphs_json/<relation>.jsonl, or that directory")
    out: dict[str, list[str]] = {}
    for f in files:
        pats = []
        for n, row in enumerate(_jsonl(f)):
            if not isinstance(row.get("pattern"), str):
                raise DatasetRecordError(f"line {n + 1}: field 'pattern' must be a string", where=str(f))
            pats.append(row["pattern"])
        out[f.stem] = pats
    return out


class LamaParams(SourceParams):
    relations_path: str | None = Field(None, description="LAMA relations.jsonl: the main template of each relation")
    patterns_path: str | None = Field(None, description="ParaRel graphs_json pattern file or directory: paraphrased templates")


class TRexParams(LamaParams):
    @model_validator(mode="after")
    def _need_templates(self) -> TRexParams:
        if not self.relations_path and not self.patterns_path:
            raise ValueError("trex needs `relations_path` (LAMA relations.jsonl) or `patterns_path` "
                             "(ParaRel patterns) to turn facts into prompts")
        return self


class ParaRelParams(LamaParams):
    @model_validator(mode="after")
    def _need_patterns(self) -> ParaRelParams:
        if not self.patterns_path:
            raise ValueError("pararel needs `patterns_path` (graphs_json/<relation>.jsonl or its directory)")
        return self


class _Lama(SourceDataset):
    Params: ClassVar[type[LamaParams]] = LamaParams
    params: LamaParams

    def prepare(self, records: list[Any], label: str) -> None:
        p = self.params
        self._templates = read_relation_templates(p.relations_path) if p.relations_path else {}
        self._patterns = read_patterns(p.patterns_path) if p.patterns_path else {}
        self._single_pattern_file = bool(p.patterns_path) and not Path(p.patterns_path).expanduser().is_dir()

    def _templates_for(self, relation: str) -> list[str]:
        tpls = []
        if relation in self._templates:
            tpls.append(self._templates[relation])
        if self._single_pattern_file:
            tpls += next(iter(self._patterns.values()))
        else:
            tpls += self._patterns.get(relation, [])
        seen: dict[str, None] = {}
        for t in tpls:
            seen.setdefault(" ".join(t.split()), None)
        return list(seen)

    def convert(self, rec: Record) -> list[EditRequest]:
        """A fact (sub_label, predicate_id, obj_label) the model should know: the first usable
        template is the prompt, the other templates its paraphrases; target is the object."""
        subject = rec.str("sub_label")
        obj = rec.str("obj_label")
        relation = rec.str("predicate_id", required=False) or self._relation_from_file()
        if relation is None:
            raise rec.error("is missing (and no single patterns file names the relation)", "predicate_id")
        templates = self._templates_for(relation)
        if not templates:
            raise SkipRecord(f"no template for relation {relation!r}", "predicate_id")
        prompts = []
        for t in templates:
            pr = lama_prompt(t, subject)
            if pr is not None and pr not in prompts:
                prompts.append(pr)
        if not prompts:
            raise SkipRecord(f"no template of relation {relation!r} puts the subject [X] before the object [Y]",
                             "predicate_id")
        case = rec.raw("uuid") if isinstance(rec.raw("uuid"), str) and rec.raw("uuid") else rec.index
        paraphrases = [p.replace("{}", subject) for p in prompts[1:]]
        return [EditRequest(case_id=case, prompt=prompts[0], subject=subject, target_new=obj, relation=relation,
                            paraphrase_prompts=paraphrases,
                            meta={"sub_uri": rec.raw("sub_uri"), "obj_uri": rec.raw("obj_uri"),
                                  "templates": templates})]

    def _relation_from_file(self) -> str | None:
        if self._single_pattern_file:
            return next(iter(self._patterns))
        return None


class TRex(_Lama):
    name: ClassVar[str] = "trex"
    description: ClassVar[str] = ("T-REx facts in LAMA format (T-REx-100/-1000 of CaliNet): prompts from LAMA's "
                                  "relation templates, paraphrases from ParaRel patterns when given")
    source_format: ClassVar[str] = (
        "LAMA T-REx JSON lines (data/TREx/<relation>.jsonl): {uuid, sub_uri, sub_label, predicate_id, obj_uri, "
        "obj_label, evidences}; templates from `relations_path` (LAMA relations.jsonl: {relation, template}) and/or "
        "`patterns_path` (ParaRel graphs_json)")
    homepage: ClassVar[str] = "https://github.com/facebookresearch/LAMA (data.zip: TREx/, relations.jsonl)"
    local_file: ClassVar[str] = "TREx/P19.jsonl"

    Params: ClassVar[type[TRexParams]] = TRexParams


class ParaRel(_Lama):
    name: ClassVar[str] = "pararel"
    description: ClassVar[str] = ("ParaRel (Elazar et al. 2021): T-REx facts with several paraphrased patterns per "
                                  "relation, as used by knowledge-neuron editing")
    source_format: ClassVar[str] = (
        "ParaRel: facts data/trex_lms_vocab/<relation>.jsonl {sub_label, obj_label, uuid, predicate_id?} and "
        "`patterns_path` data/pattern_data/graphs_json/<relation>.jsonl {pattern, lemma, extended_lemma, tense} "
        "(a file, or the directory for all relations)")
    homepage: ClassVar[str] = "https://github.com/yanaiela/pararel"
    local_file: ClassVar[str] = "trex_lms_vocab/P17.jsonl"

    Params: ClassVar[type[ParaRelParams]] = ParaRelParams
