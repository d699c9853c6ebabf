"""Lint a dataset card: is it complete, consistent, and true to its data and its price plans?

Errors block listing review (the marketplace refuses to list a version whose card has errors);
warnings point at what a buyer would miss. Each issue names the field path it is about, in the
form ``dataset_info.splits[0].num_examples``.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from dataset_cards.autofill import feature_from_arrow, missing_fields
from dataset_cards.errors import CardError
from dataset_cards.render.text import describe_license_class
from dataset_cards.schema import HUMAN_FIELDS, DatasetCard, Feature, size_category

Severity = Literal["error", "warning"]

# The lint rules, each as (severity, what it catches); docs/cards.md lists the same.
RULES: dict[str, tuple[Severity, str]] = {
    "schema": ("error", "a value breaks the card schema (e.g. an unknown licence id)"),
    "license-missing": ("error", "no licence"),
    "license-class-missing": ("error", "licence 'other' without a stated licence class"),
    "lawful-source-missing": ("error", "no lawful-source statement"),
    "no-files": ("error", "the card lists no data files"),
    "duplicate-file": ("error", "a data file is listed twice"),
    "split-without-files": ("error", "a split with no files in configs"),
    "split-files-unmatched": ("error", "a split's data_files match none of the card's files"),
    "split-rows": ("error", "a split's num_examples differs from its files' rows"),
    "split-bytes": ("error", "a split's num_bytes differs from its files' bytes"),
    "dataset-sizes": ("error", "download_size or dataset_size differs from the files"),
    "size-category": ("error", "size_categories does not match the row count"),
    "pii-without-statement": ("error", "PII found, but no personal-information statement"),
    "license-vs-price-plan": ("error", "a commercial price plan on a non-commercial licence"),
    "unknown-price-plan": ("error", "the card references a price plan that does not exist"),
    "compliance-failed": ("error", "the compliance assessment failed"),
    "file-missing": ("error", "a listed file is not among the given data files"),
    "file-bytes": ("error", "a file's size differs from the card"),
    "file-sha256": ("error", "a file's sha256 differs from the card"),
    "file-rows": ("error", "a Parquet file's row count differs from the card"),
    "file-unreadable": ("error", "a listed Parquet file cannot be read"),
    "file-columns": ("error", "a Parquet file's columns differ from the card's features"),
    "human-field-missing": ("warning", "a field a person provides is empty"),
    "not-assessed": ("warning", "no compliance assessment or quality evaluation yet"),
    "no-pii-scan": ("warning", "no PII scan was recorded"),
    "no-preprocessing": ("warning", "no curation steps were recorded"),
    "split-not-described": ("warning", "configs name a split dataset_info does not describe"),
    "file-in-no-split": ("warning", "a listed file belongs to no split"),
    "file-not-listed": ("warning", "a given data file is not listed in the card"),
    "license-unspecified-vs-price-plan": (
        "warning",
        "a commercial price plan on a licence whose allowed use is unspecified",
    ),
}


@dataclass(frozen=True)
class LintIssue:
    """One finding: how bad it is, the field path it concerns, and what is wrong."""

    severity: Severity
    path: str
    message: str
    rule: str = "schema"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def has_errors(issues: Sequence[LintIssue]) -> bool:
    """Whether any issue is an error (the card cannot be listed)."""
    return any(issue.severity == "error" for issue in issues)


def field_path(loc: Sequence[str | int]) -> str:
    """A pydantic error location as a field path: ``("files", 0, "sha256")`` ->
    ``files[0].sha256``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Issues(list[LintIssue]):
    def add(self, rule: str, path: str, message: str) -> None:
        self.append(LintIssue(RULES[rule][0], path, message, rule))


def lint_card(
    card: DatasetCard | Mapping[str, Any],
    *,
    data_files: list[Path] | None = None,
    price_plans: list[dict[str, Any]] | None = None,
) -> list[LintIssue]:
    """Every issue found in ``card`` (a card, or its fields as plain values).

    ``data_files`` are the version's files on disk; each card file is found among them by its
    relative path (a given path ends with it), then its size, sha256 and, for Parquet, row count
    and columns are checked. ``price_plans`` are the plans the product is offered under, each a
    mapping with an ``id`` and either ``permitted_uses`` (a list that may hold ``commercial``)
    or ``commercial`` (a bool).
    """
    if not isinstance(card, DatasetCard):
        try:
            card = DatasetCard.model_validate(dict(card))
        except ValidationError as exc:
            return [
                LintIssue("error", field_path(tuple(e["loc"])) or "card", e["msg"], "schema")
                for e in exc.errors()
            ]
    issues = _Issues()
    _check_license(card, issues)
    _check_files_and_splits(card, issues)
    _check_sensitive_information(card, issues)
    _check_human_fields(card, issues)
    if price_plans is not None:
        _check_price_plans(card, price_plans, issues)
    if data_files is not None:
        _check_data_files(card, data_files, issues)
    return list(issues)


