"""What a buyer may look at before licensing: a few rows, and statistics of every column.

Both come from the listed version's Parquet shards, are computed once per version and cached
beside the shards in the object store (``preview-v1.json``, ``statistics-v1.json``), and only
ever show data columns (provenance columns name contributors' files). Preview rows pass
curation's PII redaction (e-mail addresses, phone numbers, identity and bank-card numbers, IP
addresses become typed placeholders) and long text is cut to ``TEXT_LIMIT`` characters.

Anyone authenticated may look at a listed listing; an unlisted one only its dataset's owners and
operators (others get 404, as for a missing one). A paid listing is limited for callers that
neither own the dataset, operate the exchange, nor hold a license of the version: at most
``PAID_PREVIEW_ROWS`` rows, and statistics without exact extremes (min and max) or top values,
with the mean rounded to three significant digits. Free listings show everything.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import math
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from curation.steps.base import data_columns
from curation.steps.pii import redact
from infra.storage import ObjectNotFoundError, ObjectStore
from marketplace.errors import NotFoundError
from marketplace.models import Dataset, DatasetVersion, Listing
from marketplace.services import datasets
from marketplace.services.organizations import Principal

PREVIEW_ROWS = 20  # the most rows anyone sees, and what the cache holds
PAID_PREVIEW_ROWS = 5  # the most for a paid listing the caller has not licensed
TEXT_LIMIT = 300  # characters of one text value in a preview
TOP_VALUE_LIMIT = 100  # characters of one top value in the statistics
LOW_CARDINALITY = 50  # a text column with at most this many values lists its top values
TOP_VALUES = 10
LENGTH_EDGES = (0, 16, 64, 256, 1024, 4096, 16384)  # text length bins, in characters
SKETCH_SIZE = 4096  # hashes kept for the distinct-count estimate (k minimum values)
CACHE_VERSION = "v1"
_TRACKED_VALUES = 1000  # distinct values counted exactly before a column counts as high-card.


def _access(session: Session, *, actor: Principal, listing_id: str) -> tuple[Listing, bool]:
    """The listing, and whether the caller sees it limited (paid, and not licensed or owned)."""
    listing = session.get(Listing, listing_id)
    if listing is None:
        raise NotFoundError("listing", listing_id)
    version = session.get(DatasetVersion, listing.version_id)
    assert version is not None
    dataset = session.get(Dataset, version.dataset_id)
    assert dataset is not None
    insider = actor.is_operator or datasets.is_owner(session, dataset, actor.organization_id)
    if listing.status != "listed" and not insider:
        raise NotFoundError("listing", listing_id)
    licensed = any(
        datasets.active_entitlement(
            session, organization_id=actor.organization_id, version_id=version.id, use=use
        )
        is not None
        for use in ("download", "training")
    )
    return listing, listing.price_amount > 0 and not (insider or licensed)


def _cache_key(version: DatasetVersion, name: str) -> str:
    return f"datasets/{version.dataset_id}/versions/{version.id}/{name}-{CACHE_VERSION}.json"


def _cached(store: ObjectStore, key: str) -> dict[str, Any] | None:
    try:
        cached: dict[str, Any] = json.loads(store.get_bytes(key))
    except ObjectNotFoundError:
        return None
    return cached


def _shards(version: DatasetVersion) -> list[dict[str, Any]]:
    return sorted(version.files, key=lambda file: str(file["path"]))


# Preview ----------------------------------------------------------------------------------------


def preview(
    session: Session, *, store: ObjectStore, actor: Principal, listing_id: str, rows: int
) -> dict[str, Any]:
    """Up to ``rows`` rows of the listing's version (fewer for a paid, unlicensed listing)."""
    listing, limited = _access(session, actor=actor, listing_id=listing_id)
    version = session.get(DatasetVersion, listing.version_id)
    assert version is not None
    session.commit()  # end the read transaction before reading shards
    key = _cache_key(version, "preview")
    sample = _cached(store, key)
    if sample is None:
        sample = _sample(store, version)
        store.put_bytes(json.dumps(sample).encode(), key=key, content_type="application/json")
    limit = PAID_PREVIEW_ROWS if limited else PREVIEW_ROWS
    shown = sample["rows"][: min(rows, limit)]
    redactions: Counter[str] = Counter()
    truncated = 0
    for row in sample["notes"][: len(shown)]:
        redactions.update(row["redactions"])
        truncated += row["truncated"]
    return {
        "listing_id": listing.id,
        "version_id": version.id,
        "columns": sample["columns"],
        "rows": shown,
        "limit": limit,
        "limited": limited,
        "redactions": dict(sorted(redactions.items())),
        "truncated_values": truncated,
    }


