"""Versions of kme and of every installed kme plugin distribution, for manifests and summaries.

Keys are distribution names: the kernel is ``kme-core`` (its import package and CLI are ``kme``;
PyPI's ``kme`` is an unrelated project).
"""

from __future__ import annotations

import platform


def package_versions() -> dict[str, str]:
    from importlib_metadata import distributions

    out = {"python": platform.python_version()}
    for dist in distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name in ("torch", "transformers", "pluggy", "pydantic") or name.startswith("kme-"):
            out[name] = dist.version
    return dict(sorted(out.items()))
