"""Pipelines: the YAML spec (``spec``), its validation against installed plugins, and the runner."""

from kme.pipeline.runner import run_pipeline
from kme.pipeline.spec import PipelineSpec, load_pipeline, parse_pipeline, validate_components

__all__ = ["PipelineSpec", "load_pipeline", "parse_pipeline", "validate_components", "run_pipeline"]
