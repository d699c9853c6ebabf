"""Request and response bodies of the HTTP API, one schema family per entity."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

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
    scopes: list[str] | None = Field(
        default=None,
        max_length=50,
        description="What the key may reach (see docs/access.md); '*' for every scope. "
        "Default: the issuing key's scopes. A key never grants more than its issuer's.",
    )
    expires_at: dt.datetime | None = Field(
        default=None, description="When the key stops working (with a timezone); never if absent."
    )
    user_id: str | None = Field(
        default=None,
        max_length=40,
        description="The user the key acts for; by default the issuing key's own user.",
    )

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a timezone, e.g. 2030-01-01T00:00:00Z")
        return value


class ApiKeyPublic(Public):
    """A key as listed: never its secret, only the prefix that identifies it."""

    id: str
    organization_id: str
    user_id: str | None
    name: str
    prefix: str
    scopes: list[str]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyPublic):
    api_key: str = Field(description="The key itself; shown once, stored only as a hash.")


class OrganizationCreated(OrganizationPublic):
    api_key: ApiKeyCreated


class Me(Public):
    organization: OrganizationPublic
    api_key_id: str
    user_id: str | None = Field(description="None for an organisation key.")
    roles: list[str] = Field(
        description="The effective roles: the user's roles the organisation holds."
    )
    scopes: list[str]
    is_admin: bool


EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"


class UserCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=320, pattern=EMAIL_PATTERN)
    roles: list[Role] = Field(default_factory=list, description="A subset of the org's roles.")
    is_admin: bool = False


class UserPublic(Public):
    id: str
    organization_id: str
    name: str
    email: str
    roles: list[str]
    is_admin: bool
    created_at: dt.datetime
    disabled_at: dt.datetime | None


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
    progress: dict[str, Any] | None = Field(
        default=None,
        description="Per stage: tasks done of total, rows in and out so far, each finished "
        "shard's rows; updated while the run is on the worker.",
    )


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

    template: Literal["aidx-ai-training-v1", "aidx-ai-training-v2"] = "aidx-ai-training-v2"
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
    training_token_quota: int | None = Field(
        default=None, ge=1, le=10**15, description="Most tokens governed training may consume."
    )


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
    """A one-step purchase under a public (or own private), automatically approved offer."""

    listing_id: str = Field(min_length=1, max_length=40)
    offer_id: str | None = Field(
        default=None, max_length=40, description="Defaults to the listing's own public offer."
    )
    uses: list[Use] | None = Field(default=None, description="Defaults to every use offered.")


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
    offer_id: str | None
    plan: str
    training_price_per_million_tokens: int
    order_id: str | None
    entitlement: EntitlementPublic
    certificate_id: str
    contract_filing_number: str | None


class ContractAcceptancePublic(Public):
    party: str
    organization_id: str
    api_key_id: str | None
    contract_sha256: str
    basis: str
    accepted_at: dt.datetime


class ContractPublic(Public):
    """A contract: generated (not filed yet: no filing number) or filed, and then immutable."""

    id: str
    order_id: str | None
    license_id: str | None
    template: str
    template_sha256: str
    parameters: dict[str, Any]
    text_en: str
    text_zh: str
    sha256: str
    generated_at: dt.datetime
    filing_number: str | None
    seller_accepted_at: dt.datetime | None
    buyer_accepted_at: dt.datetime | None
    filed_at: dt.datetime | None
    acceptances: list[ContractAcceptancePublic] = Field(default_factory=list)


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


class AuditEventPublic(Public):
    seq: int
    at: dt.datetime
    actor_organization_id: str | None
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


# Co-owned datasets, previews and column statistics --------------------------------------------


class DatasetOwnerCreate(Strict):
    organization_id: str = Field(min_length=1, max_length=40)


class DatasetOwnerPublic(Public):
    """One owner of a dataset: its lead, or a co-owner (invited until it accepts)."""

    dataset_id: str
    organization_id: str
    role: Literal["lead", "co_owner"]
    status: Literal["invited", "accepted"]
    invited_by: str | None
    created_at: dt.datetime
    accepted_at: dt.datetime | None


class ContributedUploadPublic(UploadPublic):
    organization_id: str


class ContributionShare(Public):
    organization_id: str
    rows: int
    fraction: float


class DatasetVersionSharesPublic(DatasetVersionPublic):
    """A version with each contributing organisation's rows and fraction (its revenue share)."""

    shares: list[ContributionShare]


