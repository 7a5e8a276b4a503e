"""Classification datasets: the target is a label among ``choices`` (kme's categorical
requests). FEVER and VitaminC (fact checking), ConvSent (sentiment towards a topic), SCOTUS
(dispute topic, 11-way), Bias in Bios (occupation among 28).

These sources have no natural subject. The mapping chosen here: the input text (claim,
topic, opinion, biography) fills the prompt's ``{}`` slot and is the subject, except where
a name is available (ConvSent's topic entity, a biography's first name)."""

from __future__ import annotations

from typing import ClassVar, Literal

from kme import EditRequest
from pydantic import Field, field_validator

from kme_datasets.base import SourceDataset, SourceParams
from kme_datasets.fields import Record, SkipRecord
from kme_datasets.prompts import escape_braces, slot_subject, whole_input

__all__ = ["FEVER", "VitaminC", "ConvSent", "SCOTUS", "BiasInBios", "BIOS_OCCUPATIONS", "CONVSENT_TEMPLATES"]


def _template_validator(slot: str):
    def check(cls, v: str) -> str:
        if v.count(slot) != 1:
            raise ValueError(f"must contain {slot} exactly once")
        if "{}" in v.replace(slot, ""):
            raise ValueError("must not contain '{}' besides " + slot)
        return v
    return check


class FactCheckParams(SourceParams):
    template: str = Field("Claim: {claim}\nThis claim is", description="prompt; {claim} is replaced by the claim")
    label_words: dict[str, str] = Field(
        default_factory=lambda: {"SUPPORTS": "true", "REFUTES": "false"},
        description="source label -> the word the model is scored on; these words are the choices")
    _check_template = field_validator("template")(_template_validator("{claim}"))

    @field_validator("label_words")
    @classmethod
    def _two_plus(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) < 2 or len(set(v.values())) != len(v):
            raise ValueError("needs at least two labels mapped to distinct words")
        return v


class FEVERParams(FactCheckParams):
    target: Literal["flip", "gold"] = Field(
        "flip", description="flip: edit the claim to the opposite of its gold label (KE/MEND), old = gold; "
                            "gold: edit towards the gold label")


class _FactCheck(SourceDataset):
    Params: ClassVar[type[FactCheckParams]] = FactCheckParams
    params: FactCheckParams

    def label_word(self, rec: Record, key: str, label: str) -> str:
        words = self.params.label_words
        if label not in words:
            raise SkipRecord(f"label {label!r} is not among {sorted(words)} (e.g. NOT ENOUGH INFO)", key)
        return words[label]

    def prompt(self, claim: str) -> tuple[str, str]:
        return whole_input(self.params.template.replace("{claim}", "{}"), claim)

    def paraphrase(self, text: str) -> str:
        return self.params.template.replace("{claim}", text.strip())

    def choices(self) -> list[str]:
        """The distinct label words, in order: the choices of every request."""
        return list(dict.fromkeys(self.params.label_words.values()))


class FEVER(_FactCheck):
    name: ClassVar[str] = "fever"
    description: ClassVar[str] = ("FEVER fact checking, KILT version (binary SUPPORTS/REFUTES), as edited by "
                                  "KE and MEND")
    source_format: ClassVar[str] = (
        "KILT JSON lines (fever-dev-kilt.jsonl): {id, input (claim), output: [{answer: SUPPORTS|REFUTES, "
        "provenance}]}; KE/MEND's augmented files add filtered_rephrases, alternatives, prediction, logit")
    homepage: ClassVar[str] = "https://github.com/facebookresearch/KILT (fever-dev-kilt.jsonl)"
    local_file: ClassVar[str] = "fever-dev-kilt.jsonl"
    Params: ClassVar[type[FEVERParams]] = FEVERParams
    params: FEVERParams

    def convert(self, rec: Record) -> list[EditRequest]:
        claim = rec.str("input")
        out = rec.objs("output", non_empty=True)
        gold_label = out[0].str("answer")
        gold = self.label_word(out[0], "answer", gold_label)
        choices = self.choices()
        if self.params.target == "flip":
            others = [w for w in choices if w != gold]
            target_new, target_true = others[0], gold
        else:
            target_new, target_true = gold, None
        prompt, subject = self.prompt(claim)
        paraphrases = [self.paraphrase(r) for r in (rec.strs("filtered_rephrases", required=False) or [])]
        meta = {"label": gold_label, **rec.present("prediction", "alternatives", "logit")}
        prov = out[0].objs("provenance", required=False) or []
        if prov and prov[0].has("title"):
            meta["wikipedia_title"] = prov[0].raw("title")
        return [EditRequest(case_id=rec.id_or_index("id"), prompt=prompt, subject=subject, target_new=target_new,
                            target_true=target_true, choices=choices, paraphrase_prompts=paraphrases, meta=meta)]


