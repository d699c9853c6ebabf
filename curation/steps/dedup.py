"""Exact deduplication: keep the first row with given content, drop the rest.

Rows are compared by the SHA-256 of the canonical JSON of their data columns (after normalisation,
when the recipe normalises first), or of the configured columns. The first occurrence is kept; each
later one is dropped with the reason ``exact duplicate of <content hash of the kept row>``.

The seen-set maps a key hash to the content hash of the row kept for it. It is held by the step for
one run across all batches; it is a plain mapping so that a later cross-shard run can hand every
step one shared store.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import pyarrow as pa

from curation.steps.base import CONTENT_HASH_COLUMN, Filter
from curation.steps.provenance import content_hashes

DUPLICATE_REASON = "exact duplicate"


class ExactDedup(Filter):
    """Drop rows whose content (or ``columns``) equals that of an earlier row."""

    name = "exact_dedup"
    row_local = False

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        seen: MutableMapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.columns = list(columns) if columns is not None else None
        self.seen: MutableMapping[str, str] = seen if seen is not None else {}

    @property
    def params(self) -> dict[str, Any]:
        return {"columns": self.columns}

    def reason_key(self, reason: str) -> str:
        return DUPLICATE_REASON

    def decide(self, batch: pa.RecordBatch) -> tuple[pa.BooleanArray, list[str | None]]:
        row_hashes: list[str] = batch.column(CONTENT_HASH_COLUMN).to_pylist()
        keys = row_hashes if self.columns is None else content_hashes(batch, self.columns)
        keep: list[bool] = []
        reasons: list[str | None] = []
        for key, row_hash in zip(keys, row_hashes, strict=True):
            first = self.seen.get(key)
            if first is None:
                self.seen[key] = row_hash
                keep.append(True)
                reasons.append(None)
            else:
                keep.append(False)
                reasons.append(f"{DUPLICATE_REASON} of {first}")
        return pa.array(keep, pa.bool_()), reasons