def _check_license(card: DatasetCard, issues: _Issues) -> None:
    if card.license is None:
        issues.add("license-missing", "license", "no licence: a product needs a known licence id")
    elif card.license == "other" and card.license_class is None:
        issues.add(
            "license-class-missing",
            "license_class",
            f"licence 'other' ({card.license_name}) must state its class: allowed use,"
            " attribution, share-alike",
        )


def _matches(pattern: str, path: str) -> bool:
    return path == pattern or fnmatch.fnmatchcase(path, pattern)


def _check_files_and_splits(card: DatasetCard, issues: _Issues) -> None:
    info = card.dataset_info
    paths = [f.path for f in card.files]
    if not card.files:
        issues.add("no-files", "files", "the card lists no data files")
    for index, path in enumerate(paths):
        if path in paths[:index]:
            issues.add("duplicate-file", f"files[{index}].path", f"{path!r} is listed twice")
    described = {split.name for split in info.splits}
    patterns: dict[str, list[str]] = {}
    for c, config in enumerate(card.configs):
        for d, entry in enumerate(config.data_files):
            patterns.setdefault(entry.split, []).extend(entry.path)
            if entry.split not in described:
                issues.add(
                    "split-not-described",
                    f"configs[{c}].data_files[{d}].split",
                    f"split {entry.split!r} of config {config.config_name!r} is not described in"
                    " dataset_info.splits",
                )
            if card.files:
                for p, pattern in enumerate(entry.path):
                    if not any(_matches(pattern, path) for path in paths):
                        issues.add(
                            "split-files-unmatched",
                            f"configs[{c}].data_files[{d}].path[{p}]",
                            f"{pattern!r} matches none of the card's files",
                        )
    for index, data_file in enumerate(card.files):
        if not any(_matches(p, data_file.path) for ps in patterns.values() for p in ps):
            issues.add(
                "file-in-no-split",
                f"files[{index}]",
                f"{data_file.path!r} belongs to no split's data_files",
            )
    for index, split in enumerate(info.splits):
        where = f"dataset_info.splits[{index}]"
        if split.name not in patterns:
            issues.add(
                "split-without-files", where, f"split {split.name!r} has no files in configs"
            )
            continue
        if not card.files:
            continue
        files = [f for f in card.files if any(_matches(p, f.path) for p in patterns[split.name])]
        rows = sum(f.num_rows for f in files)
        stored = sum(f.num_bytes for f in files)
        if files and rows != split.num_examples:
            issues.add(
                "split-rows",
                f"{where}.num_examples",
                f"split {split.name!r} says {split.num_examples:,} examples but its files hold"
                f" {rows:,} rows",
            )
        if files and stored != split.num_bytes:
            issues.add(
                "split-bytes",
                f"{where}.num_bytes",
                f"split {split.name!r} says {split.num_bytes:,} bytes but its files hold"
                f" {stored:,}",
            )
    if card.files and info.download_size != card.num_bytes:
        issues.add(
            "dataset-sizes",
            "dataset_info.download_size",
            f"download_size is {info.download_size:,} but the files hold {card.num_bytes:,} bytes",
        )
    split_bytes = sum(split.num_bytes for split in info.splits)
    if info.splits and info.dataset_size != split_bytes:
        issues.add(
            "dataset-sizes",
            "dataset_info.dataset_size",
            f"dataset_size is {info.dataset_size:,} but the splits add up to {split_bytes:,}",
        )
    if info.splits:
        expected = size_category(card.num_rows)
        if card.size_categories != [expected]:
            issues.add(
                "size-category",
                "size_categories",
                f"{card.num_rows:,} rows belong in [{expected!r}], not {card.size_categories}",
            )


def _check_sensitive_information(card: DatasetCard, issues: _Issues) -> None:
    if card.pii_counts is None:
        issues.add("no-pii-scan", "pii_counts", "no PII scan was recorded for this version")
        return
    found = {kind: count for kind, count in card.pii_counts.items() if count > 0}
    if found and card.personal_sensitive_information is None:
        detail = ", ".join(f"{kind} {count:,}" for kind, count in found.items())
        issues.add(
            "pii-without-statement",
            "personal_sensitive_information",
            f"the PII scan found {detail}, but the card has no statement of what personal"
            " information the data holds and how it was handled",
        )