class VitaminC(_FactCheck):
    """SERAC's VitaminC-FC: the evidence sentence (a Wikipedia revision) is the edit
    descriptor, kept as the request's reference text; the claim is the in-scope input and
    its label under that evidence the target."""

    name: ClassVar[str] = "vitaminc"
    description: ClassVar[str] = ("VitaminC-FC (Schuster et al. 2021; SERAC): claims judged against Wikipedia "
                                  "revisions; evidence = edit descriptor, claim label = target")
    source_format: ClassVar[str] = (
        "VitaminC JSON lines ({train,dev,test}.jsonl): {unique_id, case_id, claim, evidence, label: "
        "SUPPORTS|REFUTES|NOT ENOUGH INFO, page, revision_type}")
    homepage: ClassVar[str] = "https://github.com/TalSchuster/VitaminC (or hub tals/vitaminc)"
    local_file: ClassVar[str] = "vitaminc/test.jsonl"

    def convert(self, rec: Record) -> list[EditRequest]:
        claim = rec.str("claim")
        evidence = rec.str("evidence")
        label = rec.str("label")
        target = self.label_word(rec, "label", label)
        prompt, subject = self.prompt(claim)
        meta = {"label": label, **rec.present("page", "revision_type", "case_id")}
        return [EditRequest(case_id=rec.id_or_index("unique_id"), prompt=prompt, subject=subject, target_new=target,
                            choices=self.choices(), reference_texts=[evidence], meta=meta)]


#: SERAC's question templates for ConvSent topics.
CONVSENT_TEMPLATES = ["What do you think of {}?", "What do you feel about {}?", "How do you view {}?"] + [
    f"What is your {p} {{}}?" for p in ("opinion of", "stance on", "position on", "attitude about", "view on",
                                        "take on", "impression of", "assessment of", "judgment of", "sentiment of")]


class ConvSentParams(SourceParams):
    sentiment: Literal["alternate", "positive", "negative"] = Field(
        "alternate", description="target sentiment: alternate (records at even file positions positive, odd "
                                 "negative), or the same for all")


class ConvSent(SourceDataset):
    """The topic entity is the subject. Prompt ``"Topic: {}\\nSentiment:"`` with choices
    positive/negative (SERAC's edit form "Topic: X" -> "Sentiment: Positive"); SERAC's
    question templates are paraphrases (suffixed with " Sentiment:") and, as plain questions,
    generation prompts; the BlenderBot responses of the target sentiment are reference texts."""

    name: ClassVar[str] = "convsent"
    description: ClassVar[str] = ("ConvSent (SERAC, Mitchell et al. 2022): change a dialogue model's sentiment "
                                  "towards a topic; responses labelled positive/negative")
    source_format: ClassVar[str] = "blender_{train,val,test}.json: a JSON array of {ent, pos: [str], neg: [str]}"
    homepage: ClassVar[str] = ("https://github.com/eric-mitchell/serac (data link in its README: sentiment/); "
                               "also KnowEdit convsent/")
    local_file: ClassVar[str] = "blender_test.json"
    Params: ClassVar[type[ConvSentParams]] = ConvSentParams
    params: ConvSentParams

    def convert(self, rec: Record) -> list[EditRequest]:
        ent = escape_braces(rec.str("ent")).strip()
        pos, neg = rec.strs("pos"), rec.strs("neg")
        mode = self.params.sentiment
        i = rec.index if isinstance(rec.index, int) else 0
        positive = mode == "positive" or (mode == "alternate" and i % 2 == 0)
        target = "positive" if positive else "negative"
        return [EditRequest(
            case_id=i, prompt="Topic: {}\nSentiment:", subject=ent, target_new=target,
            choices=["positive", "negative"],
            paraphrase_prompts=[t.format(ent) + " Sentiment:" for t in CONVSENT_TEMPLATES],
            generation_prompts=[t.format(ent) for t in CONVSENT_TEMPLATES[:3]],
            reference_texts=pos if positive else neg,
            meta={"other_sentiment_texts": neg if positive else pos})]


