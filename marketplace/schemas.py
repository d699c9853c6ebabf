"""Request and response bodies of the HTTP API, one schema family per entity."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from marketplace.models import ROLES

Role = Literal["contributor", "buyer", "researcher", "operator", "auditor", "regulator"]
Use = Literal["download", "training"]
USES: tuple[Use, ...] = ("download", "training")
assert set(ROLES) == set(Role.__args__)  # type: ignore[attr-defined]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._\-]{0,199}$")


def _name_shape(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise ValueError("use letters, digits, spaces, '.', '_' or '-' (max 200)")
    return value


Name = Annotated[str, AfterValidator(_name_shape)]
"""The name of an organisation or dataset: starts with a letter or digit, at most 200 long."""


class Strict(BaseModel):
    """A request body: unknown fields are an error, so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")


class Public(BaseModel):
    """A response body, read from model attributes; internal fields are left out."""

    model_config = ConfigDict(from_attributes=True)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# Organisations and keys ---------------------------------------------------------------------


class BootstrapCreate(Strict):
    organization_name: str = Field(min_length=1, max_length=200)


class OrganizationCreate(Strict):
    name: Name
    roles: list[Role] = Field(min_length=1)


class OrganizationPublic(Public):
    id: str
    name: str
    roles: list[str]
    created_at: dt.datetime


class ApiKeyCreate(Strict):
    name: str = Field(default="default", min_length=1, max_length=200)


class ApiKeyPublic(Public):
    id: str
    organization_id: str
    name: str
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyPublic):
    api_key: str = Field(description="The key itself; shown once, stored only as a hash.")


class OrganizationCreated(OrganizationPublic):
    api_key: ApiKeyCreated


class Me(Public):
    organization: OrganizationPublic
    api_key_id: str


# Datasets, uploads, versions ----------------------------------------------------------------


class DatasetCreate(Strict):
    name: Name
    description: str = Field(default="", max_length=20_000)
    license: str = Field(min_length=1, max_length=64)
    language: list[str] = Field(default_factory=list, max_length=50)


class DatasetPublic(Public):
    id: str
    organization_id: str
    name: str
    description: str
    license: str
    language: list[str]
    created_at: dt.datetime


class UploadPublic(Public):
    id: str
    dataset_id: str
    filename: str
    format: str
    sha256: str
    size: int
    num_rows: int
    columns: list[str]
    created_at: dt.datetime


class CurationRunCreate(Strict):
    upload_ids: list[str] | None = Field(
        default=None, description="Uploads to curate; all of the dataset's uploads if omitted."
    )
    recipe: str = Field(default="default", min_length=1, max_length=100)


class CurationRunPublic(Public):
    id: str
    dataset_id: str
    upload_ids: list[str]
    recipe: dict[str, Any]
    status: str
    error: str | None
    version_id: str | None
    report: dict[str, Any] | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class VersionFile(Public):
    path: str
    sha256: str
    num_bytes: int
    num_rows: int


class DownloadUrl(Public):
    path: str
    sha256: str
    num_bytes: int
    url: str
    expires_in: int


class DatasetVersionPublic(Public):
    id: str
    dataset_id: str
    number: int
    content_hash: str
    num_rows: int
    num_bytes: int
    features: list[dict[str, Any]]
    files: list[VersionFile]
    report: dict[str, Any]
    created_at: dt.datetime


# Listings, licenses, certificates -----------------------------------------------------------


Purpose = Literal["research", "commercial", "training", "evaluation"]
PURPOSES: tuple[Purpose, ...] = ("research", "commercial", "training", "evaluation")


class ContractParameters(Strict):
    """The terms a model contract is rendered with; unknown parameters are refused."""

    template: Literal["aidx-ai-training-v1"] = "aidx-ai-training-v1"
    permitted_uses: list[Purpose] = Field(default_factory=lambda: list(PURPOSES), min_length=1)
    redistribution: bool = False
    territory: Literal["worldwide"] | list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] = (
        "worldwide"
    )
    cross_border_transfer: bool = False
    term_days: int | None = Field(default=None, ge=1, le=36_500)
    attribution: bool = True
    share_alike: bool = False
    liability_cap: int | None = Field(default=None, ge=0, le=10**13)


