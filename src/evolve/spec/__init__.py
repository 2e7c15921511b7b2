"""experience.yaml: its JSON Schema, loading with line:col locations, checks, typed model."""

from evolve.spec.loader import SPEC_FILENAME, load_experience, resolve_spec_path, schema_text
from evolve.spec.model import Edge, Experience, Loop, Node, OnError, Pipeline, StateField

__all__ = [
    "SPEC_FILENAME",
    "Edge",
    "Experience",
    "Loop",
    "Node",
    "OnError",
    "Pipeline",
    "StateField",
    "load_experience",
    "resolve_spec_path",
    "schema_text",
]
