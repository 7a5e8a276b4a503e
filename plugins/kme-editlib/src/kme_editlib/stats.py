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
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
import torch
from torch.utils.weak import WeakIdKeyDictionary

from kme import KmeError, progress_enabled

from kme_editlib.base import base_weights
from kme_editlib.fit import Fit
from kme_editlib.corpus import resolve_corpus
from kme_editlib.hooks import HookSet, eval_mode, module_at

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel

__all__ = ["StatsMismatchError", "StatsKey", "stats_root", "key_second_moments", "load_stats", "stats_path",
           "source_of"]

ENV_DIR = "KME_STATS_DIR"

log = structlog.get_logger("kme")


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
    corpus id, that number, and each layer's cache file and whether it was cached; when
    statistics were computed, also the tokens counted, the seconds taken and ``tokens_per_s``
    (logged too, event ``stats.computed``). ``batch_size`` records are run at a time, halved
    on out-of-memory."""
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
    timing: dict = {}
    for layer in layers:
        p = stats_path(root, keys[layer])
        if p.is_file():
            out[layer] = _load_kept(p, model, layer, keys[layer], dtype)
        else:
            missing.append(layer)
    if missing:
        with base_weights(model):
            computed = _compute(model, missing, keys, root, src, samples, max_length, batch_size,
                                checkpoint_every, progress, timing)
        out.update({layer: m.to(dtype) for layer, m in computed.items()})
    for layer in layers:
        _SOURCES[out[layer]] = (keys[layer], stats_path(root, keys[layer]))
    if info is not None:
        info.update({"corpus": src.id, "corpus_description": src.description, "records": samples,
                     "max_length": max_length,
                     "files": {str(layer): str(stats_path(root, keys[layer])) for layer in layers},
                     "computed_layers": missing, **timing})
    return out


#: most megabytes of loaded statistics kept in memory between edits (``KME_STATS_MEMORY_MB``);
#: 0 reloads the file every time
ENV_STATS_MEMORY = "KME_STATS_MEMORY_MB"
_KEPT: "OrderedDict[tuple, tuple[torch.Tensor, int]]" = OrderedDict()
_KEPT_LOCK = threading.Lock()


def _kept_budget() -> int:
    try:
        return max(0, int(os.environ.get(ENV_STATS_MEMORY, "4096"))) * 2**20
    except ValueError:
        return 4096 * 2**20


def _load_kept(p: Path, model: "EditedModel", layer: int, key: StatsKey, dtype: torch.dtype) -> torch.Tensor:
    """``C`` from file ``p``, kept in memory (least recently used first out, within
    ``KME_STATS_MEMORY_MB``) so that editing one fact after another does not re-read a d_ff²
    matrix per edit -- nor re-digest it for the factor cache, which remembers digests per
    tensor. A kept tensor modified in place since is read again."""
    st = p.stat()
    k = (str(p), st.st_mtime_ns, st.st_size, dtype)
    with _KEPT_LOCK:
        hit = _KEPT.get(k)
        if hit is not None and hit[0]._version == hit[1]:
            _KEPT.move_to_end(k)
            return hit[0]
    cov = load_stats(p, model, layer, key)[0].to(dtype)
    budget = _kept_budget()
    size = cov.numel() * cov.element_size()
    if size <= budget:
        with _KEPT_LOCK:
            _KEPT[k] = (cov, cov._version)
            total = sum(t.numel() * t.element_size() for t, _ in _KEPT.values())
            while total > budget and len(_KEPT) > 1:
                _, (old, _v) = _KEPT.popitem(last=False)
                total -= old.numel() * old.element_size()
    return cov


def clear_kept() -> None:
    """Forget the statistics kept in memory (the files stay)."""
    with _KEPT_LOCK:
        _KEPT.clear()


class _Enough(Exception):
    """Raised by the hook of the highest requested layer: the rest of the forward pass (upper
    blocks, final norm, LM head) cannot change the keys, so it is skipped."""


#: records tokenised together (a multiple of the batch size, at most ``checkpoint_every``, so
#: that an interrupted computation leaves a checkpoint as often as asked)
BLOCK_RECORDS = 4096

#: pad each record to the width of its batch of ``batch_size`` consecutive corpus records
#: (True: the keys, hence ``C``, are those of the plain batched pass, whatever the batch
#: actually run -- a key's last float32 bits depend on the padded width) or to the longest
#: record of a batch of records sorted by length (False: least padding, ``C`` differs from
#: the plain pass's in its last float32 bits)
PAD_AS_CORPUS_BATCHES = True


def _read_blocks(records, skip: int, count: int, block: int):  # type: ignore[no-untyped-def]
    """Lists of at most ``block`` texts: records ``skip .. count-1`` of the iterator."""
    texts: list[str] = []
    for i, text in enumerate(records):
        if i < skip:
            continue
        if i >= count:
            break
        texts.append(text)
        if len(texts) == block:
            yield texts
            texts = []
    if texts:
        yield texts


def _pack(tok, texts: list[str], max_length: int, pad_id: int,  # type: ignore[no-untyped-def]
          batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A block's records, tokenised in one call and truncated to ``max_length``: their ids as
    a right-padded matrix with the rows sorted by the width each is run at, widest first
    (empty records dropped), the rows' lengths and their widths (see
    :data:`PAD_AS_CORPUS_BATCHES`). Only tensor operations follow; no per-record loop."""
    import itertools

    enc = tok(texts, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
    lens = torch.tensor([len(e) for e in enc], dtype=torch.long)
    flat = torch.tensor(list(itertools.chain.from_iterable(enc)), dtype=torch.long)
    longest = int(lens.max()) if len(lens) else 0
    mask = torch.arange(longest)[None, :] < lens[:, None]
    ids = torch.full((len(enc), longest), int(pad_id), dtype=torch.long)
    ids[mask] = flat  # row-major order of the mask is the order of the concatenated records
    if PAD_AS_CORPUS_BATCHES:
        n = len(lens)
        groups = torch.nn.functional.pad(lens, (0, -n % batch_size)).view(-1, batch_size)
        widths = groups.max(1).values.repeat_interleave(batch_size)[:n]
    else:
        widths = lens
    order = torch.argsort(widths * (longest + 1) + lens, descending=True, stable=True)
    keep = order[lens[order] > 0]
    return ids[keep], lens[keep], widths[keep]


def _compute(model: "EditedModel", layers: list[int], keys: dict[int, StatsKey], root: Path, src, samples: int,
             max_length: int, batch_size: int, checkpoint_every: int, progress: bool,
             timing: dict | None = None) -> dict[int, torch.Tensor]:
    """Stream the corpus in blocks: each block is tokenised in one call, sorted by length and
    cut into batches of ``batch_size`` records with little padding; one forward pass per batch
    (stopped after the highest layer) captures every layer's keys, whose products are summed
    in float64 on the layer's device. The batch is halved on out-of-memory (:mod:`kme_editlib.fit`)."""
    from tqdm.auto import tqdm

    dims = {layer: _key_dim(model, layer) for layer in layers}
    where = {layer: model.device_of(layer, "mlp_out") for layer in layers}
    sums = {layer: torch.zeros(dims[layer], dims[layer], dtype=torch.float64, device=where[layer])
            for layer in layers}
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
                sums[layer] = s.to(device=where[layer], dtype=torch.float64)
                done, tokens = n, t

    tok = model.tokenizer
    pad_id = tok.pad_token_id
    if pad_id is None:
        raise KmeError("the tokenizer has no pad token id (load the model through kme, which sets one)")
    dev = model.device
    top = max(layers)
    fit = Fit(batch_size, "key statistics")
    block = batch_size * max(1, min(BLOCK_RECORDS, checkpoint_every) // batch_size)
    mods = {layer: module_at(model, layer, "mlp_out") for layer in layers}
    start_tokens = tokens

    def save(final: bool) -> None:
        for layer in layers:
            meta = {**keys[layer].meta(), "records": str(done), "tokens": str(tokens),
                    "corpus_description": getattr(src, "description", ""), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            if final:
                _save(stats_path(root, keys[layer]), {"mom2": (sums[layer].cpu() / max(tokens, 1)).float()}, meta)
                partials[layer].unlink(missing_ok=True)
            else:
                _save(partials[layer], {"mom2_sum": sums[layer].cpu()}, meta)

    t0 = time.perf_counter()
    with eval_mode(model), torch.no_grad(), \
            tqdm(total=samples, initial=done, desc=f"key statistics ({src.id}, layers {layers})",
                 disable=not progress_enabled(progress), leave=False) as bar:
        last_ckpt = done
        for texts in _read_blocks(src.records(), done, samples, block):
            ids_all, lens, widths = _pack(tok, texts, max_length, pad_id, batch_size)
            counted = [0]

            def run(start: int, stop: int) -> None:
                width = int(widths[start])  # rows are sorted widest first
                ids = ids_all[start:stop, :width].to(dev)
                mask = (torch.arange(width)[None, :] < lens[start:stop, None]).to(dev)
                got: dict[int, torch.Tensor] = {}

                def grab(x: torch.Tensor, layer: int) -> None:
                    got[layer] = x[mask.to(x.device)].to(torch.float64)
                    if layer == top:
                        raise _Enough

                with HookSet() as hs:
                    for layer in layers:
                        hs.on_input(mods[layer], lambda x, layer=layer: grab(x, layer))
                    try:
                        model.model(input_ids=ids, attention_mask=mask.long(), use_cache=False)
                    except _Enough:
                        pass
                for layer in layers:  # committed only once every layer's keys are in hand
                    k = got.pop(layer)
                    sums[layer].addmm_(k.T, k)
                counted[0] += int(lens[start:stop].sum())
                bar.update(stop - start)

            if PAD_AS_CORPUS_BATCHES:  # a batch holds records of one width
                bounds = [0, *(torch.nonzero(widths[1:] != widths[:-1])[:, 0] + 1).tolist(), len(lens)]
                for a, b in zip(bounds[:-1], bounds[1:]):
                    fit.run(b - a, lambda s, e, a=a: run(a + s, a + e))
            else:
                fit.run(len(lens), run)
            tokens += counted[0]
            done += len(texts)
            bar.update(len(texts) - len(lens))  # empty records
            if done - last_ckpt >= checkpoint_every and done < samples:
                save(final=False)
                last_ckpt = done
    seconds = time.perf_counter() - t0
    if tokens == 0:
        raise KmeError(f"corpus {src.id!r} gave no tokens for key statistics", hint="check the corpus")
    save(final=True)
    new = tokens - start_tokens
    rate = new / seconds if seconds > 0 else float("nan")
    if timing is not None:
        timing.update({"tokens": tokens, "tokens_computed": new, "seconds": round(seconds, 3),
                       "tokens_per_s": round(rate, 1), "batch_size": fit.size})
    log.info("stats.computed", corpus=src.id, layers=layers, records=done, tokens=new, seconds=round(seconds, 3),
             tokens_per_s=round(rate, 1), batch_size=fit.size)
    return {layer: (sums[layer].cpu() / tokens).float() for layer in layers}


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
