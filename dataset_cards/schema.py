"""The dataset card: one pydantic model, the single source of truth for every rendering.

The first group of fields is the Hugging Face card metadata, named as the Hub spells it, so the
README front matter is a plain projection of the model. The second group is what the exchange
adds: identity of the version, provenance, the curation steps that actually ran and the files.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

# Licence ids the Hugging Face Hub accepts in card metadata, lower case as the Hub writes them;
# "unknown" is left out on purpose: a product without a known licence cannot pass listing review.
KNOWN_LICENSES: frozenset[str] = frozenset(
    [
        "afl-3.0",
        "agpl-3.0",
        "apache-2.0",
        "artistic-2.0",
        "bsd",
        "bsd-2-clause",
        "bsd-3-clause",
        "bsd-3-clause-clear",
        "bsl-1.0",
        "c-uda",
        "cc",
        "cc0-1.0",
        "cc-by-2.0",
        "cc-by-2.5",
        "cc-by-3.0",
        "cc-by-4.0",
        "cc-by-nc-2.0",
        "cc-by-nc-3.0",
        "cc-by-nc-4.0",
        "cc-by-nc-nd-3.0",
        "cc-by-nc-nd-4.0",
        "cc-by-nc-sa-2.0",
        "cc-by-nc-sa-3.0",
        "cc-by-nc-sa-4.0",
        "cc-by-nd-4.0",
        "cc-by-sa-3.0",
        "cc-by-sa-4.0",
        "cdla-permissive-1.0",
        "cdla-permissive-2.0",
        "cdla-sharing-1.0",
        "ecl-2.0",
        "epl-1.0",
        "epl-2.0",
        "etalab-2.0",
        "eupl-1.1",
        "eupl-1.2",
        "gfdl",
        "gpl",
        "gpl-2.0",
        "gpl-3.0",
        "isc",
        "lgpl",
        "lgpl-2.1",
        "lgpl-3.0",
        "lgpl-lr",
        "lppl-1.3c",
        "mit",
        "mpl-2.0",
        "ms-pl",
        "ncsa",
        "odbl",
        "odc-by",
        "ofl-1.1",
        "openrail",
        "osl-3.0",
        "pddl",
        "postgresql",
        "unlicense",
        "wtfpl",
        "zlib",
        "other",
    ]
)

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


class DatasetCard(_Model):
    """A dataset card: Hugging Face metadata plus the exchange's own record of the version."""

    # --- Hugging Face card metadata (Hub spelling) ---
    pretty_name: NonEmpty
    license: str
    license_name: OptionalText = None
    license_link: OptionalText = None
    language: list[str] = Field(default_factory=list)
    task_categories: list[str] = Field(default_factory=list)
    size_categories: list[str] = Field(default_factory=list)
    source_datasets: list[NonEmpty] = Field(default_factory=list)
    tags: list[NonEmpty] = Field(default_factory=list)
    configs: list[Config] = Field(default_factory=list)
    dataset_info: DatasetInfo

    # --- exchange fields ---
    dataset_id: NonEmpty
    version_id: NonEmpty
    content_hash: NonEmpty
    provider: NonEmpty
    co_contributors: list[NonEmpty] = Field(default_factory=list)
    description: str = ""
    lawful_source_statement: OptionalText = None
    intended_uses: OptionalText = None
    limitations: OptionalText = None
    preprocessing: list[PreprocessingStep] = Field(default_factory=list)
    files: list[DataFile] = Field(default_factory=list)

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

    @field_validator("task_categories")
    @classmethod
    def _task_slugs(cls, value: list[str]) -> list[str]:
        for task in value:
            if not _SLUG_RE.match(task):
                raise ValueError(f"task category {task!r} must be a slug like 'text-generation'")
        return value

    @field_validator("size_categories")
    @classmethod
    def _size_labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if label not in _SIZE_LABELS:
                raise ValueError(f"size category {label!r} is not a Hugging Face size bucket")
        return value

    @model_validator(mode="after")
    def _other_license_is_named(self) -> Self:
        if self.license == "other":
            if self.license_name is None or self.license_link is None:
                raise ValueError("license 'other' needs both license_name and license_link")
            if not _LICENSE_NAME_RE.match(self.license_name):
                raise ValueError(
                    f"license_name {self.license_name!r} must be a lower-case id like"
                    " 'my-license-1.0'"
                )
        elif self.license_name is not None or self.license_link is not None:
            raise ValueError(
                f"license_name and license_link apply only to license 'other', not {self.license!r}"
            )
        return self

    @property
    def num_rows(self) -> int:
        """Rows over all splits."""
        return sum(split.num_examples for split in self.dataset_info.splits)


# The Hub's card metadata keys, in the order the front matter lists them.
HF_METADATA_FIELDS: tuple[str, ...] = tuple(
    [
        "pretty_name",
        "license",
        "license_name",
        "license_link",
        "language",
        "task_categories",
        "size_categories",
        "source_datasets",
        "tags",
        "configs",
        "dataset_info",
    ]
)
# Everything else is the exchange's own record.
EXCHANGE_FIELDS: tuple[str, ...] = tuple(
    name for name in DatasetCard.model_fields if name not in HF_METADATA_FIELDS
)
