"""Second-moment statistics ``C = E[k kᵀ]`` of MLP keys, streamed over a corpus and cached.

ROME inverts ``C`` to insert a key with the least disturbance to other keys (Eq. 26 of the
survey); MEMIT and AlphaEdit weight it against the new keys (Eq. 27). The papers estimate it
from 100,000 Wikipedia records; the sample count is a parameter so the trade-off is cheap to
measure.

Cache layout (``KME_STATS_DIR`` or ``~/.cache/kme/stats`` unless a directory is given)::

    <root>/<base fingerprint>/<corpus id>/<mlp_out module>.n<samples>.len<max_length>.safetensors

Each file carries its key in its metadata and is checked against the model on load. An
interrupted computation leaves a ``.partial.safetensors`` file (float64 sums) that the next
call resumes from. Factorisations of ``C`` (:mod:`kme_editlib.factors`) are cached beside
the file as ``<stem>.factor-<kind>.safetensors``; :func:`source_of` tells where a tensor
returned by :func:`key_second_moments` was read from.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.weak import WeakIdKeyDictionary

from kme import KmeError, pad_sequences, progress_enabled

from kme_editlib.base import base_weights
from kme_editlib.corpus import resolve_corpus
from kme_editlib.hooks import HookSet, eval_mode, module_at

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["StatsMismatchError", "StatsKey", "stats_root", "key_second_moments", "load_stats", "stats_path",
           "source_of"]

ENV_DIR = "KME_STATS_DIR"


class StatsMismatchError(KmeError):
    """A statistics file belongs to another model, layer, corpus or sample count."""


@dataclass(frozen=True)
class StatsKey:
    fingerprint: str
    module: str
    corpus: str
    samples: int
    max_length: int

    def meta(self) -> dict[str, str]:
        return {"fingerprint": self.fingerprint, "module": self.module, "corpus": self.corpus,
                "samples": str(self.samples), "max_length": str(self.max_length)}


_SOURCES: WeakIdKeyDictionary = WeakIdKeyDictionary()


def source_of(cov: torch.Tensor) -> tuple[StatsKey, Path] | None:
    """The key and the file of the statistics ``cov`` was returned for by
    :func:`key_second_moments` (None for a tensor it did not return)."""
    return _SOURCES.get(cov)


def stats_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where statistics are cached: ``cache_dir``, else ``$KME_STATS_DIR``, else ``~/.cache/kme/stats``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kme" / "stats"


def stats_path(root: Path, key: StatsKey, partial: bool = False) -> Path:
    suffix = ".partial.safetensors" if partial else ".safetensors"
    return root / key.fingerprint / key.corpus / f"{key.module}.n{key.samples}.len{key.max_length}{suffix}"


def load_stats(path: str | os.PathLike[str], model: "EditedModel", layer: int,
               key: StatsKey | None = None) -> tuple[torch.Tensor, dict[str, str]]:
    """Read a statistics file and check it was made for ``model``'s layer ``layer``: the
    second moment ``[d_ff, d_ff]`` and its metadata."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise KmeError(f"statistics file {str(p)!r} does not exist")
    with safe_open(str(p), framework="pt") as f:
        meta = dict(f.metadata() or {})
        mom2 = f.get_tensor("mom2")
    fp = model.base_fingerprint
    if meta.get("fingerprint") != fp:
        raise StatsMismatchError(
            f"statistics file {str(p)!r} was computed for model fingerprint {meta.get('fingerprint')!r}, "
            f"not for this model ({model.source!r}, fingerprint {fp})",
            hint="delete the file (or point stats_dir elsewhere) so the statistics are recomputed for this model")
    module = model.layout.name(model.check_layer(layer), "mlp_out")
    if meta.get("module") != module:
        raise StatsMismatchError(f"statistics file {str(p)!r} holds {meta.get('module')!r}, not {module!r}",
                                 hint="delete the file so the statistics are recomputed")
    if key is not None:
        for k, v in key.meta().items():
            if meta.get(k) != v:
                raise StatsMismatchError(f"statistics file {str(p)!r} has {k}={meta.get(k)!r}, expected {v!r}",
                                         hint="delete the file so the statistics are recomputed")
    d = module_at(model, layer, "mlp_out")
    d_in = _key_dim(model, layer)
    if tuple(mom2.shape) != (d_in, d_in):
        raise StatsMismatchError(f"statistics file {str(p)!r} has shape {tuple(mom2.shape)}, the keys of "
                                 f"{module!r} ({type(d).__name__}) have dimension {d_in}",
                                 hint="delete the file so the statistics are recomputed")
    return mom2, meta


def _key_dim(model: "EditedModel", layer: int) -> int:
    w = model.parameter(model.weight_name(layer, "mlp_out"))
    return int(model.layout.out_weight_as_linear(w).shape[1])


