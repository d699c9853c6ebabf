"""Provenance: where each row came from, and a hash of what it says.

:class:`AddProvenance` stamps the rows of one input file with their contributor, file and row
index; :class:`ContentHash` adds ``_content_hash``, the hex SHA-256 of the canonical JSON of a
row's data columns. The pipeline recomputes the hash after steps that change content, so it always
describes the row as written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from curation.errors import CurationError
from curation.steps.base import (
    CONTENT_HASH_COLUMN,
    CONTRIBUTOR_COLUMN,
    SOURCE_FILE_COLUMN,
    SOURCE_ROW_COLUMN,
    Transform,
    data_columns,
)


def canonical_json(row: dict[str, Any]) -> str:
    """``row`` as JSON with sorted keys and no spaces, so equal content gives equal text."""
    return json.dumps(
        row, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_json_default
    )


def content_hashes(batch: pa.RecordBatch, columns: Sequence[str] | None = None) -> list[str]:
    """The hex SHA-256 of the canonical JSON of each row's ``columns`` (default: data columns)."""
    selected = batch.select(list(columns) if columns is not None else data_columns(batch.schema))
    return [
        hashlib.sha256(canonical_json(row).encode("utf-8")).hexdigest()
        for row in selected.to_pylist()
    ]


def _json_default(value: object) -> str:
    # Parquet inputs can hold values JSON has no type for: bytes, dates, decimals.
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class AddProvenance(Transform):
    """Add ``_contributor``, ``_source_file`` and ``_source_row`` to the rows of one input file.

    ``_source_row`` is the 0-based index of the row among the file's rows, counted across batches
    from ``first_row`` (where a shard of the file starts), so the step must see the file's (or
    shard's) batches in order, and only those.
    """

    name = "add_provenance"

    def __init__(self, contributor: str, source_file: str, *, first_row: int = 0) -> None:
        super().__init__()
        self.contributor = contributor
        self.source_file = source_file
        self._next_row = first_row

    @property
    def params(self) -> dict[str, Any]:
        return {"contributor": self.contributor, "source_file": self.source_file}

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        reserved = [name for name in batch.schema.names if name.startswith("_")]
        if reserved:
            raise CurationError(
                f"{self.source_file}: columns {', '.join(reserved)} use the '_' prefix reserved "
                "for provenance"
            )
        rows = batch.num_rows
        start, self._next_row = self._next_row, self._next_row + rows
        columns = [
            *batch.columns,
            pa.array([self.contributor] * rows, pa.string()),
            pa.array([self.source_file] * rows, pa.string()),
            pa.array(range(start, start + rows), pa.int64()),
        ]
        names = [*batch.schema.names, CONTRIBUTOR_COLUMN, SOURCE_FILE_COLUMN, SOURCE_ROW_COLUMN]
        return pa.RecordBatch.from_arrays(columns, names=names)


class ContentHash(Transform):
    """Set ``_content_hash`` to the hash of each row's data columns, adding the column if absent."""

    name = "content_hash"

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        hashes = pa.array(content_hashes(batch), pa.string())
        index = batch.schema.get_field_index(CONTENT_HASH_COLUMN)
        if index >= 0:
            return batch.set_column(index, CONTENT_HASH_COLUMN, hashes)
        return batch.append_column(CONTENT_HASH_COLUMN, hashes)
