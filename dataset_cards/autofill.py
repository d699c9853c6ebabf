"""Fill a dataset card from what curation already knows: the Arrow schema, the files, the steps.

Everything here is a pure function over values; the caller reads the schema and the file digests.
What curation cannot know (motivation, lawful source, biases, intended uses...) is left empty and
reported by :func:`missing_fields` for a person to provide.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import pyarrow as pa
from pydantic import TypeAdapter, ValidationError

from dataset_cards.errors import CardError, InvalidCardError
from dataset_cards.schema import (
    HUMAN_FIELDS,
    Config,
    DataFile,
    DataFiles,
    DatasetCard,
    DatasetInfo,
    Feature,
    PreprocessingStep,
    SplitInfo,
    is_blank,
    size_category,
)

# Split keywords, as the Hugging Face Hub infers splits from file and folder names.
_SPLIT_KEYWORDS: dict[str, str] = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
    "eval": "test",
    "evaluation": "test",
}
T = TypeVar("T")
_FILES = TypeAdapter(list[DataFile])
_STEPS = TypeAdapter(list[PreprocessingStep])
_CANONICAL_SPLIT_ORDER = ("train", "validation", "test")
_PATH_TOKEN_RE = re.compile(r"[/._\-\s0-9]+")

__all__ = [
    "HUMAN_FIELDS",
    "card_from_curation",
    "describe_validation_error",
    "facts_from_report",
    "feature_from_arrow",
    "missing_fields",
    "split_for_path",
]


def feature_from_arrow(name: str | None, arrow_type: pa.DataType) -> Feature:
    """Describe one Arrow field (recursively, for lists and structs) as a card feature."""
    where = name if name is not None else "<list element>"
    t = arrow_type
    if pa.types.is_dictionary(t):
        return feature_from_arrow(name, t.value_type)
    if pa.types.is_fixed_size_list(t):
        return Feature(name=name, item=feature_from_arrow(None, t.value_type), length=t.list_size)
    if (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
    ):
        return Feature(name=name, item=feature_from_arrow(None, t.value_type))
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        members = [feature_from_arrow(member.name, member.type) for member in fields]
        if not members:
            raise CardError(f"column {where!r}: an empty struct has no Hugging Face feature type")
        return Feature(name=name, struct=members)
    return Feature(name=name, dtype=_value_dtype(where, t))


def _value_dtype(where: str, t: pa.DataType) -> str:
    """The Hugging Face ``Value`` dtype for a scalar Arrow type."""
    if pa.types.is_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_floating(t):
        return f"float{t.bit_width}"  # Arrow prints these as halffloat, float and double
    if pa.types.is_date32(t):
        return "date32"
    if pa.types.is_date64(t):
        return "date64"
    if (
        pa.types.is_null(t)
        or pa.types.is_boolean(t)
        or pa.types.is_integer(t)
        or pa.types.is_time(t)
        or pa.types.is_timestamp(t)
        or pa.types.is_duration(t)
        or pa.types.is_decimal(t)
        or pa.types.is_large_string(t)
        or pa.types.is_large_binary(t)
    ):
        return str(t)
    raise CardError(f"column {where!r}: Arrow type {t} has no Hugging Face feature type")


def split_for_path(path: str) -> str:
    """The split a data file belongs to, inferred from its name as the Hub does (default train)."""
    for token in _PATH_TOKEN_RE.split(path.lower()):
        if token in _SPLIT_KEYWORDS:
            return _SPLIT_KEYWORDS[token]
    return "train"


def _split_order(name: str) -> tuple[int, str]:
    known = _CANONICAL_SPLIT_ORDER
    return (known.index(name), "") if name in known else (len(known), name)


def card_from_curation(
    *,
    dataset_id: str,
    version_id: str,
    name: str,
    description: str,
    license: str | None,
    provider: str,
    schema: pa.Schema,
    files: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    content_hash: str,
    language: list[str] | None = None,
    task_categories: list[str] | None = None,
    task_ids: list[str] | None = None,
    co_contributors: list[str] | None = None,
    contributors: Sequence[str] | None = None,
    source_datasets: list[str] | None = None,
    annotations_creators: list[str] | None = None,
    tags: list[str] | None = None,
    license_name: str | None = None,
    license_link: str | None = None,
    version_number: int | None = None,
    date_published: dt.date | None = None,
    pii_counts: Mapping[str, int] | None = None,
    review: Mapping[str, Any] | None = None,
    quality_scores: Mapping[str, float] | None = None,
) -> DatasetCard:
    """Build the card of one curated dataset version.

    ``files`` are ``{"path", "sha256", "num_bytes", "num_rows"}`` (an optional ``"split"`` key
    overrides the split inferred from the path); ``steps`` are the curation report's
    ``{"step", "params", "rows_in", "rows_out", "dropped_by_reason"}``. ``contributors`` are the
    organisations the rows came from (their provenance); each one other than ``provider`` is a
    co-contributor. ``pii_counts`` (detections per PII type), ``review`` (a
    :class:`~dataset_cards.schema.ReviewSummary` as a mapping) and ``quality_scores`` are left
    out of the card when curation did not measure them. Raises :class:`InvalidCardError` naming
    the field when a value breaks the card schema.
    """
    features = [feature_from_arrow(field.name, field.type) for field in schema]
    data_files = _validated(_FILES, "files", [_without(f, "split") for f in files])
    preprocessing = _validated(_STEPS, "preprocessing", steps)
    splits_of = [
        str(raw.get("split") or split_for_path(parsed.path))
        for raw, parsed in zip(files, data_files, strict=True)
    ]
    named = [*(co_contributors or []), *(contributors or [])]
    co = [c for c in dict.fromkeys(named) if c != provider]
    try:
        splits, configs = _splits_and_configs(data_files, splits_of)
        stored_bytes = sum(f.num_bytes for f in data_files)
        return DatasetCard.model_validate(
            {
                "pretty_name": name,
                "license": license,
                "license_name": license_name,
                "license_link": license_link,
                "language": list(language or []),
                "task_categories": list(task_categories or []),
                "task_ids": list(task_ids or []),
                "size_categories": [size_category(sum(s.num_examples for s in splits))],
                "source_datasets": list(source_datasets or []),
                "annotations_creators": list(annotations_creators or []),
                "tags": list(tags or []),
                "configs": configs,
                "dataset_info": DatasetInfo(
                    features=features,
                    splits=splits,
                    download_size=stored_bytes,
                    dataset_size=sum(s.num_bytes for s in splits),
                ),
                "dataset_id": dataset_id,
                "version_id": version_id,
                "version_number": version_number,
                "date_published": date_published,
                "content_hash": content_hash,
                "provider": provider,
                "co_contributors": co,
                "files": data_files,
                "preprocessing": preprocessing,
                "pii_counts": None if pii_counts is None else dict(pii_counts),
                "review": None if review is None else dict(review),
                "quality_scores": None if quality_scores is None else dict(quality_scores),
                "description": description,
            }
        )
    except ValidationError as exc:
        raise InvalidCardError(describe_validation_error(exc)) from exc


def facts_from_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`card_from_curation` a curation run's report carries.

    Reads ``steps``, the contributors of ``inputs`` and, when curation measured them,
    ``pii_counts`` (``{type: count}``), ``review`` and ``quality_scores`` (``{name: score}``).
    """
    facts: dict[str, Any] = {"steps": list(report.get("steps") or [])}
    inputs = report.get("inputs") or []
    contributors = [
        str(i["contributor"]) for i in inputs if isinstance(i, Mapping) and i.get("contributor")
    ]
    if contributors:
        facts["contributors"] = list(dict.fromkeys(contributors))
    for key in ("pii_counts", "review", "quality_scores"):
        if report.get(key) is not None:
            facts[key] = report[key]
    return facts


