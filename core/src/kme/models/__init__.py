"""Model access: loading Hugging Face causal LMs, architecture layouts, fingerprints."""

from kme.models.layouts import ModelAlias, ModelLayout
from kme.models.loading import ModelSpec, load_model

__all__ = ["ModelAlias", "ModelLayout", "ModelSpec", "load_model"]