class SCOTUSParams(SourceParams):
    label_names: list[str] | None = Field(
        None, description="names of the labels 0..n-1, used as choices; default: the label numbers as text")
    num_labels: int = Field(11, ge=2, description="number of classes when label_names is not given")
    max_chars: int = Field(2000, ge=50, description="keep this many leading characters of each opinion")


class SCOTUS(SourceDataset):
    """The opinion (truncated to ``max_chars``) is the subject in ``"{}\\nIssue area:"``; the
    target is its label. The published files carry label numbers only, so choices default to
    "0".."10"; pass ``label_names`` to score names instead."""

    name: ClassVar[str] = "scotus"
    description: ClassVar[str] = ("SCOTUS (Fairlex; GRACE): U.S. Supreme Court opinions classified into 11 issue "
                                  "areas, training 1946-1982, edits 1991-2009 (label shift)")
    source_format: ClassVar[str] = "GRACE's tomh/grace-scotus {train,test}.csv (or Parquet): {text, label (int)}"
    homepage: ClassVar[str] = "https://huggingface.co/datasets/tomh/grace-scotus"
    local_file: ClassVar[str] = "test.csv"
    Params: ClassVar[type[SCOTUSParams]] = SCOTUSParams
    params: SCOTUSParams

    def convert(self, rec: Record) -> list[EditRequest]:
        text = rec.str("text")[: self.params.max_chars]
        label = rec.int("label")
        names = self.params.label_names or [str(i) for i in range(self.params.num_labels)]
        if not 0 <= label < len(names):
            raise rec.error(f"is {label}, outside 0..{len(names) - 1}", "label")
        prompt, subject = whole_input("{}\nIssue area:", text)
        return [EditRequest(case_id=rec.id_or_index("id"), prompt=prompt, subject=subject, target_new=names[label],
                            choices=list(names), meta={"label": label})]


#: The 28 occupations of Bias in Bios, in the label order of the published numeric version.
BIOS_OCCUPATIONS = [
    "accountant", "architect", "attorney", "chiropractor", "comedian", "composer", "dentist", "dietitian", "dj",
    "filmmaker", "interior_designer", "journalist", "model", "nurse", "painter", "paralegal", "pastor",
    "personal_trainer", "photographer", "physician", "poet", "professor", "psychologist", "rapper",
    "software_engineer", "surgeon", "teacher", "yoga_teacher"]


class BiasInBios(SourceDataset):
    """REMEDI's probe: ``"<biography>\\n<name> has the occupation of"`` scored over the 28
    occupations (underscores read as spaces). The subject is the person's first name when
    the record has one (``name``: [first, middle, last]) and it occurs in the text, else
    "This person"."""

    name: ClassVar[str] = "bias-in-bios"
    description: ClassVar[str] = ("Bias in Bios (De-Arteaga et al. 2019; REMEDI): biographies whose occupation "
                                  "(one of 28) should rank first")
    source_format: ClassVar[str] = (
        "LabHC/bias_in_bios Parquet {hard_text, profession (0-27), gender}; or records with text/bio/hard_text "
        "and p/title (occupation name), optional name [first, middle, last], g/gender")
    homepage: ClassVar[str] = "https://huggingface.co/datasets/LabHC/bias_in_bios"
    local_file: ClassVar[str] = "test-00000-of-00001.parquet"

    def convert(self, rec: Record) -> list[EditRequest]:
        key = next((k for k in ("hard_text", "bio", "text") if rec.has(k)), "hard_text")
        text = escape_braces(rec.str(key)).strip()
        choices = [o.replace("_", " ") for o in BIOS_OCCUPATIONS]
        if rec.has("profession"):
            prof = rec.int("profession")
            if not 0 <= prof < len(choices):
                raise rec.error(f"is {prof}, outside 0..27", "profession")
            occupation = choices[prof]
        else:
            okey = "p" if rec.has("p") else "title"
            name = rec.str(okey).replace("_", " ").strip().lower()
            if name not in choices:
                raise SkipRecord(f"occupation {name!r} is not one of the 28", okey)
            occupation = name
        subject = "This person"
        names = rec.raw("name")
        if isinstance(names, list) and names and isinstance(names[0], str) and names[0].strip():
            if slot_subject(text, names[0]) is not None:
                subject = names[0].strip()
        meta = rec.present("gender", "g")
        return [EditRequest(case_id=rec.index, prompt=text + "\n{} has the occupation of", subject=subject,
                            target_new=occupation, choices=choices, meta=meta)]