class _StoredFile(io.RawIOBase):
    """A seekable, read-only view of one stored object, read by byte ranges: Parquet's footer
    and the first row group are all a preview needs of a shard."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        super().__init__()
        self._store, self._key = store, key
        self._size = store.stat(key).size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._position >= self._size or not len(view):
            return 0
        end = min(self._position + len(view), self._size) - 1
        data = self._store.get_range(self._key, self._position, end)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


def _sample(store: ObjectStore, version: DatasetVersion) -> dict[str, Any]:
    """The first ``PREVIEW_ROWS`` rows of the version's data columns, redacted and cut."""
    rows: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    columns: list[str] = []
    for file in _shards(version):
        with io.BufferedReader(_StoredFile(store, str(file["key"])), 1 << 20) as handle:
            parquet = pq.ParquetFile(handle)
            columns = data_columns(parquet.schema_arrow)
            for batch in parquet.iter_batches(batch_size=PREVIEW_ROWS, columns=columns):
                for raw in batch.to_pylist():
                    redactions: Counter[str] = Counter()
                    truncated = [0]
                    rows.append(
                        {name: _clean(raw[name], redactions, truncated) for name in columns}
                    )
                    notes.append({"redactions": dict(redactions), "truncated": truncated[0]})
                    if len(rows) == PREVIEW_ROWS:
                        return {"columns": columns, "rows": rows, "notes": notes}
    return {"columns": columns, "rows": rows, "notes": notes}


def _clean(
    value: Any, redactions: Counter[str], truncated: list[int], limit: int = TEXT_LIMIT
) -> Any:
    """A JSON-ready copy of ``value`` with personal data redacted and long text cut."""
    if isinstance(value, str):
        text, counts = redact(value)
        redactions.update(counts)
        if len(text) > limit:
            truncated[0] += 1
            return text[:limit] + "…"
        return text
    if isinstance(value, dict):
        return {str(k): _clean(v, redactions, truncated, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item, redactions, truncated, limit) for item in value[:PREVIEW_ROWS]]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dt.date | dt.time | dt.timedelta | decimal.Decimal):
        return str(value)
    return value


# Statistics -------------------------------------------------------------------------------------


def statistics(
    session: Session, *, store: ObjectStore, actor: Principal, listing_id: str
) -> dict[str, Any]:
    """Per-column statistics of the listing's version (limited for a paid, unlicensed one)."""
    listing, limited = _access(session, actor=actor, listing_id=listing_id)
    version = session.get(DatasetVersion, listing.version_id)
    assert version is not None
    session.commit()  # end the read transaction before reading shards
    key = _cache_key(version, "statistics")
    computed = _cached(store, key)
    if computed is None:
        computed = column_statistics(store, version)
        store.put_bytes(json.dumps(computed).encode(), key=key, content_type="application/json")
    columns = [_limited(column) if limited else column for column in computed["columns"]]
    return {
        "listing_id": listing.id,
        "version_id": version.id,
        "num_rows": computed["num_rows"],
        "limited": limited,
        "columns": columns,
    }


def _limited(column: dict[str, Any]) -> dict[str, Any]:
    """What a paid listing shows before licensing: no extremes, no values, a rounded mean."""
    shown = {**column, "min": None, "max": None, "top_values": None}
    if shown.get("mean") is not None:
        shown["mean"] = float(f"{shown['mean']:.3g}")
    return shown


def column_statistics(store: ObjectStore, version: DatasetVersion) -> dict[str, Any]:
    """Statistics of every data column over all of the version's shards, read batch by batch."""
    accumulators: dict[str, _Column] = {}
    num_rows = 0
    with tempfile.TemporaryDirectory(prefix="aidx-statistics-") as scratch:
        for index, file in enumerate(_shards(version)):
            local = Path(scratch) / f"{index:05d}.parquet"
            store.download_to(str(file["key"]), local)
            parquet = pq.ParquetFile(local)
            names = data_columns(parquet.schema_arrow)
            for name in names:
                field = parquet.schema_arrow.field(name)
                accumulators.setdefault(name, _Column(name, field.type))
            for batch in parquet.iter_batches(batch_size=65_536, columns=names):
                num_rows += batch.num_rows
                for name in names:
                    accumulators[name].add(batch.column(name))
            local.unlink()
    return {
        "num_rows": num_rows,
        "columns": [column.result(num_rows) for column in accumulators.values()],
    }


