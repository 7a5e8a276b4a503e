"""LoRA plug-in modules: trained with ``peft`` on a model's projections, kept as plain tensors,
and applied at inference by forward hooks that add exactly what peft's LoRA layer adds.

Training wraps the target modules with peft's LoRA layers (``peft.LoraModel``), trains only
the LoRA factors, reads them out and unloads the wrappers without merging: the model leaves
training with the same modules, the same weights (bit for bit: they were never stepped) and
the same ``requires_grad`` flags. A trained plug-in is then the pair ``A`` (``[rank, in]``),
``B`` (``[out, rank]``) per module and the scaling ``alpha / rank``; :meth:`Adapter.active`
adds ``scaling · B(A(x))`` to each module's output for the duration of a ``with`` block, which
is peft's unmerged LoRA forward in evaluation mode (no dropout).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from kme import EditFailedError, KmeError, ModelLoadError, pad_sequences

if TYPE_CHECKING:  # pragma: no cover
    from kme import EditedModel, EditRequest

__all__ = ["Adapter", "LoraSettings", "train_adapter", "module_features"]

ADAPTER_NAME = "ppa"


@dataclass(frozen=True)
class LoraSettings:
    """What :func:`train_adapter` needs from the editor's params."""

    rank: int
    alpha: float
    dropout: float
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    stop_loss: float
    seed: int


@dataclass
class Adapter:
    """One trained plug-in: per module (qualified name) its LoRA factors, and the scaling."""

    a: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]
    scaling: float
    _placed: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def modules(self) -> list[str]:
        return list(self.a)

    def state(self) -> dict[str, torch.Tensor]:
        """The factors as ``handle.state`` entries (float32, cpu)."""
        out: dict[str, torch.Tensor] = {}
        for name in self.a:
            out[f"lora_A.{name}"] = self.a[name]
            out[f"lora_B.{name}"] = self.b[name]
        return out

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], modules: Sequence[str], scaling: float) -> "Adapter":
        a, b = {}, {}
        for name in modules:
            ka, kb = f"lora_A.{name}", f"lora_B.{name}"
            if ka not in state or kb not in state:
                raise KmeError(f"the PPA edit has no LoRA factors for module {name!r} ({ka}, {kb})",
                               hint="the patch is damaged or was not written by kme-ppa")
            a[name], b[name] = state[ka].float(), state[kb].float()
        return cls(a, b, float(scaling))

    def _factors(self, name: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._placed.get(name)
        if cached is None or cached[0].device != device:
            cached = (self.a[name].to(device), self.b[name].to(device))
            self._placed[name] = cached
        return cached

    @contextlib.contextmanager
    def active(self, model: torch.nn.Module) -> Iterator[None]:
        """Within the block, every adapted module of ``model`` outputs
        ``base(x) + scaling · B(A(x))`` (computed in float32, added in the output's dtype)."""
        hooks = []
        try:
            for name in self.a:
                module = model.get_submodule(name)
                hooks.append(module.register_forward_hook(self._hook(name)))
            yield
        finally:
            for h in hooks:
                h.remove()

    def _hook(self, name: str) -> Any:
        def forward(module: torch.nn.Module, inputs: tuple, output: Any) -> Any:
            x = inputs[0]
            a, b = self._factors(name, x.device)
            delta = (x.float() @ a.T) @ b.T * self.scaling
            out = output[0] if isinstance(output, tuple) else output
            new = out + delta.to(device=out.device, dtype=out.dtype)
            return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

        return forward


def module_features(module: torch.nn.Module, conv1d: bool) -> tuple[int, int]:
    """``(in_features, out_features)`` of a projection (``nn.Linear``, or GPT-2's ``Conv1D``
    whose weight is stored ``[in, out]``)."""
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise KmeError(f"{type(module).__name__} is not a linear projection: it has no 2-D weight",
                       hint="choose FFN projections (mlp_in, mlp_gate, mlp_out) or attn_out")
    return (int(w.shape[0]), int(w.shape[1])) if conv1d else (int(w.shape[1]), int(w.shape[0]))


def _examples(model: "EditedModel", requests: Sequence["EditRequest"]) -> list[tuple[list[int], list[int]]]:
    """Per request: the prompt's token ids (special tokens included) and the new object's."""
    out = []
    for r in requests:
        prompt = r.text
        pids = model.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        tids = model.target_ids(prompt, r.target_new)
        if not pids:
            raise KmeError(f"request {r.case_id!r}: prompt {prompt!r} encodes to no tokens")
        if not tids:
            raise KmeError(f"request {r.case_id!r}: target {r.target_new!r} encodes to no tokens")
        out.append((pids, tids))
    return out


def _loss(model: "EditedModel", examples: list[tuple[list[int], list[int]]],
          rows: list[int]) -> tuple[torch.Tensor, bool]:
    """Mean over the rows of each row's mean negative log-likelihood of its target tokens
    (teacher-forced after the prompt), and whether every target token is the top-1 prediction."""
    dev = model.device
    seqs = [examples[i][0] + examples[i][1] for i in rows]
    ids, mask = pad_sequences(seqs, model.tokenizer.pad_token_id, dev)
    labels = torch.full(ids.shape, -100, dtype=torch.long)
    for r, i in enumerate(rows):
        pids, tids = examples[i]
        labels[r, len(pids) - 1:len(pids) - 1 + len(tids)] = torch.tensor(tids)
    labels = labels.to(dev)
    logits = model.model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
    tok_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100,
                                                 reduction="none")
    valid = labels != -100
    per_row = (tok_loss * valid).sum(1) / valid.sum(1)
    top1 = bool(((logits.argmax(-1) == labels) | ~valid).all())
    return per_row.mean(), top1