def _save(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def key_second_moments(model: "EditedModel", layers: list[int], *, corpus: str = "auto", samples: int = 100_000,
                       max_length: int = 128, cache_dir: str | os.PathLike[str] | None = None, batch_size: int = 32,
                       checkpoint_every: int = 2000, progress: bool = True,
                       dtype: torch.dtype = torch.float32, info: dict | None = None) -> dict[int, torch.Tensor]:
    """``{layer: E[k kᵀ]}`` for the MLP keys of each of ``layers`` over ``samples`` records of
    ``corpus`` (each truncated to ``max_length`` tokens), from the cache or computed (all
    missing layers in one pass over the corpus), on the unedited base weights.

    A corpus with fewer records than ``samples`` is read whole: the cache key and the
    progress bar hold the number of records really read. ``info`` (if given) receives the
    corpus id, that number, and each layer's cache file and whether it was cached."""
    if samples < 1:
        raise KmeError(f"stats_samples must be >= 1, got {samples}")
    layers = sorted({model.check_layer(layer) for layer in layers})
    src = resolve_corpus(corpus, model)
    samples = src.count(samples)
    if samples < 1:
        raise KmeError(f"corpus {src.id!r} holds no records for key statistics", where="stats_corpus")
    root = stats_root(cache_dir)
    keys = {layer: StatsKey(model.base_fingerprint, model.layout.name(layer, "mlp_out"), src.id, samples, max_length)
            for layer in layers}
    out: dict[int, torch.Tensor] = {}
    missing = []
    for layer in layers:
        p = stats_path(root, keys[layer])
        if p.is_file():
            out[layer] = load_stats(p, model, layer, keys[layer])[0].to(dtype)
        else:
            missing.append(layer)
    if missing:
        with base_weights(model):
            computed = _compute(model, missing, keys, root, src, samples, max_length, batch_size,
                                checkpoint_every, progress)
        out.update({layer: m.to(dtype) for layer, m in computed.items()})
    for layer in layers:
        _SOURCES[out[layer]] = (keys[layer], stats_path(root, keys[layer]))
    if info is not None:
        info.update({"corpus": src.id, "corpus_description": src.description, "records": samples,
                     "max_length": max_length,
                     "files": {str(layer): str(stats_path(root, keys[layer])) for layer in layers},
                     "computed_layers": missing})
    return out


def _compute(model: "EditedModel", layers: list[int], keys: dict[int, StatsKey], root: Path, src, samples: int,
             max_length: int, batch_size: int, checkpoint_every: int, progress: bool) -> dict[int, torch.Tensor]:
    from tqdm.auto import tqdm

    dims = {layer: _key_dim(model, layer) for layer in layers}
    sums = {layer: torch.zeros(dims[layer], dims[layer], dtype=torch.float64) for layer in layers}
    tokens = 0
    done = 0
    # resume: every missing layer must have a partial file at the same record count
    partials = {layer: stats_path(root, keys[layer], partial=True) for layer in layers}
    if all(p.is_file() for p in partials.values()):
        from safetensors import safe_open

        states = []
        for layer, p in partials.items():
            with safe_open(str(p), framework="pt") as f:
                meta = dict(f.metadata() or {})
                if any(meta.get(k) != v for k, v in keys[layer].meta().items()):
                    raise StatsMismatchError(f"partial statistics file {str(p)!r} does not match this model/corpus",
                                             hint="delete the file to start over")
                states.append((layer, f.get_tensor("mom2_sum"), int(meta["records"]), int(meta["tokens"])))
        if len({s[2] for s in states}) == 1:
            for layer, s, n, t in states:
                sums[layer] = s.to(torch.float64)
                done, tokens = n, t

    tok = model.tokenizer
    pad_id = tok.pad_token_id
    dev = model.device
    captured: dict[int, torch.Tensor] = {}

    def save(final: bool) -> None:
        for layer in layers:
            meta = {**keys[layer].meta(), "records": str(done), "tokens": str(tokens),
                    "corpus_description": getattr(src, "description", ""), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            if final:
                _save(stats_path(root, keys[layer]), {"mom2": (sums[layer] / max(tokens, 1)).float()}, meta)
                partials[layer].unlink(missing_ok=True)
            else:
                _save(partials[layer], {"mom2_sum": sums[layer]}, meta)

    def flush(batch: list[str]) -> int:
        enc = tok(batch, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        enc = [e for e in enc if e]
        if not enc:
            return 0
        ids, mask = pad_sequences(enc, pad_id, dev)
        m = mask.bool()
        with torch.no_grad(), HookSet() as hs:
            for layer in layers:
                hs.on_input(module_at(model, layer, "mlp_out"),
                            lambda x, layer=layer: captured.__setitem__(layer, x[m].to(torch.float64)))
            model.model(input_ids=ids, attention_mask=mask, use_cache=False)
        for layer in layers:
            k = captured.pop(layer)
            sums[layer] += (k.T @ k).cpu()
        return int(m.sum())

    with eval_mode(model), tqdm(total=samples, initial=done, desc=f"key statistics ({src.id}, layers {layers})",
                                disable=not progress_enabled(progress), leave=False) as bar:
        batch: list[str] = []
        last_ckpt = done
        for i, text in enumerate(src.records()):
            if i < done:
                continue
            if done + len(batch) >= samples:
                break
            batch.append(text)
            if len(batch) == batch_size:
                tokens += flush(batch)
                done += len(batch)
                bar.update(len(batch))
                batch = []
                if done - last_ckpt >= checkpoint_every:
                    save(final=False)
                    last_ckpt = done
        if batch:
            tokens += flush(batch)
            done += len(batch)
            bar.update(len(batch))
    if tokens == 0:
        raise KmeError(f"corpus {src.id!r} gave no tokens for key statistics", hint="check the corpus")
    save(final=True)
    return {layer: (sums[layer] / tokens).float() for layer in layers}


def describe_cache(root: Path) -> list[dict[str, str]]:
    """Metadata of every cached statistics file under ``root`` (for ``kme stats list``)."""
    from safetensors import safe_open

    rows = []
    for p in sorted(root.rglob("*.safetensors")):
        if ".factor-" in p.name:  # a factorisation of a statistics file, not statistics
            continue
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = dict(f.metadata() or {})
        except Exception:  # pragma: no cover - unreadable file
            meta = {"error": "unreadable"}
        rows.append({"path": str(p), **meta})
    return rows
