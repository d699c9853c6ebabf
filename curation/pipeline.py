"""Pipelines: a plain list of configured steps over a stream of Arrow record batches.

A recipe names the steps, in order, with their parameters::

    name: default
    steps:
      - normalize
      - step: exact_dedup
        columns: [question]

Bare names resolve to the recipes shipped in ``curation/recipes/`` (:func:`load_recipe`). The
pipeline keeps ``_content_hash`` current: it hashes before the first step that reads the hash and
again after any step that changes content, so output rows and exclusion records carry the hash of
the content as it was at that point.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from curation.errors import CurationError
from curation.steps import STEPS, ContentHash, Filter, Step, StepStats, Transform

__all__ = [
    "STEPS",
    "Filter",
    "Pipeline",
    "Step",
    "StepStats",
    "Transform",
    "load_recipe",
]

_RECIPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def load_recipe(name_or_path: str | Path) -> dict[str, Any]:
    """Load a recipe: a bare name (``"default"``) from ``curation/recipes/``, or a YAML file."""
    if isinstance(name_or_path, Path) or not _RECIPE_NAME.fullmatch(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise CurationError(f"recipe file {path} does not exist")
        return _parse_recipe(path.read_text(encoding="utf-8"), str(path))
    recipe = resources.files("curation") / "recipes" / f"{name_or_path}.yaml"
    if not recipe.is_file():
        raise CurationError(
            f"unknown recipe {name_or_path!r}; known recipes: {', '.join(available_recipes())}"
        )
    return _parse_recipe(recipe.read_text(encoding="utf-8"), name_or_path)


def available_recipes() -> list[str]:
    """The names of the recipes shipped with curation."""
    folder = resources.files("curation") / "recipes"
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


def _parse_recipe(text: str, origin: str) -> dict[str, Any]:
    try:
        recipe = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CurationError(f"recipe {origin} is not valid YAML ({error})") from None
    if not isinstance(recipe, dict):
        raise CurationError(f"recipe {origin} must be a mapping with 'name' and 'steps'")
    return recipe


class Pipeline:
    """Configured steps run in order. Steps hold per-run state, so build one pipeline per run."""

    def __init__(self, steps: Sequence[Step], *, name: str = "custom") -> None:
        self.steps = list(steps)
        self.name = name

    @classmethod
    def from_recipe(cls, recipe: Mapping[str, Any] | Path | str) -> Pipeline:
        """Build the steps a recipe names, from a mapping, a recipe name or a YAML file."""
        if not isinstance(recipe, Mapping):
            recipe = load_recipe(recipe)
        specs = recipe.get("steps")
        if not isinstance(specs, list):
            raise CurationError("a recipe needs 'steps', a list of step names or mappings")
        name = recipe.get("name", "custom")
        return cls([_build_step(spec, index) for index, spec in enumerate(specs)], name=str(name))

    def run(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Chain the steps lazily over ``batches``, keeping ``_content_hash`` current."""
        stream: Iterator[pa.RecordBatch] = iter(batches)
        hashes_current = False
        for step in self.steps:
            if step.needs_content_hash and not hashes_current:
                stream = ContentHash().run(stream)
                hashes_current = True
            stream = step.run(stream)
            hashes_current = hashes_current and not step.changes_content
        if not hashes_current:
            stream = ContentHash().run(stream)
        return stream

    @property
    def exclusions(self) -> list[dict[str, Any]]:
        """The rows every filter dropped, step by step, in the order they were dropped."""
        return [row for step in self.steps if isinstance(step, Filter) for row in step.exclusions]

    def step_reports(self, *, details: bool = False) -> list[dict[str, Any]]:
        """Each step's name, parameters and row counts, for the run's report.

        With ``details``, a step whose :attr:`~curation.steps.Step.details` is not empty has them
        under ``"details"``.
        """
        reports = []
        for step in self.steps:
            report: dict[str, Any] = {
                "step": step.name,
                "params": step.params,
                "rows_in": step.stats.rows_in,
                "rows_out": step.stats.rows_out,
                "dropped_by_reason": dict(step.stats.dropped_by_reason),
            }
            if details and (found := step.details):
                report["details"] = found
            reports.append(report)
        return reports


def _build_step(spec: object, index: int) -> Step:
    if isinstance(spec, str):
        key, params = spec, {}
    elif isinstance(spec, Mapping) and isinstance(spec.get("step"), str):
        key = spec["step"]
        params = {name: value for name, value in spec.items() if name != "step"}
    else:
        raise CurationError(
            f"recipe step {index + 1}: expected a step name or a mapping with a 'step' key, "
            f"got {spec!r}"
        )
    step_class = STEPS.get(key)
    if step_class is None:
        raise CurationError(f"unknown step {key!r}; known steps: {', '.join(sorted(STEPS))}")
    try:
        inspect.signature(step_class).bind(**params)
    except TypeError as error:
        raise CurationError(f"step {key}: {error}") from None
    return step_class(**params)