class ListingPreviewPublic(BaseModel):
    listing_id: str
    version_id: str
    columns: list[str]
    rows: list[dict[str, Any]]
    limit: int = Field(description="The most rows this caller may see of this listing.")
    limited: bool = Field(
        description="True when the listing is paid and the caller holds no license."
    )
    redactions: dict[str, int] = Field(
        description="Personal data replaced, per kind, in these rows."
    )
    truncated_values: int = Field(description="Text values cut to the preview's length limit.")


class ColumnStatistics(BaseModel):
    name: str
    type: str
    kind: Literal["number", "text", "boolean", "other"]
    null_fraction: float
    distinct_estimate: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    length_histogram: list[dict[str, Any]] | None = None
    top_values: list[dict[str, Any]] | None = None
    true_fraction: float | None = None


class ListingStatisticsPublic(BaseModel):
    listing_id: str
    version_id: str
    num_rows: int
    limited: bool
    columns: list[ColumnStatistics]


# Offers and orders ---------------------------------------------------------------------------


Plan = Literal["free", "one_off", "subscription", "metered"]
DeliveryMode = Literal["download", "training_only"]

# ISO 3166-1 alpha-2: the officially assigned codes (249).
_ISO_3166_ALPHA_2 = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM
ZW
"""
COUNTRY_CODES = frozenset(_ISO_3166_ALPHA_2.split())


def _country_code(value: str) -> str:
    if value not in COUNTRY_CODES:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. CN, DE, US)")
    return value


CountryCode = Annotated[str, Field(min_length=2, max_length=2), AfterValidator(_country_code)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


class OfferCreate(Strict):
    """A plan the seller offers its listing under; the plan decides which fields apply.

    free: no price. one_off: ``price_amount`` once. subscription: ``price_amount`` per period of
    ``period_length`` ``period_unit``s, renewable (``renews``) or a fixed term. metered: no
    upfront price, ``training_price_per_million_tokens`` on governed training jobs.
    """

    plan: Plan
    price_amount: int = Field(
        default=0, ge=0, le=10**12, description="Minor units: once, or per subscription period."
    )
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    period_unit: Literal["day", "month"] | None = None
    period_length: int | None = Field(default=None, ge=1, le=3_650)
    renews: bool = False
    training_price_per_million_tokens: int = Field(default=0, ge=0, le=10**12)
    uses: list[Use] | None = Field(
        default=None, min_length=1, description="Defaults from the delivery mode."
    )
    delivery_mode: DeliveryMode = "download"
    contract_parameters: ContractParameters | None = Field(
        default=None, description="The contract's terms; the listing's when omitted."
    )
    buyer_organization_id: str | None = Field(
        default=None, max_length=40, description="Set: a private offer to that buyer only."
    )
    approval: Literal["automatic", "manual"] = "automatic"


class OfferWithdraw(Strict):
    reason: str = Field(min_length=1, max_length=2_000)


class OfferPublic(Public):
    id: str
    listing_id: str
    organization_id: str
    is_default: bool
    plan: str
    price_amount: int
    currency: str
    period_unit: str | None
    period_length: int | None
    renews: bool
    training_price_per_million_tokens: int
    uses: list[str]
    delivery_mode: str
    contract_parameters: dict[str, Any]
    buyer_organization_id: str | None
    approval: str
    status: str
    withdrawn_reason: str
    created_at: dt.datetime
    withdrawn_at: dt.datetime | None


class OffersPublic(Public):
    data: list[OfferPublic]
    count: int


class Verification(Strict):
    """Who asks for access and why; the seller (or the operator) reads it before approving."""

    company: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
    use_case: Annotated[str, Field(min_length=1, max_length=2_000), AfterValidator(_not_blank)]
    country: CountryCode


class OrderCreate(Strict):
    offer_id: str = Field(min_length=1, max_length=40)
    uses: list[Use] | None = Field(default=None, description="Defaults to every use offered.")
    verification: Verification


class OrderDecision(Strict):
    decision: Literal["approve", "reject"]
    reason: str = Field(min_length=1, max_length=2_000)


class ContractAcceptanceCreate(Strict):
    contract_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="The SHA-256 of the contract text being accepted."
    )


class OrderPublic(Public):
    id: str
    offer_id: str
    listing_id: str
    version_id: str
    buyer_organization_id: str
    seller_organization_id: str
    uses: list[str]
    verification: dict[str, Any] | None
    status: str
    decision_reason: str
    decided_by: str | None
    decided_at: dt.datetime | None
    license_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    contract_sha256: str | None = None
    filing_number: str | None = None
    acceptances: list[ContractAcceptancePublic] = Field(default_factory=list)


class OrdersPublic(Public):
    data: list[OrderPublic]
    count: int


class EntitlementRevocation(Strict):
    reason: str = Field(min_length=1, max_length=2_000)


# Training job lifecycle -------------------------------------------------------------------------


class TrainingJobSubmit(TrainingJobCreate):
    """``POST /v1/training-jobs``: the version, the parameters and the job's own fields."""

    suffix: str | None = Field(default=None, description="1-64 of a-z, 0-9, '-'; in the model name")
    metadata: dict[str, Any] | None = Field(
        default=None, description="up to 16 string pairs (keys <= 64, values <= 512 characters)"
    )
    country: str | None = Field(
        default=None, description="ISO 3166-1 alpha-2: where the data and the model are used"
    )