@contextlib.contextmanager
def _lora_wrapped(model: "EditedModel", names: list[str], s: LoraSettings) -> Iterator[list[Any]]:
    """peft's LoRA layers around ``names`` for the duration of the block; on exit they are
    unloaded without merging and the model's mode and ``requires_grad`` flags are restored."""
    from peft import LoraConfig, LoraModel

    hf = model.model
    flags = {id(p): p.requires_grad for p in hf.parameters()}
    modes = [(m, m.training) for m in hf.modules()]
    cfg = LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=list(names),
                     fan_in_fan_out=bool(model.layout.conv1d), bias="none", init_lora_weights=True)
    tuner = None
    try:
        try:
            tuner = LoraModel(hf, cfg, ADAPTER_NAME)
        except (ValueError, TypeError, RuntimeError) as e:
            _unwrap(hf, names)  # peft may have wrapped some modules before it failed
            raise ModelLoadError(f"peft cannot put LoRA modules on {names[:3]}...: {str(e)[:300]}",
                                 hint="choose other modules (params.modules) or layers (params.layers)") from None
        wrappers = [m for m in hf.modules() if hasattr(m, "lora_A") and ADAPTER_NAME in getattr(m, "lora_A", {})]
        hf.eval()
        yield wrappers
    finally:
        if tuner is not None:
            tuner.unload()
        for p in hf.parameters():
            p.requires_grad_(flags.get(id(p), p.requires_grad))
        for m, mode in modes:
            m.training = mode


def _unwrap(hf: torch.nn.Module, names: Sequence[str]) -> None:
    """Put back the original module wherever a LoRA wrapper sits at one of ``names``."""
    for name in names:
        try:
            module = hf.get_submodule(name)
        except AttributeError:
            continue
        if hasattr(module, "get_base_layer"):
            parent_name, _, child = name.rpartition(".")
            setattr(hf.get_submodule(parent_name) if parent_name else hf, child, module.get_base_layer())


def train_adapter(model: "EditedModel", names: list[str], requests: Sequence["EditRequest"],
                  s: LoraSettings) -> tuple[Adapter, dict[str, Any]]:
    """Train one LoRA plug-in on ``names`` so that each request's prompt is continued by its
    new object (base weights frozen), as PPA trains a plug-in on an update's QA pairs: AdamW,
    mini-batches of ``batch_size`` for at most ``epochs`` passes, stopping early once every
    target token is the top-1 prediction (dropout off) with mean loss below ``stop_loss``."""
    examples = _examples(model, requests)
    cuda = sorted({d.index or 0 for d in model.devices if d.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):  # seeded init and dropout; the caller's RNG is left as it was
        torch.manual_seed(s.seed)
        return _train(model, names, examples, s)


def _train(model: "EditedModel", names: list[str], examples: list[tuple[list[int], list[int]]],
           s: LoraSettings) -> tuple[Adapter, dict[str, Any]]:
    gen = torch.Generator().manual_seed(s.seed)
    info: dict[str, Any] = {"epochs": 0, "final_loss": None, "top1": False}
    with _lora_wrapped(model, names, s) as wrappers:
        if not wrappers:
            raise ModelLoadError(f"peft wrapped none of the modules {names[:3]}...",
                                 hint="choose FFN projections the model has (params.modules)")
        params = [p for w in wrappers for d in (w.lora_A, w.lora_B) for p in d[ADAPTER_NAME].parameters()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=s.lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=s.weight_decay)
        dropouts = [w.lora_dropout[ADAPTER_NAME] for w in wrappers]
        n = len(examples)
        for epoch in range(s.epochs):
            for d in dropouts:
                d.train()
            order = torch.randperm(n, generator=gen).tolist()
            worst, all_top1 = 0.0, True
            for start in range(0, n, s.batch_size):
                loss, top1 = _loss(model, examples, order[start:start + s.batch_size])
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise EditFailedError(f"the LoRA training loss became {value} at epoch {epoch + 1}",
                                          hint="lower params.lr")
                worst, all_top1 = max(worst, value), all_top1 and top1
                opt.zero_grad()
                loss.backward()
                opt.step()
            last = epoch + 1 == s.epochs
            if not last and not (all_top1 and worst < s.stop_loss):
                continue  # not converged on the training passes: no need to check without dropout
            for d in dropouts:
                d.eval()
            with torch.no_grad():
                loss, top1 = _loss(model, examples, list(range(n)))
            info.update(epochs=epoch + 1, final_loss=round(float(loss), 6), top1=top1)
            if top1 and float(loss) < s.stop_loss:
                break
        a: dict[str, torch.Tensor] = {}
        b: dict[str, torch.Tensor] = {}
        scaling = None
        by_module = {id(m): name for name, m in model.model.named_modules()}
        for w in wrappers:
            name = by_module[id(w)]
            a[name] = w.lora_A[ADAPTER_NAME].weight.detach().float().cpu().clone()
            b[name] = w.lora_B[ADAPTER_NAME].weight.detach().float().cpu().clone()
            scaling = float(w.scaling[ADAPTER_NAME])
    missing = [name for name in names if name not in a]
    if missing:
        raise ModelLoadError(f"peft did not wrap the modules {missing[:3]}",
                             hint="choose FFN projections the model has (params.modules)")
    return Adapter({k: a[k] for k in names}, {k: b[k] for k in names}, float(scaling)), info
