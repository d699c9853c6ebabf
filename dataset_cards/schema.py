"""The dataset card: one pydantic model, the single source of truth for every rendering.

The first group of fields is the Hugging Face card metadata, named as the Hub spells it, so the
README front matter is a plain projection of the model. The rest is what the exchange adds:
the version's identity and the facts curation measured (files, steps, PII counts, review,
quality scores), the narrative a contributor writes (the Datasheets for Datasets questions and
Croissant's Responsible-AI fields, one field per question), the product description the listing
review reads, and what the exchange's reviewers record.

Every field belongs to exactly one of :data:`MACHINE_FIELDS` (filled from curation, never
edited by a person), :data:`CONTRIBUTOR_FIELDS` and :data:`REVIEW_FIELDS`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from dataset_cards.licenses import KNOWN_LICENSES, LICENSES, LicenseClass

# Hugging Face size buckets, smallest first: (exclusive upper bound on rows, label).
SIZE_CATEGORIES: tuple[tuple[int | None, str], ...] = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
    (None, "n>1T"),
)
_SIZE_LABELS = frozenset(label for _, label in SIZE_CATEGORIES)

# Column names the curation pipeline adds to every row, and what each records.
PROVENANCE_COLUMNS: dict[str, str] = {
    "_contributor": "the contributing organisation the row came from",
    "_source_file": "the uploaded file the row was read from",
    "_source_row": "the row's position in that file",
    "_content_hash": "a hash of the row's content, used for deduplication",
}

_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_LICENSE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_SPLIT_RE = re.compile(r"^\w+(?:\.\w+)*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

NonEmpty = Annotated[str, Field(min_length=1)]
Count = Annotated[int, Field(ge=0)]


def size_category(num_rows: int) -> str:
    """The Hugging Face size bucket (``size_categories`` value) for a row count."""
    if num_rows < 0:
        raise ValueError(f"row count must not be negative, got {num_rows}")
    for bound, label in SIZE_CATEGORIES:
        if bound is None or num_rows < bound:
            return label
    raise AssertionError("unreachable: the last bucket is open")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Model):
    """One column or nested field. Exactly one of ``dtype``, ``item`` and ``struct`` is set.

    ``dtype`` is a Hugging Face ``Value`` dtype (``string``, ``int64``, ``timestamp[us]``...);
    ``item`` is the element type of a list (``length`` set when the list has a fixed size);
    ``struct`` holds the members of a struct. List elements have no name.
    """

    name: str | None = None
    dtype: str | None = None
    item: Feature | None = None
    struct: list[Feature] | None = None
    length: Annotated[int, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        kinds = [k for k in ("dtype", "item", "struct") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"feature {self.name!r} must set exactly one of dtype, item, struct; got {kinds}"
            )
        if self.length is not None and self.item is None:
            raise ValueError(f"feature {self.name!r}: length applies to lists only")
        if self.item is not None and self.item.name is not None:
            raise ValueError(f"feature {self.name!r}: a list element has no name")
        for member in self.struct or []:
            if member.name is None:
                raise ValueError(f"feature {self.name!r}: every struct member needs a name")
        return self

    @property
    def is_provenance(self) -> bool:
        """Whether this is a provenance column added by the exchange (its name starts with _)."""
        return self.name is not None and self.name.startswith("_")

    def type_label(self) -> str:
        """A compact human-readable type, e.g. ``list<struct<a: int64, b: string>>``."""
        if self.dtype is not None:
            return self.dtype
        if self.item is not None:
            size = f", {self.length}" if self.length is not None else ""
            return f"list<{self.item.type_label()}{size}>"
        members = ", ".join(f"{m.name}: {m.type_label()}" for m in self.struct or [])
        return f"struct<{members}>"


class SplitInfo(_Model):
    """Size of one split. ``num_bytes`` counts the stored (Parquet) bytes of its files."""

    name: NonEmpty
    num_examples: Count
    num_bytes: Count

    @field_validator("name")
    @classmethod
    def _split_name(cls, value: str) -> str:
        if not _SPLIT_RE.match(value):
            raise ValueError(f"split name {value!r} must be word characters (and dots)")
        return value


class DatasetInfo(_Model):
    """The ``dataset_info`` block: features, splits and sizes in bytes."""

    features: list[Feature] = Field(min_length=1)
    splits: list[SplitInfo] = Field(default_factory=list)
    download_size: Count = 0
    dataset_size: Count = 0

    @field_validator("features")
    @classmethod
    def _top_level_named(cls, value: list[Feature]) -> list[Feature]:
        names = [f.name for f in value]
        if any(n is None for n in names):
            raise ValueError("every top-level feature needs a name")
        duplicates = sorted({n for n in names if n is not None and names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names: {duplicates}")
        return value


class DataFiles(_Model):
    """The files of one split within a config; paths may be globs, as on the Hub."""

    split: NonEmpty
    path: list[NonEmpty] = Field(min_length=1)

    @field_validator("path", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Config(_Model):
    """One Hugging Face config (``configs`` entry) and its data files per split."""

    config_name: NonEmpty = "default"
    data_files: list[DataFiles] = Field(min_length=1)


class PreprocessingStep(_Model):
    """One curation step that actually ran: its parameters and what it did to the row count."""

    step: NonEmpty
    params: dict[str, JsonValue] = Field(default_factory=dict)
    rows_in: Count
    rows_out: Count
    dropped_by_reason: dict[str, Count] = Field(default_factory=dict)


class DataFile(_Model):
    """One published data file, relative to the dataset repository root."""

    path: NonEmpty
    sha256: str
    num_bytes: Count
    num_rows: Count

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        parts = value.split("/")
        if value.startswith("/") or "\\" in value or ".." in parts or "" in parts:
            raise ValueError(f"file path {value!r} must be relative, with '/' separators")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not _SHA256_RE.match(value):
            raise ValueError(f"sha256 {value!r} must be 64 lower-case hex digits")
        return value


def _blank_is_none(value: Any) -> Any:
    """Blank optional text counts as not provided."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


