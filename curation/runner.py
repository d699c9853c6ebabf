"""Run a recipe over contributed files on local disk, writing a dataset version's files.

This is the whole curation of one version, without the database or the queue: read each input,
stamp its rows with provenance, run the recipe's pipeline, and write the Parquet shards and the
exclusions. The Celery task downloads inputs, calls :func:`run_local` and records the result.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.errors import CurationError
from curation.pipeline import Pipeline
from curation.readers import read_batches, read_schema
from curation.steps import AddProvenance
from curation.writers import (
    ShardInfo,
    version_content_hash,
    write_exclusions,
    write_parquet_shards,
)


@dataclass(frozen=True)
class InputFile:
    """A contributed file: where it is, its format, the name it was uploaded as, and by whom."""

    path: Path
    format: str
    source_name: str
    contributor: str


@dataclass
class CurationResult:
    """What a run wrote and counted.

    ``schema`` is the shards' schema (data columns, then provenance); ``steps`` has one entry per
    recipe step (``step``, ``params``, ``rows_in``, ``rows_out``, ``dropped_by_reason``);
    ``content_hash`` is :func:`~curation.writers.version_content_hash` of the shards; ``report``
    is a JSON-ready summary of all of it, whose steps also carry each step's ``details`` (a
    profile, PII counts, an overlap report) where it has any.
    """

    shards: list[ShardInfo]
    exclusions: ShardInfo | None
    num_rows: int
    rows_in: int
    schema: pa.Schema
    steps: list[dict[str, Any]]
    content_hash: str
    report: dict[str, Any]


def run_local(
    inputs: list[InputFile],
    out_dir: Path,
    *,
    recipe: Mapping[str, Any] | Path | str,
    rows_per_shard: int = 50_000,
    batch_size: int = 10_000,
) -> CurationResult:
    """Curate ``inputs`` with ``recipe`` (a mapping, a recipe name or a YAML file) into ``out_dir``.

    All inputs must have the same data columns with compatible types (a column that is all null
    in one file takes its type from the others). Raises :class:`CurationError` (or its subclass
    :class:`~curation.errors.InvalidInputError`) naming the file when they do not, or when a file
    is invalid.
    """
    if not inputs:
        raise CurationError("no input files to curate")
    pipeline = Pipeline.from_recipe(recipe)
    schema = _common_schema(inputs, batch_size)
    provenance = [AddProvenance(item.contributor, item.source_name) for item in inputs]

    def stamped_rows() -> Iterator[pa.RecordBatch]:
        for item, step in zip(inputs, provenance, strict=True):
            batches = read_batches(
                item.path,
                format=item.format,
                batch_size=batch_size,
                source_name=item.source_name,
                schema=schema,
            )
            yield from step.run(batches)

    shards = write_parquet_shards(
        pipeline.run(stamped_rows()), out_dir, rows_per_shard=rows_per_shard
    )
    exclusions = write_exclusions(pipeline.exclusions, out_dir)
    rows_in = sum(step.stats.rows_out for step in provenance)
    num_rows = sum(shard.num_rows for shard in shards)
    steps = pipeline.step_reports()
    content_hash = version_content_hash(shards)
    report = {
        "recipe": pipeline.name,
        "rows_in": rows_in,
        "rows_out": num_rows,
        "rows_dropped": rows_in - num_rows,
        "inputs": [
            {
                "source_file": item.source_name,
                "contributor": item.contributor,
                "format": item.format,
                "rows": step.stats.rows_out,
            }
            for item, step in zip(inputs, provenance, strict=True)
        ],
        "steps": pipeline.step_reports(details=True),
        "shards": [asdict(shard) for shard in shards],
        "exclusions": asdict(exclusions) if exclusions else None,
        "content_hash": content_hash,
    }
    return CurationResult(
        shards=shards,
        exclusions=exclusions,
        num_rows=num_rows,
        rows_in=rows_in,
        schema=pq.read_schema(out_dir / shards[0].path),
        steps=steps,
        content_hash=content_hash,
        report=report,
    )


def _common_schema(inputs: list[InputFile], batch_size: int) -> pa.Schema:
    """The one schema every input is read as; raise if the inputs' columns disagree."""
    first = inputs[0]
    common = read_schema(
        first.path, format=first.format, source_name=first.source_name, batch_size=batch_size
    )
    for item in inputs[1:]:
        schema = read_schema(
            item.path, format=item.format, source_name=item.source_name, batch_size=batch_size
        )
        missing = [name for name in common.names if name not in schema.names]
        unexpected = [name for name in schema.names if name not in common.names]
        if missing or unexpected:
            problems = []
            if missing:
                problems.append(f"lacks {', '.join(missing)}")
            if unexpected:
                problems.append(f"has extra {', '.join(unexpected)}")
            raise CurationError(
                f"{item.source_name}: columns differ from {first.source_name}: "
                f"{'; '.join(problems)}"
            )
        fields = []
        differing = []
        for field in common:
            other = schema.field(field.name)
            try:
                fields.append(pa.unify_schemas([pa.schema([field]), pa.schema([other])]).field(0))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                differing.append(f"{field.name} ({other.type} here, {field.type} there)")
        if differing:
            raise CurationError(
                f"{item.source_name}: column types differ from {first.source_name}: "
                f"{', '.join(differing)}"
            )
        common = pa.schema(fields)
    return common