def _kind(data_type: pa.DataType) -> str:
    if pa.types.is_boolean(data_type):
        return "boolean"
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        return "number"
    if pa.types.is_decimal(data_type):
        return "number"
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return "text"
    return "other"


class _Column:
    """One column's running statistics; ``add`` takes each batch's array."""

    def __init__(self, name: str, data_type: pa.DataType) -> None:
        self.name, self.type, self.kind = name, data_type, _kind(data_type)
        self.nulls = 0
        self.sketch = np.empty(0, np.uint64)
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.total = 0.0
        self.count = 0
        self.trues = 0
        self.lengths = np.zeros(len(LENGTH_EDGES), np.int64)
        self.values: Counter[str] | None = Counter() if self.kind == "text" else None

    def add(self, array: pa.Array) -> None:
        self.nulls += array.null_count
        present = array.drop_null()
        if pa.types.is_floating(self.type):
            present = present.filter(pc.invert(pc.is_nan(present)))
        if not len(present):
            return
        self._sketch(present)
        if self.kind == "number":
            as_float = present.cast(pa.float64())
            extremes = pc.min_max(as_float)
            low, high = extremes["min"].as_py(), extremes["max"].as_py()
            self.minimum = low if self.minimum is None else min(self.minimum, low)
            self.maximum = high if self.maximum is None else max(self.maximum, high)
            self.total += pc.sum(as_float).as_py() or 0.0
            self.count += len(present)
        elif self.kind == "boolean":
            self.trues += pc.sum(present.cast(pa.int64())).as_py() or 0
            self.count += len(present)
        elif self.kind == "text":
            lengths = pc.utf8_length(present).to_numpy(zero_copy_only=False)
            bins = np.searchsorted(np.asarray(LENGTH_EDGES[1:]), lengths, side="right")
            self.lengths += np.bincount(bins, minlength=len(LENGTH_EDGES))
            self.total += float(lengths.sum())
            self.count += len(present)
            if self.values is not None:
                for entry in pc.value_counts(present).to_pylist():
                    self.values[entry["values"]] += entry["counts"]
                if len(self.values) > _TRACKED_VALUES:
                    self.values = None

    def _sketch(self, present: pa.Array) -> None:
        if self.kind in ("number", "boolean", "text"):
            values = present.to_numpy(zero_copy_only=False)
        else:
            values = np.asarray([json.dumps(v, default=str) for v in present.to_pylist()], object)
        hashes = pd.util.hash_array(np.asarray(values), categorize=False)
        self.sketch = np.unique(np.concatenate([self.sketch, hashes]))[:SKETCH_SIZE]

    def _distinct(self) -> int:
        if len(self.sketch) < SKETCH_SIZE:
            return len(self.sketch)
        return round((SKETCH_SIZE - 1) / (float(self.sketch[-1]) / 2.0**64))

    def result(self, num_rows: int) -> dict[str, Any]:
        result: dict[str, Any] = {
            "name": self.name,
            "type": str(self.type),
            "kind": self.kind,
            "null_fraction": self.nulls / num_rows if num_rows else 0.0,
            "distinct_estimate": self._distinct(),
        }
        if self.kind == "number" and self.count:
            result |= {"min": self.minimum, "max": self.maximum, "mean": self.total / self.count}
        elif self.kind == "boolean" and self.count:
            result["true_fraction"] = self.trues / self.count
        elif self.kind == "text" and self.count:
            result["mean"] = self.total / self.count
            result["length_histogram"] = [
                {
                    "min_length": LENGTH_EDGES[index],
                    "max_length": LENGTH_EDGES[index + 1] - 1
                    if index + 1 < len(LENGTH_EDGES)
                    else None,
                    "count": int(count),
                }
                for index, count in enumerate(self.lengths)
            ]
            if self.values is not None and len(self.values) <= LOW_CARDINALITY:
                unused: Counter[str] = Counter()
                result["top_values"] = [
                    {
                        "value": _clean(value, unused, [0], TOP_VALUE_LIMIT),
                        "count": count,
                        "fraction": count / num_rows,
                    }
                    for value, count in self.values.most_common(TOP_VALUES)
                ]
        return result