OptionalText = Annotated[str | None, BeforeValidator(_blank_is_none)]
Score = Annotated[float, Field(allow_inf_nan=False)]

# Who made the annotations (Hub vocabulary for ``annotations_creators``).
ANNOTATIONS_CREATORS: tuple[str, ...] = (
    "crowdsourced",
    "expert-generated",
    "found",
    "machine-generated",
    "no-annotation",
    "other",
)
UpdateFrequency = Literal[
    "one-off", "continuous", "daily", "weekly", "monthly", "quarterly", "yearly", "irregular"
]
UPDATE_FREQUENCIES: tuple[str, ...] = get_args(UpdateFrequency)
ComplianceResult = Literal["passed", "passed-with-conditions", "failed", "pending"]


class ReviewSummary(_Model):
    """What human review of a sample found (the annotation protocol's measured part).

    ``pass_rate`` is the share of sampled rows the reviewers accepted; ``agreement`` is the
    inter-annotator agreement under ``agreement_metric`` (Cohen's or Fleiss' kappa can be
    negative, so it ranges over -1..1).
    """

    sample_size: Annotated[int, Field(gt=0)]
    reviewers: Annotated[int, Field(gt=0)] | None = None
    pass_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    agreement: Annotated[float, Field(ge=-1, le=1)] | None = None
    agreement_metric: OptionalText = None
    tool: OptionalText = None

    @model_validator(mode="after")
    def _agreement_has_a_metric(self) -> Self:
        if self.agreement is not None and self.agreement_metric is None:
            raise ValueError("agreement needs agreement_metric, e.g. 'cohen_kappa'")
        return self


class ComplianceAssessment(_Model):
    """The listing review's (or a third-party auditor's) finding on the product."""

    result: ComplianceResult
    assessed_by: NonEmpty
    assessed_on: dt.date
    summary: OptionalText = None
    reference: OptionalText = None


