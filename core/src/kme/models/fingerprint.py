"""A base-model fingerprint that patches and statistics caches are keyed by."""

from __future__ import annotations

import hashlib
import json

import torch

__all__ = ["model_fingerprint"]

_IGNORED_CONFIG_KEYS = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "architectures"}


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over the config, every parameter's name/shape/dtype, its float64 sum and its
    first and last 2,048 values. Cheap enough for large models, and any edit a method makes
    changes it."""
    h = hashlib.sha256()
    cfg = getattr(model, "config", None)
    if cfg is not None:
        d = {k: v for k, v in cfg.to_dict().items() if k not in _IGNORED_CONFIG_KEYS}
        h.update(json.dumps(d, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, p in model.state_dict().items():
            h.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
            flat = p.detach().reshape(-1)
            if flat.numel() == 0:
                continue
            h.update(repr(float(flat.sum(dtype=torch.float64))).encode())
            for part in (flat[:2048], flat[-2048:]):
                h.update(part.to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:32]
