"""Tabular profiling: completeness, validity against the inferred type, and uniqueness per column.

:class:`TabularProfile` passes every batch through unchanged and accumulates, per data column:

- ``missing``: nulls and, in text columns, values that are only a missing-value marker (``""``,
  ``?``, ``NA``, ``null``... see ``missing_values``); ``completeness`` = 1 - missing / rows.
- ``type``: of ``boolean``, ``integer``, ``float`` and ``date``, the one most present values
  conform to, if at least ``min_type_share`` do (the more specific on a tie), else ``string``;
  text is tested against each type's pattern, typed columns conform to their own type.
  ``validity`` = conforming / present.
- ``distinct`` values among the present ones; ``uniqueness`` = distinct / present.
- for numeric columns, ``min``, ``max`` and ``mean`` of the conforming values.

The profile is JSON-ready, in :attr:`TabularProfile.details` and so in the run's report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curation.errors import CurationError
from curation.steps.base import Transform, data_columns

MISSING_VALUES = ("", "?", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "none")
TYPES = ("boolean", "integer", "float", "date", "string")
_PATTERNS = {
    "boolean": r"^(?i:true|false|yes|no)$",
    "integer": r"^[+-]?\d+$",
    "float": r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$",
    "date": (
        r"^(?:\d{4}-\d{1,2}-\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
        r"(?:Z|[+-]\d{2}:?\d{2})?)?|\d{1,2}/\d{1,2}/\d{4})$"
    ),
}


@dataclass
class _ColumnProfile:
    arrow_type: str
    rows: int = 0
    missing: int = 0
    conforming: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TYPES, 0))
    distinct: set[int] = field(default_factory=set)
    minimum: float | None = None
    maximum: float | None = None
    total: float = 0.0
    numeric: int = 0

    def add_numbers(self, values: pa.Array) -> None:
        values = pc.drop_null(values)
        if not len(values):
            return
        low, high = pc.min_max(values).values()
        low, high = float(low.as_py()), float(high.as_py())
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)
        self.total += float(pc.sum(values).as_py())
        self.numeric += len(values)

    def summary(self, min_type_share: float) -> dict[str, Any]:
        present = self.rows - self.missing
        kind = "string"
        typed = [
            t for t in TYPES[:-1] if present and self.conforming[t] >= min_type_share * present
        ]
        if typed:
            # The type most values fit; on a tie, the more specific (integer before float).
            kind = max(typed, key=lambda t: (self.conforming[t], -TYPES.index(t)))
        valid = self.conforming[kind] if present else 0
        summary: dict[str, Any] = {
            "arrow_type": self.arrow_type,
            "type": kind,
            "rows": self.rows,
            "missing": self.missing,
            "completeness": _ratio(present, self.rows),
            "valid": valid,
            "validity": _ratio(valid, present),
            "distinct": len(self.distinct),
            "uniqueness": _ratio(len(self.distinct), present),
        }
        if kind in ("integer", "float") and self.numeric:
            summary |= {
                "min": self.minimum,
                "max": self.maximum,
                "mean": round(self.total / self.numeric, 6),
            }
        return summary


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 1.0


class TabularProfile(Transform):
    """Profile ``columns`` (default: every data column) while passing the rows on unchanged."""

    name = "tabular_profile"
    row_local = False

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        missing_values: Sequence[str] = MISSING_VALUES,
        min_type_share: float = 0.9,
    ) -> None:
        super().__init__()
        if not 0 < min_type_share <= 1:
            raise CurationError(f"step {self.name}: min_type_share must be in (0, 1]")
        self.columns = list(columns) if columns is not None else None
        self.missing_values = list(missing_values)
        self.min_type_share = min_type_share
        self._profiles: dict[str, _ColumnProfile] = {}
        self._rows = 0

    @property
    def params(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "missing_values": self.missing_values,
            "min_type_share": self.min_type_share,
        }

    @property
    def details(self) -> dict[str, Any]:
        return {
            "rows": self._rows,
            "columns": {
                name: profile.summary(self.min_type_share)
                for name, profile in self._profiles.items()
            },
        }

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        names = self.columns if self.columns is not None else data_columns(batch.schema)
        missing = [name for name in names if name not in batch.schema.names]
        if missing:
            raise CurationError(f"step {self.name}: no columns named {', '.join(missing)}")
        self._rows += batch.num_rows
        for name in names:
            column = batch.column(name)
            profile = self._profiles.setdefault(name, _ColumnProfile(str(column.type)))
            self._profile(profile, column)
        return batch

    def _profile(self, profile: _ColumnProfile, column: pa.Array) -> None:
        profile.rows += len(column)
        kind = column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            trimmed = pc.utf8_trim_whitespace(column)
            absent = pc.or_kleene(
                pc.is_null(trimmed), pc.is_in(trimmed, pa.array(self.missing_values, kind))
            )
            present = trimmed.filter(pc.invert(pc.fill_null(absent, True)))
            profile.missing += len(column) - len(present)
            for type_name, pattern in _PATTERNS.items():
                profile.conforming[type_name] += (
                    pc.sum(pc.match_substring_regex(present, pattern)).as_py() or 0
                )
            profile.conforming["string"] += len(present)
            numbers = present.filter(pc.match_substring_regex(present, _PATTERNS["float"]))
            profile.add_numbers(pc.cast(numbers, pa.float64()))
            values = present
        else:
            values = pc.drop_null(column)
            if pa.types.is_floating(kind):
                values = values.filter(pc.invert(pc.is_nan(values)))
            profile.missing += len(column) - len(values)
            own = _own_type(kind)
            for type_name in TYPES[TYPES.index(own) :]:
                if type_name != "date" or own == "date":
                    profile.conforming[type_name] += len(values)
            if own in ("integer", "float"):
                profile.add_numbers(pc.cast(values, pa.float64()))
        profile.distinct.update(_value_hashes(values))


def _own_type(kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "float"
    if pa.types.is_temporal(kind):
        return "date"
    return "string"


def _value_hashes(values: pa.Array) -> set[int]:
    kind = values.type
    if pa.types.is_nested(kind):
        return {
            hash(json.dumps(value, sort_keys=True, default=str)) for value in values.to_pylist()
        }
    unique = pc.unique(values)
    return {hash(value) for value in unique.to_pylist()}