class DatasetCard(_Model):
    """A dataset card: Hugging Face metadata plus the exchange's own record of the version."""

    # --- Hugging Face card metadata (Hub spelling) ---
    pretty_name: NonEmpty
    license: str | None = None
    license_name: OptionalText = None
    license_link: OptionalText = None
    language: list[str] = Field(default_factory=list)
    task_categories: list[str] = Field(default_factory=list)
    task_ids: list[str] = Field(default_factory=list)
    size_categories: list[str] = Field(default_factory=list)
    source_datasets: list[NonEmpty] = Field(default_factory=list)
    annotations_creators: list[str] = Field(default_factory=list)
    tags: list[NonEmpty] = Field(default_factory=list)
    configs: list[Config] = Field(default_factory=list)
    dataset_info: DatasetInfo

    # --- the version and what curation measured (machine) ---
    dataset_id: NonEmpty
    version_id: NonEmpty
    version_number: Annotated[int, Field(ge=1)] | None = None
    date_published: dt.date | None = None
    content_hash: NonEmpty
    provider: NonEmpty
    co_contributors: list[NonEmpty] = Field(default_factory=list)
    files: list[DataFile] = Field(default_factory=list)
    preprocessing: list[PreprocessingStep] = Field(default_factory=list)
    pii_counts: dict[NonEmpty, Count] | None = None
    review: ReviewSummary | None = None
    quality_scores: dict[NonEmpty, Score] | None = None

    # --- licence class (filled from the licence table; stated by the contributor for 'other') ---
    license_class: LicenseClass | None = None

    # --- narrative: Datasheets for Datasets and Croissant RAI (contributor) ---
    description: str = ""
    motivation: OptionalText = None
    composition: OptionalText = None
    data_collection: OptionalText = None
    preprocessing_notes: OptionalText = None
    annotation_protocol: OptionalText = None
    personal_sensitive_information: OptionalText = None
    biases: OptionalText = None
    limitations: OptionalText = None
    intended_uses: OptionalText = None
    social_impact: OptionalText = None
    maintenance_plan: OptionalText = None
    citation: OptionalText = None

    # --- product description (contributor) ---
    lawful_source_statement: OptionalText = None
    scope: OptionalText = None
    update_frequency: UpdateFrequency | None = None
    usage_restrictions: OptionalText = None
    license_template: OptionalText = None
    price_plans: list[NonEmpty] = Field(default_factory=list)

    # --- the exchange's reviewers ---
    compliance_assessment: ComplianceAssessment | None = None
    quality_summary: OptionalText = None

    @model_validator(mode="before")
    @classmethod
    def _fill_license_class(cls, data: Any) -> Any:
        """A known licence's class comes from the licence table unless it is given."""
        if isinstance(data, dict) and data.get("license_class") is None:
            license_id = data.get("license")
            if isinstance(license_id, str) and license_id.strip().lower() in LICENSES:
                info = LICENSES[license_id.strip().lower()]
                return {**data, "license_class": info.license_class}
        return data

    @field_validator("license", mode="before")
    @classmethod
    def _known_license(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        normalised = value.strip().lower()
        if normalised not in KNOWN_LICENSES:
            raise ValueError(
                f"license {value!r} is not a known license id (SPDX-style, as the Hugging Face"
                " Hub spells it, e.g. apache-2.0, mit, cc-by-4.0, odc-by); for any other licence"
                " use 'other' with license_name and license_link"
            )
        return normalised

    @field_validator("language")
    @classmethod
    def _language_codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if not _LANGUAGE_RE.match(code):
                raise ValueError(f"language {code!r} is not an ISO 639 code such as 'en' or 'zh'")
        return value

    @field_validator("task_categories", "task_ids")
    @classmethod
    def _task_slugs(cls, value: list[str]) -> list[str]:
        for task in value:
            if not _SLUG_RE.match(task):
                raise ValueError(f"task {task!r} must be a slug like 'text-generation'")
        return value

    @field_validator("size_categories")
    @classmethod
    def _size_labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if label not in _SIZE_LABELS:
                raise ValueError(f"size category {label!r} is not a Hugging Face size bucket")
        return value

    @field_validator("annotations_creators")
    @classmethod
    def _annotation_creators(cls, value: list[str]) -> list[str]:
        for creator in value:
            if creator not in ANNOTATIONS_CREATORS:
                raise ValueError(
                    f"annotations creator {creator!r} is not one of"
                    f" {', '.join(ANNOTATIONS_CREATORS)}"
                )
        return value

    @field_validator("price_plans", "co_contributors")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        repeated = sorted({item for item in value if value.count(item) > 1})
        if repeated:
            raise ValueError(f"listed more than once: {repeated}")
        return value

    @field_validator("quality_scores")
    @classmethod
    def _finite_scores(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, score in (value or {}).items():
            if not math.isfinite(score):
                raise ValueError(f"quality score {name!r} must be a finite number")
        return value

    @model_validator(mode="after")
    def _license_is_consistent(self) -> Self:
        if self.license == "other":
            if self.license_name is None or self.license_link is None:
                raise ValueError("license 'other' needs both license_name and license_link")
            if not _LICENSE_NAME_RE.match(self.license_name):
                raise ValueError(
                    f"license_name {self.license_name!r} must be a lower-case id like"
                    " 'my-license-1.0'"
                )
            if self.license_name in KNOWN_LICENSES:
                raise ValueError(
                    f"license_name {self.license_name!r} is a known license id; use"
                    f" license {self.license_name!r} instead of 'other'"
                )
        elif self.license_name is not None or self.license_link is not None:
            raise ValueError(
                f"license_name and license_link apply only to license 'other', not {self.license!r}"
            )
        if self.license is None and self.license_class is not None:
            raise ValueError("license_class needs a license")
        if self.license in LICENSES and self.license_class != LICENSES[self.license].license_class:
            raise ValueError(
                f"license_class of {self.license!r} is fixed by the licence table"
                f" ({LICENSES[self.license].license_class.model_dump()}); only license 'other'"
                " states its own class"
            )
        return self

    @property
    def num_rows(self) -> int:
        """Rows over all splits."""
        return sum(split.num_examples for split in self.dataset_info.splits)

    @property
    def num_bytes(self) -> int:
        """Stored bytes over all files listed in the card."""
        return sum(data_file.num_bytes for data_file in self.files)


# The Hub's card metadata keys, in the order the front matter lists them.
HF_METADATA_FIELDS: tuple[str, ...] = (
    "pretty_name",
    "license",
    "license_name",
    "license_link",
    "language",
    "task_categories",
    "task_ids",
    "size_categories",
    "source_datasets",
    "annotations_creators",
    "tags",
    "configs",
    "dataset_info",
)
# Everything else is the exchange's own record.
EXCHANGE_FIELDS: tuple[str, ...] = tuple(
    name for name in DatasetCard.model_fields if name not in HF_METADATA_FIELDS
)

# Facts curation measured or the exchange assigned; a person never edits them.
MACHINE_FIELDS: tuple[str, ...] = (
    "size_categories",
    "configs",
    "dataset_info",
    "dataset_id",
    "version_id",
    "version_number",
    "date_published",
    "content_hash",
    "provider",
    "co_contributors",
    "files",
    "preprocessing",
    "pii_counts",
    "review",
    "quality_scores",
)
# What the exchange's reviewers (listing review, third-party evaluators) record.
REVIEW_FIELDS: dict[str, str] = {
    "compliance_assessment": "the listing review's compliance finding",
    "quality_summary": "the quality evaluation's conclusion",
}
# What the contributor provides (and may change in a new card revision).
CONTRIBUTOR_FIELDS: tuple[str, ...] = tuple(
    name
    for name in DatasetCard.model_fields
    if name not in MACHINE_FIELDS and name not in REVIEW_FIELDS
)

# The contributor fields a complete card fills in, each with why it matters, in the order
# missing_fields reports them. The rest of CONTRIBUTOR_FIELDS is optional.
HUMAN_FIELDS: dict[str, str] = {
    "description": "what the dataset contains and why it was made",
    "motivation": "why the dataset was created, by whom and with whose funding",
    "language": "the languages of the text (ISO 639 codes)",
    "task_categories": "the tasks the dataset serves, e.g. question-answering",
    "annotations_creators": "who made the labels or answers (e.g. expert-generated, found)",
    "lawful_source_statement": "how the contributor lawfully obtained the data (listing review)",
    "data_collection": "how, when and from where the data was collected",
    "scope": "what the data covers: domain, period, regions, population",
    "update_frequency": "how often new versions are published",
    "personal_sensitive_information": "what personal or sensitive information the data holds,"
    " and how it was handled",
    "intended_uses": "what the data is meant to be used for",
    "limitations": "known gaps and uses to avoid",
    "biases": "known biases in what the data covers or how it was labelled",
    "social_impact": "foreseeable effects, good and bad, of using the data",
    "maintenance_plan": "who maintains the data, and how errors are reported and fixed",
    "usage_restrictions": "what a buyer may not do with the data beyond the licence",
    "license_template": "the exchange's model contract text the data is licensed under",
    "price_plans": "the price plans the product is offered under",
}


def is_blank(value: object) -> bool:
    """Whether a field's value counts as not provided (None, blank text, an empty collection)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | dict | tuple):
        return not value
    return False