class TrainingJobDetail(TrainingJobPublic):
    """A training job with its lifecycle: validation report, names, lease attempts."""

    model: str
    suffix: str | None
    metadata: dict[str, str] | None = Field(validation_alias="user_metadata")
    country: str | None
    fine_tuned_model: str | None
    error_code: str | None
    error_param: str | None
    validation: dict[str, Any] | None
    max_tokens: int
    attempts: int
    run_seconds: float


class TrainingJobCheckpointPublic(Public):
    id: str
    job_id: str
    step: int
    metrics: dict[str, Any]
    files: list[dict[str, Any]]
    created_at: dt.datetime


class TrainingJobCheckpointsPublic(Public):
    data: list[TrainingJobCheckpointPublic]
    count: int


class ModelCardVerification(BaseModel):
    valid: bool
    key_id: str | None
    problem: str | None
    payload: dict[str, Any] | None


# Human review rounds (curation.review) -------------------------------------------------------

StrataDimension = Literal["source", "contributor", "language", "length"]


class ReviewRoundCreate(Strict):
    version_id: str = Field(min_length=1, max_length=40)
    label_studio_url: str = Field(min_length=1, max_length=500, examples=["http://127.0.0.1:8080"])
    label_studio_token: str = Field(
        min_length=1, max_length=500, description="A Label Studio API token; never stored."
    )
    sample_size: int = Field(ge=1, le=5000)
    annotators_per_task: int = Field(default=2, ge=1, le=10)
    strata: list[StrataDimension] | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="Defaults to source file, language (when tagged) and text length.",
    )
    min_per_stratum: int = Field(default=2, ge=0, le=5000)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    min_pass_rate: float = Field(default=0.9, ge=0, le=1)
    min_agreement: float | None = Field(
        default=0.6, ge=-1, le=1, description="Minimum kappa; null: agreement not required."
    )
    min_annotated_tasks: int = Field(default=1, ge=1, le=5000)


class ReviewRoundCollect(Strict):
    label_studio_token: str = Field(min_length=1, max_length=500)


class ReviewRoundDecide(Strict):
    notes: str = Field(default="", max_length=2000)


class ReviewRoundPublic(Public):
    id: str
    version_id: str
    organization_id: str
    label_studio_url: str
    project_id: int
    sample_size: int
    annotators_per_task: int
    seed: int
    strata: dict[str, Any]
    thresholds: dict[str, Any]
    status: str
    annotated_tasks: int | None
    pass_rate: float | None
    agreement: float | None
    agreement_metric: str | None
    issue_counts: dict[str, int] | None
    results: dict[str, Any] | None
    decision_reasons: list[str] | None
    decided_by: str | None
    created_at: dt.datetime
    collected_at: dt.datetime | None
    decided_at: dt.datetime | None


class ReviewRoundsPublic(Public):
    data: list[ReviewRoundPublic]
    count: int
