"""A trained SERAC editor on disk: scope classifier + counterfactual model + their formats.

Layout of a checkpoint folder (written by :func:`kme_serac.training.train_serac`, read by the
``serac`` editor's ``checkpoint`` param)::

    serac.json         formats, threshold, the training record
    classifier/        sequence classifier (save_pretrained): P(query in scope of edit)
    counterfactual/    causal LM + tokenizer (save_pretrained): answers in-scope queries
                       given the edit

Both are loaded with ``transformers`` ``from_pretrained`` (safetensors, no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kme import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, KmePluginManager

__all__ = ["SeracCheckpoint", "CLASSIFIER_FORMAT", "EDIT_FORMAT", "CONTEXT_FORMAT", "FORMAT_VERSION"]

FORMAT_VERSION = 1
EDIT_FORMAT = "{prompt}{answer}"  # an edit descriptor: the prompt completed by the new object
CLASSIFIER_FORMAT = "Edit: {edit}.\nQuery: {query}"
CONTEXT_FORMAT = "New Fact: {edit}\nPrompt: "  # what the counterfactual model reads before the query


class SeracCheckpoint:
    """The two trained models of a SERAC editor, loaded once per folder and process."""

    _loaded: dict[tuple[str, int], "SeracCheckpoint"] = {}

    def __init__(self, path: Path, meta: dict[str, Any], classifier: Any, cls_tokenizer: Any, cf_model: Any,
                 cf_tokenizer: Any):
        self.path = path
        self.meta = meta
        self.classifier = classifier
        self.cls_tokenizer = cls_tokenizer
        self.cf_model = cf_model
        self.cf_tokenizer = cf_tokenizer
        self._router: Any = None

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, pm: "KmePluginManager") -> "SeracCheckpoint":
        p = Path(path).expanduser()
        key = (str(p.resolve()), id(pm))
        if key in cls._loaded:
            return cls._loaded[key]
        meta_path = p / "serac.json"
        if not meta_path.is_file():
            raise ConfigError(f"{str(p)!r} is not a SERAC checkpoint (no serac.json)", where="editor params.checkpoint",
                              hint="train one with `kme serac train --model MODEL --dataset DATASET --out DIR`")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{meta_path}: not valid JSON ({e})", where="editor params.checkpoint") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{meta_path}: unsupported SERAC checkpoint version {meta.get('format_version')!r}",
                              where="editor params.checkpoint", hint="retrain it with this version of kme-serac")
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

        try:
            classifier = AutoModelForSequenceClassification.from_pretrained(str(p / "classifier"))
            cls_tok = AutoTokenizer.from_pretrained(str(p / "classifier"))
            cf_model = AutoModelForCausalLM.from_pretrained(str(p / "counterfactual"))
            cf_tok = AutoTokenizer.from_pretrained(str(p / "counterfactual"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"SERAC checkpoint {str(p)!r} is incomplete: {str(e).splitlines()[0]}",
                              where="editor params.checkpoint", hint="retrain it with `kme serac train`") from None
        for m, t in ((classifier, cls_tok), (cf_model, cf_tok)):
            m.eval()
            if t.pad_token_id is None:
                t.pad_token = t.eos_token
        classifier.config.pad_token_id = cls_tok.pad_token_id
        ck = cls(p, meta, classifier, cls_tok, cf_model, cf_tok)
        cls._loaded[key] = ck
        return ck

    @classmethod
    def forget(cls, path: str | Path) -> None:
        """Drop a cached checkpoint (after retraining it in place)."""
        resolved = str(Path(path).expanduser().resolve())
        for k in [k for k in cls._loaded if k[0] == resolved]:
            del cls._loaded[k]

    # -- the two models -------------------------------------------------------------------
    @torch.no_grad()
    def scope_probs(self, pairs: list[tuple[str, str]], batch_size: int = 64) -> list[float]:
        """P(query in the scope of edit) for each (edit descriptor, query) pair."""
        fmt = self.meta.get("classifier_format", CLASSIFIER_FORMAT)
        texts = [fmt.format(edit=e, query=q) for e, q in pairs]
        out: list[float] = []
        tok = self.cls_tokenizer
        side = tok.padding_side
        tok.padding_side = "right"
        try:
            for s in range(0, len(texts), batch_size):
                enc = tok(texts[s:s + batch_size], return_tensors="pt", padding=True)
                logits = self.classifier(**enc).logits[:, 0].float()
                out += torch.sigmoid(logits).tolist()
        finally:
            tok.padding_side = side
        return out

    def context(self, edit: str) -> str:
        return self.meta.get("context_format", CONTEXT_FORMAT).format(edit=edit)

    def router(self, pm: "KmePluginManager") -> "EditedModel":
        """The counterfactual model behind kme's inference API (score / next_token_logprobs /
        generate), used as a memory hit's router."""
        if self._router is None:
            from kme import EditedModel

            layout = pm.layouts.get(self.cf_model.config.model_type)
            self._router = EditedModel(self.cf_model, self.cf_tokenizer, layout, pm,
                                       source=f"serac-counterfactual:{self.path}")
        return self._router
