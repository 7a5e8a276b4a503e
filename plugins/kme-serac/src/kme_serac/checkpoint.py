"""A trained SERAC editor on disk: scope classifier + counterfactual model + their formats.

The checkpoint is a kme trained-editor folder (``kme.save_trained``), written by
:func:`kme_serac.training.train_serac` (``kme train serac``) and read by the ``serac``
editor's ``checkpoint`` param::

    manifest.json          editor "serac", the base model's fingerprint, config (formats,
                           threshold, training settings), metrics (losses, held-out scores)
    weights.safetensors    classifier.*      sequence classifier: P(query in scope of edit)
                           counterfactual.*  causal LM: answers in-scope queries given the edit
    train-state.pt         while training only: what ``--resume`` continues from

Both networks have the base model's architecture (the classifier with a one-logit head), so
they are rebuilt from the base model's config and the checkpoint holds weights only. A
checkpoint trained on another base model is refused (``kme.load_trained``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import kme
from kme import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, KmePluginManager

__all__ = ["SeracCheckpoint", "CLASSIFIER_FORMAT", "EDIT_FORMAT", "CONTEXT_FORMAT", "FORMAT_VERSION", "EDITOR",
           "new_classifier", "new_counterfactual", "state_tensors", "load_state"]

EDITOR = "serac"
FORMAT_VERSION = 2  # 1: serac.json + classifier/ + counterfactual/ save_pretrained folders
EDIT_FORMAT = "{prompt}{answer}"  # an edit descriptor: the prompt completed by the new object
CLASSIFIER_FORMAT = "Edit: {edit}.\nQuery: {query}"
CONTEXT_FORMAT = "New Fact: {edit}\nPrompt: "  # what the counterfactual model reads before the query
CLASSIFIER = "classifier."  # tensor name prefixes in weights.safetensors
COUNTERFACTUAL = "counterfactual."
WHERE = f"editor {EDITOR!r} params.checkpoint"


def _tokenizer(base: "EditedModel") -> Any:
    tok = copy.deepcopy(base.tokenizer)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def new_classifier(base: "EditedModel") -> "torch.nn.Module":
    """A sequence classifier of the base model's architecture with one logit (random weights,
    float32 on the CPU)."""
    from transformers import AutoModelForSequenceClassification

    cfg = copy.deepcopy(base.model.config)
    cfg.num_labels = 1
    cfg.pad_token_id = _tokenizer(base).pad_token_id
    return AutoModelForSequenceClassification.from_config(cfg).float().eval()


def new_counterfactual(base: "EditedModel") -> "torch.nn.Module":
    """A causal LM of the base model's architecture (random weights, float32 on the CPU)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(copy.deepcopy(base.model.config)).float().eval()


def state_tensors(module: "torch.nn.Module", prefix: str) -> dict[str, "torch.Tensor"]:
    """``module``'s state dict under ``prefix``, each storage once (safetensors refuses tied
    weights: GPT-2's ``lm_head`` is its embedding)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in module.state_dict().items():
        if v.data_ptr() in seen:
            continue
        seen.add(v.data_ptr())
        out[prefix + k] = v
    return out


def load_state(module: "torch.nn.Module", tensors: dict[str, "torch.Tensor"], prefix: str, what: str,
               path: Any = "") -> None:
    """Load the tensors under ``prefix`` into ``module``; a tensor set that does not fit it (a
    damaged checkpoint) is a ConfigError, a tied weight left out is not."""
    sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        missing, unexpected = module.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # a shape mismatch
        raise ConfigError(f"SERAC checkpoint {str(path)!r}: the {what} does not fit this model "
                          f"({str(e).splitlines()[-1].strip()})", where=WHERE) from None
    own = module.state_dict()
    loaded = {own[k].data_ptr() for k in sd if k in own}
    missing = [k for k in missing if own[k].data_ptr() not in loaded]
    if missing or unexpected:
        raise ConfigError(f"SERAC checkpoint {str(path)!r}: the {what} tensors do not fit this model (missing "
                          f"{missing[:3]}, unexpected {list(unexpected)[:3]})", where=WHERE,
                          hint="retrain it with `kme train serac`")


class SeracCheckpoint:
    """The two trained models of a SERAC editor, loaded once per folder, base model and process."""

    _loaded: dict[tuple[str, int, str], "SeracCheckpoint"] = {}

    def __init__(self, path: Path, meta: dict[str, Any], classifier: Any, cls_tokenizer: Any, cf_model: Any,
                 cf_tokenizer: Any):
        self.path = path
        self.meta = meta  # the manifest's config: formats, threshold, training settings
        self.classifier = classifier
        self.cls_tokenizer = cls_tokenizer
        self.cf_model = cf_model
        self.cf_tokenizer = cf_tokenizer
        self._router: Any = None

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def from_modules(cls, path: str | Path, meta: dict[str, Any], base: "EditedModel", classifier: Any,
                     cf_model: Any) -> "SeracCheckpoint":
        """Wrap trained networks (in memory) with tokenizers copied from ``base``."""
        classifier.eval()
        cf_model.eval()
        return cls(Path(path), meta, classifier, _tokenizer(base), cf_model, _tokenizer(base))

    @classmethod
    def load(cls, path: str | Path, model: "EditedModel") -> "SeracCheckpoint":
        """The checkpoint at ``path`` for ``model``; refused when it was trained on another base
        model, for another editor, or in the earlier on-disk format."""
        p = Path(path).expanduser()
        key = (str(p.resolve()), id(model.pm), model.base_fingerprint)
        if key in cls._loaded:
            return cls._loaded[key]
        if (p / "serac.json").is_file() and not (p / "manifest.json").is_file():
            raise ConfigError(f"{str(p)!r} is a SERAC checkpoint in the earlier format (serac.json, classifier/, "
                              "counterfactual/), which does not record the base model it was trained on",
                              where=WHERE, hint="retrain it: `kme train serac --model MODEL --dataset DATASET "
                                                "--out DIR`")
        ck = kme.load_trained(p, editor=EDITOR, model=model, where=WHERE)
        meta = ck.config
        if meta.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{str(p)!r}: unsupported SERAC checkpoint version {meta.get('format_version')!r}",
                              where=WHERE, hint="retrain it with this version of kme-serac")
        clf = new_classifier(model)
        load_state(clf, ck.tensors, CLASSIFIER, "scope classifier", p)
        cf = new_counterfactual(model)
        load_state(cf, ck.tensors, COUNTERFACTUAL, "counterfactual model", p)
        out = cls.from_modules(p, meta, model, clf, cf)
        cls._loaded[key] = out
        return out

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