def _check_human_fields(card: DatasetCard, issues: _Issues) -> None:
    for name in missing_fields(card):
        if name == "lawful_source_statement":
            issues.add(
                "lawful-source-missing",
                name,
                "no lawful-source statement: listing review needs to know how the data was"
                " lawfully obtained",
            )
        else:
            issues.add("human-field-missing", name, f"not provided: {HUMAN_FIELDS[name]}")
    assessment = card.compliance_assessment
    if assessment is None:
        issues.add("not-assessed", "compliance_assessment", "no compliance assessment yet")
    elif assessment.result == "failed":
        issues.add(
            "compliance-failed",
            "compliance_assessment.result",
            f"the compliance assessment by {assessment.assessed_by} on"
            f" {assessment.assessed_on.isoformat()} failed",
        )
    elif assessment.result == "pending":
        issues.add("not-assessed", "compliance_assessment.result", "the assessment is pending")
    if card.quality_summary is None:
        issues.add("not-assessed", "quality_summary", "no quality evaluation summary yet")
    if not card.preprocessing:
        issues.add("no-preprocessing", "preprocessing", "no curation steps were recorded")


def _is_commercial(plan: Mapping[str, Any]) -> bool:
    uses = plan.get("permitted_uses") or plan.get("allowed_uses") or []
    return plan.get("commercial") is True or "commercial" in uses


def _check_price_plans(
    card: DatasetCard, price_plans: list[dict[str, Any]], issues: _Issues
) -> None:
    known = {str(plan.get("id")) for plan in price_plans}
    for index, plan_id in enumerate(card.price_plans):
        if plan_id not in known:
            issues.add(
                "unknown-price-plan", f"price_plans[{index}]", f"no price plan with id {plan_id!r}"
            )
    license_class = card.license_class
    if license_class is None:
        return
    for plan in price_plans:
        if not _is_commercial(plan):
            continue
        plan_id = str(plan.get("id"))
        where = (
            f"price_plans[{card.price_plans.index(plan_id)}]"
            if plan_id in card.price_plans
            else "license"
        )
        words = describe_license_class(license_class)
        if license_class.allowed_use in ("non-commercial", "academic"):
            issues.add(
                "license-vs-price-plan",
                where,
                f"price plan {plan_id!r} permits commercial use, but licence {card.license!r}"
                f" allows {words}",
            )
        elif license_class.allowed_use == "unspecified":
            issues.add(
                "license-unspecified-vs-price-plan",
                where,
                f"price plan {plan_id!r} permits commercial use, but licence {card.license!r}"
                " does not say whether commercial use is allowed",
            )


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _find(given: dict[Path, str], relative: str) -> Path | None:
    """The given file whose path is ``relative`` or ends with ``/relative``."""
    for path, text in given.items():
        if text == relative or text.endswith("/" + relative):
            return path
    return None


def _check_data_files(card: DatasetCard, data_files: list[Path], issues: _Issues) -> None:
    given = {path: path.as_posix() for path in data_files}
    used: set[Path] = set()
    columns_checked = False
    for index, data_file in enumerate(card.files):
        where = f"files[{index}]"
        match = _find(given, data_file.path)
        if match is None or not match.is_file():
            issues.add(
                "file-missing", f"{where}.path", f"{data_file.path!r} is not among the data files"
            )
            continue
        used.add(match)
        size = match.stat().st_size
        if size != data_file.num_bytes:
            issues.add(
                "file-bytes",
                f"{where}.num_bytes",
                f"{data_file.path!r} has {size:,} bytes, the card says {data_file.num_bytes:,}",
            )
        digest = _sha256(match)
        if digest != data_file.sha256:
            issues.add(
                "file-sha256",
                f"{where}.sha256",
                f"{data_file.path!r} has sha256 {digest}, the card says {data_file.sha256}",
            )
        if not data_file.path.endswith(".parquet"):
            continue
        try:
            metadata = pq.read_metadata(match)
            schema = metadata.schema.to_arrow_schema()
        except (pa.ArrowException, OSError) as exc:
            issues.add(
                "file-unreadable", f"{where}.path", f"{data_file.path!r} is not readable: {exc}"
            )
            continue
        if metadata.num_rows != data_file.num_rows:
            issues.add(
                "file-rows",
                f"{where}.num_rows",
                f"{data_file.path!r} holds {metadata.num_rows:,} rows, the card says"
                f" {data_file.num_rows:,}",
            )
        if not columns_checked:
            columns_checked = True
            _check_columns(card, data_file.path, schema, issues)
    for path in data_files:
        if path not in used:
            issues.add("file-not-listed", "files", f"{path.as_posix()!r} is not listed in the card")


def _check_columns(card: DatasetCard, name: str, schema: pa.Schema, issues: _Issues) -> None:
    try:
        actual = [feature_from_arrow(field.name, field.type) for field in schema]
    except CardError as exc:
        issues.add("file-columns", "dataset_info.features", f"{name!r}: {exc}")
        return
    expected: list[Feature] = card.dataset_info.features
    if actual != expected:
        said = ", ".join(f"{f.name}: {f.type_label()}" for f in expected)
        found = ", ".join(f"{f.name}: {f.type_label()}" for f in actual)
        issues.add(
            "file-columns",
            "dataset_info.features",
            f"{name!r} has columns ({found}), the card says ({said})",
        )
