"""The step interface: configured once, then batches in, batches out.

Shaped after datatrove's ``PipelineStep``: a step is one method over a stream, and a filter writes
only its decision while the base class applies it, counts, and records why each row was dropped.

Rows carry provenance columns, whose names start with ``_``; every other column is data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from curation.errors import CurationError

CONTRIBUTOR_COLUMN = "_contributor"
SOURCE_FILE_COLUMN = "_source_file"
SOURCE_ROW_COLUMN = "_source_row"
CONTENT_HASH_COLUMN = "_content_hash"
PROVENANCE_COLUMNS = (
    CONTRIBUTOR_COLUMN,
    SOURCE_FILE_COLUMN,
    SOURCE_ROW_COLUMN,
    CONTENT_HASH_COLUMN,
)


def data_columns(schema: pa.Schema) -> list[str]:
    """The names of the data columns of ``schema``: those not starting with ``_``."""
    return [name for name in schema.names if not name.startswith("_")]


@dataclass
class StepStats:
    """Row counts of one step over a run."""

    rows_in: int = 0
    rows_out: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)


class Step(ABC):
    """One configured stage of a pipeline.

    Subclasses take their configuration in ``__init__`` (call ``super().__init__()``), set
    ``name`` (the key recipes use), and report their configuration in :attr:`params`. A step holds
    state for one run; build a fresh one for the next.
    """

    name: ClassVar[str]
    #: Whether the step rewrites data values, which makes earlier content hashes stale.
    changes_content: ClassVar[bool] = False
    #: Whether the step reads the ``_content_hash`` column, so it must be current before it.
    needs_content_hash: ClassVar[bool] = False
    #: Whether each row's fate depends on that row alone, so shards can run the step apart and
    #: their counts add up. Steps that compare rows (dedup) or summarise all of them (a profile)
    #: set False; executors run them once over every shard, in source order.
    row_local: ClassVar[bool] = True

    def __init__(self) -> None:
        self.stats = StepStats()

    @property
    def params(self) -> dict[str, Any]:
        """The step's configuration as JSON-ready values, for reports."""
        return {}

    @property
    def details(self) -> dict[str, Any]:
        """What the step found beyond row counts (a profile, PII counts...), JSON-ready.

        Empty for most steps; the run's report carries it next to the step's counts.
        """
        return {}

    @abstractmethod
    def run(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Consume ``batches`` lazily and yield the step's output."""

    def merge_details(self, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The :attr:`details` of a whole run from those of its shards, in source order.

        The default adds numbers and merges mappings key by key, which suits counts; a step whose
        details hold anything else overrides it.
        """
        merged: dict[str, Any] = {}
        for part in parts:
            merged = _add(merged, part)
        return merged


def _add(total: Mapping[str, Any], part: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(total)
    for key, value in part.items():
        known = result.get(key)
        if known is None:
            result[key] = value
        elif isinstance(value, Mapping) and isinstance(known, Mapping):
            result[key] = _add(known, value)
        elif isinstance(value, int | float) and isinstance(known, int | float):
            result[key] = known + value
        else:
            result[key] = value
    return result


class Transform(Step):
    """A step that maps each batch to one batch of the same rows; it implements ``transform``."""

    def run(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.stats.rows_in += batch.num_rows
            result = self.transform(batch)
            self.stats.rows_out += result.num_rows
            yield result

    @abstractmethod
    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Return ``batch`` transformed."""


class Filter(Step):
    """A step that keeps some rows; subclasses implement only :meth:`decide`.

    Every dropped row is recorded in :attr:`exclusions` with its provenance, so a contributor can
    be told which of their rows did not make it and why.
    """

    needs_content_hash = True

    def __init__(self) -> None:
        super().__init__()
        self.exclusions: list[dict[str, Any]] = []

    @abstractmethod
    def decide(self, batch: pa.RecordBatch) -> tuple[pa.BooleanArray, list[str | None]]:
        """Return a keep-mask for ``batch`` and, for each dropped row, the reason (else None)."""

    def reason_key(self, reason: str) -> str:
        """The key under which ``reason`` is counted; override when reasons carry details."""
        return reason

    def run(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        dropped_by_reason: Counter[str] = Counter(self.stats.dropped_by_reason)
        for batch in batches:
            self.stats.rows_in += batch.num_rows
            keep, reasons = self.decide(batch)
            if len(keep) != batch.num_rows or len(reasons) != batch.num_rows:
                raise CurationError(
                    f"step {self.name}: decided on {len(keep)} rows with {len(reasons)} reasons "
                    f"for a batch of {batch.num_rows}"
                )
            if keep.null_count:
                raise CurationError(f"step {self.name}: the keep-mask has nulls")
            missing = [name for name in PROVENANCE_COLUMNS if name not in batch.schema.names]
            if missing:
                raise CurationError(
                    f"step {self.name}: rows lack the provenance columns {', '.join(missing)}"
                )
            dropped = batch.filter(pc.invert(keep)).select(
                [CONTENT_HASH_COLUMN, SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN]
            )
            dropped_reasons = [
                reason for reason, kept in zip(reasons, keep.to_pylist(), strict=True) if not kept
            ]
            for row, reason in zip(dropped.to_pylist(), dropped_reasons, strict=True):
                if reason is None:
                    raise CurationError(f"step {self.name}: dropped a row without a reason")
                self.exclusions.append(
                    {
                        "step": self.name,
                        "reason": reason,
                        "content_hash": row[CONTENT_HASH_COLUMN],
                        "source_file": row[SOURCE_FILE_COLUMN],
                        "source_row": row[SOURCE_ROW_COLUMN],
                    }
                )
                dropped_by_reason[self.reason_key(reason)] += 1
            self.stats.dropped_by_reason = dict(dropped_by_reason)
            kept_batch = batch.filter(keep)
            self.stats.rows_out += kept_batch.num_rows
            if kept_batch.num_rows:
                yield kept_batch