class ListingCreate(Strict):
    version_id: str
    title: str = Field(min_length=1, max_length=200)
    summary: str = Field(default="", max_length=5_000)
    price_amount: int = Field(ge=0, le=10**12, description="Price in minor units (cents, fen).")
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    allowed_uses: list[Use] = Field(default_factory=lambda: list(USES), min_length=1)
    contract_parameters: ContractParameters = Field(default_factory=ContractParameters)
    training_price_per_million_tokens: int = Field(
        default=0, ge=0, le=10**12, description="Metered plan: minor units per 1M trained tokens."
    )


class DelistRequest(Strict):
    reason: str = Field(min_length=1, max_length=2_000)


class ListingReview(Strict):
    decision: Literal["approve", "reject"]
    notes: str = Field(default="", max_length=5_000)


class ListingPublic(Public):
    id: str
    version_id: str
    organization_id: str
    title: str
    summary: str
    status: str
    price_amount: int
    currency: str
    license_template: str
    allowed_uses: list[str]
    contract_parameters: dict[str, Any]
    training_price_per_million_tokens: int
    license: str
    allowed_use: str
    num_rows: int
    review_notes: str
    checklist: list[dict[str, Any]]
    created_at: dt.datetime
    reviewed_at: dt.datetime | None


class ListingsPublic(Public):
    data: list[ListingPublic]
    count: int


class LicenseCreate(Strict):
    listing_id: str
    uses: list[Use] | None = Field(default=None, description="Defaults to every allowed use.")


class EntitlementPublic(Public):
    id: str
    license_id: str
    organization_id: str
    version_id: str
    uses: list[str]
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    created_at: dt.datetime


class LicensePublic(Public):
    id: str
    listing_id: str
    version_id: str
    buyer_organization_id: str
    seller_organization_id: str
    price_amount: int
    currency: str
    license_template: str
    uses: list[str]
    created_at: dt.datetime
    entitlement: EntitlementPublic
    certificate_id: str
    contract_filing_number: str | None


class ContractPublic(Public):
    id: str
    license_id: str
    template: str
    template_sha256: str
    parameters: dict[str, Any]
    text_en: str
    text_zh: str
    sha256: str
    filing_number: str
    seller_accepted_at: dt.datetime
    buyer_accepted_at: dt.datetime
    filed_at: dt.datetime


class CertificatePublic(BaseModel):
    payload: dict[str, Any]
    signature: str
    key_id: str
    algorithm: str


class SigningKeyPublic(BaseModel):
    key_id: str
    algorithm: str
    public_key_pem: str


# Training jobs ------------------------------------------------------------------------------


class TrainingJobCreate(Strict):
    version_id: str
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingJobPublic(Public):
    id: str
    organization_id: str
    version_id: str
    status: str
    params: dict[str, Any]
    grant_hash: str
    error: str | None
    result: dict[str, Any] | None
    artifacts: list[dict[str, Any]]
    trained_tokens: int
    currency: str
    held_amount: int
    charged_amount: int
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class TrainingJobEventPublic(Public):
    seq: int
    at: dt.datetime
    type: str
    data: dict[str, Any]


class TrainingJobEventsPublic(Public):
    data: list[TrainingJobEventPublic]
    count: int


# Settlement and audit ------------------------------------------------------------------------


class TransferCreate(Strict):
    organization_id: str
    amount: int = Field(gt=0, le=10**13, description="Minor units (cents, fen).")
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    memo: str = Field(default="", max_length=500)


class LedgerTransactionPublic(Public):
    id: str
    kind: str
    currency: str
    reference_type: str | None
    reference_id: str | None
    memo: str
    created_at: dt.datetime


class AuditChainPublic(BaseModel):
    intact: bool
    events: int
    head_hash: str
    first_broken_seq: int | None
    problem: str | None
