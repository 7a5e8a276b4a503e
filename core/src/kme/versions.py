"""Versions of kme and of every installed kme plugin distribution, for manifests and summaries."""

from __future__ import annotations

import platform


def package_versions() -> dict[str, str]:
    from importlib_metadata import distributions

    out = {"python": platform.python_version()}
    for dist in distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name in ("kme", "torch", "transformers", "pluggy", "pydantic") or name.startswith("kme-"):
            out[name] = dist.version
    return dict(sorted(out.items()))