def _without(entry: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != key}


def _splits_and_configs(
    data_files: Sequence[DataFile], splits_of: Sequence[str]
) -> tuple[list[SplitInfo], list[Config]]:
    paths: dict[str, list[str]] = {}
    rows: dict[str, int] = {}
    stored: dict[str, int] = {}
    for data_file, split in zip(data_files, splits_of, strict=True):
        paths.setdefault(split, []).append(data_file.path)
        rows[split] = rows.get(split, 0) + data_file.num_rows
        stored[split] = stored.get(split, 0) + data_file.num_bytes
    order = sorted(paths, key=_split_order)
    splits = [SplitInfo(name=s, num_examples=rows[s], num_bytes=stored[s]) for s in order]
    if not order:
        return splits, []
    config = Config(data_files=[DataFiles(split=s, path=paths[s]) for s in order])
    return splits, [config]


def _validated(adapter: TypeAdapter[list[T]], field: str, value: object) -> list[T]:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise InvalidCardError(describe_validation_error(exc, prefix=(field,))) from exc


def describe_validation_error(exc: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    """The broken fields, each as ``dotted.path: message``."""
    parts = []
    for error in exc.errors():
        field = ".".join(str(part) for part in (*prefix, *error["loc"]))
        parts.append(f"{field}: {error['msg']}" if field else error["msg"])
    return "invalid dataset card: " + "; ".join(parts)


def missing_fields(card: DatasetCard) -> list[str]:
    """The fields a person must still provide before the card is complete, in a stable order."""
    return [name for name in HUMAN_FIELDS if is_blank(getattr(card, name))]
