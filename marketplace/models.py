"""SQLAlchemy models of the exchange: organisations, datasets, listings, licenses, certificates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    inspect,
    update,
)
from sqlalchemy.orm import Mapped, Session, UOWTransaction, mapped_column, object_session

from infra.db import Base, UTCDateTime, utcnow

ROLES = ("contributor", "buyer", "researcher", "operator", "auditor", "regulator")


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """An API key; only a hash of the secret is kept, the prefix finds the row.

    A key belongs to a user (``user_id``) or, with no user, to the organisation itself (its first
    key and keys made before users existed). ``scopes`` narrows what the key may do (``["*"]``:
    every scope, see ``marketplace.security.SCOPES``); an expired or revoked key is refused.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    license: Mapped[str] = mapped_column(String(64))
    language: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Upload(Base):
    """A raw file a contributor handed over, validated and stored content-addressed."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    object_key: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    num_rows: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetVersion(Base):
    """An immutable, content-addressed version: Parquet shards, a card and a quality report."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    num_rows: Mapped[int] = mapped_column(BigInteger)
    num_bytes: Mapped[int] = mapped_column(BigInteger)
    features: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    card: Mapped[dict[str, Any]] = mapped_column(JSON)
    card_key: Mapped[str] = mapped_column(String(1024))
    contributions: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    curation_run_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def shares(self) -> list[dict[str, Any]]:
        """Rows and fraction of the version per contributing organisation, largest first."""
        total = sum(self.contributions.values())
        return [
            {"organization_id": organization_id, "rows": rows, "fraction": rows / total}
            for organization_id, rows in sorted(
                self.contributions.items(), key=lambda item: (-item[1], item[0])
            )
            if total > 0
        ]


class Listing(Base):
    __tablename__ = "listings"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), index=True)
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    license_template: Mapped[str] = mapped_column(String(64))
    allowed_uses: Mapped[list[str]] = mapped_column(JSON)
    contract_parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Metered plan: charged per million trained tokens on governed training jobs.
    training_price_per_million_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    # Catalog facets and full-text body, copied from the version's card (refreshed on change).
    search_text: Mapped[str] = mapped_column(Text, default="")
    license: Mapped[str] = mapped_column(String(64), default="", index=True)
    allowed_use: Mapped[str] = mapped_column(String(20), default="unspecified", index=True)
    languages: Mapped[str] = mapped_column(String(400), default="")  # "|en|zh|"
    tasks: Mapped[str] = mapped_column(String(1000), default="")  # "|question-answering|"
    num_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    review_notes: Mapped[str] = mapped_column(Text, default="")
    checklist: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reviewed_by: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class License(Base):
    """A concluded trade: the buyer licensed a listed version under a contract template."""

    __tablename__ = "licenses"
    __table_args__ = (UniqueConstraint("buyer_organization_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    listing_id: Mapped[str] = mapped_column(ForeignKey("listings.id"), index=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"))
    buyer_organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    seller_organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    price_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    license_template: Mapped[str] = mapped_column(String(64))
    uses: Mapped[list[str]] = mapped_column(JSON)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The offer it was concluded under (None: before offers) and the plan's terms it fixed:
    # ``price_amount`` is the one-off price or each subscription period's.
    offer_id: Mapped[str | None] = mapped_column(ForeignKey("offers.id"), index=True)
    plan: Mapped[str] = mapped_column(String(20), default="one_off")
    training_price_per_million_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class Entitlement(Base):
    """What a license lets its holder do with one version, until it expires or is revoked."""

    __tablename__ = "entitlements"
    __table_args__ = (Index("ix_entitlements_org_version", "organization_id", "version_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    license_id: Mapped[str] = mapped_column(ForeignKey("licenses.id"), unique=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    version_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"))
    uses: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Governed training under the license: a quota of trained tokens (None: no quota) and the
    # countries where the licensee may use the data (None: the filed contract's territory).
    training_token_quota: Mapped[int | None] = mapped_column(BigInteger)
    training_tokens_used: Mapped[int] = mapped_column(BigInteger, default=0)
    territory: Mapped[list[str] | None] = mapped_column(JSON)


class Contract(Base):
    """The contract of an order: a model contract text rendered with the deal's terms.

    Generated when the order is approved; the buyer and the seller each accept its SHA-256
    (``ContractAcceptance``); the exchange then files it with the next filing number and links
    the license. Once filed it never changes (updating a filed row raises); its SHA-256 and
    filing number go into the certificate.
    """

    __tablename__ = "contracts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), unique=True)
    license_id: Mapped[str | None] = mapped_column(ForeignKey("licenses.id"), unique=True)
    template: Mapped[str] = mapped_column(String(64))
    template_sha256: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    text_en: Mapped[str] = mapped_column(Text)
    text_zh: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    generated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    filing_number: Mapped[str | None] = mapped_column(String(32), unique=True)
    seller_accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    seller_api_key_id: Mapped[str | None] = mapped_column(String(40))
    buyer_accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    buyer_api_key_id: Mapped[str | None] = mapped_column(String(40))
    filed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class FiledContractError(Exception):
    """An attempt to change a contract the exchange has filed."""


@event.listens_for(Contract, "before_update")
def _refuse_changes_to_filed_contracts(_mapper: Any, _connection: Any, contract: Contract) -> None:
    filed_at = inspect(contract).attrs.filed_at.history
    was_filed = [value for value in (*filed_at.deleted, *filed_at.unchanged) if value is not None]
    if was_filed and object_session(contract) is not None:
        session = object_session(contract)
        assert session is not None
        if session.is_modified(contract, include_collections=False):
            raise FiledContractError(
                f"contract {contract.id} was filed as {contract.filing_number}; it cannot change"
            )


class Counter(Base):
    """A named sequence (filing numbers), advanced under a row lock."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


ACCESS_GENERATION = "access_generation"  # a Counter row, made by migration 0013


@event.listens_for(Session, "before_flush")
def _count_access_changes(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    """A flush that writes an organisation, user or key moves the access generation on, in its
    transaction: API processes answer a remembered key only while the generation is unchanged.

    It is registered with the models, so that every process that writes them counts."""
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(instance, ApiKey | User | Organization) for instance in changed):
        session.connection().execute(
            update(Counter).where(Counter.name == ACCESS_GENERATION).values(value=Counter.value + 1)
        )


class Certificate(Base):
    """A signed transaction certificate: canonical JSON payload plus an Ed25519 signature."""

    __tablename__ = "certificates"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    license_id: Mapped[str] = mapped_column(ForeignKey("licenses.id"), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """An append-only, hash-chained record of who did what to which object.

    ``hash`` = SHA-256 of the previous event's hash and this event's canonical JSON, so altering
    or deleting any row breaks every link after it (``aidx audit verify`` finds the first).
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_organization_id: Mapped[str | None] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str] = mapped_column(String(40), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's head: one row, locked by every writer so links are made one at a time."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class Account(Base):
    """A ledger account: an organisation's balance, escrow, the platform's fees, or the outside."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("kind", "organization_id", "currency"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # organization | platform_fee | external
    organization_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerTransaction(Base):
    """One movement of money; its entries sum to zero."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (UniqueConstraint("idempotency_scope", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # top_up | purchase | payout
    currency: Mapped[str] = mapped_column(String(3))
    reference_type: Mapped[str | None] = mapped_column(String(40))
    reference_id: Mapped[str | None] = mapped_column(String(40), index=True)
    memo: Mapped[str] = mapped_column(Text, default="")
    idempotency_scope: Mapped[str] = mapped_column(String(80))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units; credit > 0, debit < 0


class DatasetOwner(Base):
    """A contributor organisation invited to co-own a dataset (its lead: ``organization_id``).

    Once it accepts, it sees the dataset and its versions and uploads files to it; the rows'
    provenance sets its share of each version (``DatasetVersion.contributions``) and so of the
    revenue. The lead alone manages the card and the listings.
    """

    __tablename__ = "dataset_owners"
    __table_args__ = (UniqueConstraint("dataset_id", "organization_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # invited | accepted
    invited_by: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class User(Base):
    """A person of an organisation, holding a subset of its roles; API keys act for a user.

    An organisation admin (``is_admin``) manages the organisation's users and keys. A disabled
    user's keys are refused from the next request on.
    """

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("organization_id", "email"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    roles: Mapped[list[str]] = mapped_column(JSON)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Offer(Base):
    """A plan a listing is sold under: free, one-off, subscription or metered per token.

    Public, or private to one buyer organisation. Its terms never change; a seller withdraws an
    offer and makes another. ``is_default``: the listing's own price fields as a public offer.
    """

    __tablename__ = "offers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    listing_id: Mapped[str] = mapped_column(ForeignKey("listings.id"), index=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    plan: Mapped[str] = mapped_column(String(20))  # free | one_off | subscription | metered
    price_amount: Mapped[int] = mapped_column(BigInteger)  # one-off, or per period
    currency: Mapped[str] = mapped_column(String(3))
    period_unit: Mapped[str | None] = mapped_column(String(10))  # day | month (subscriptions)
    period_length: Mapped[int | None] = mapped_column(Integer)
    renews: Mapped[bool] = mapped_column(Boolean, default=False)
    training_price_per_million_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    uses: Mapped[list[str]] = mapped_column(JSON)
    delivery_mode: Mapped[str] = mapped_column(String(20))  # download | training_only
    contract_parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    buyer_organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id"), index=True
    )  # set: a private offer to that buyer only
    approval: Mapped[str] = mapped_column(String(20))  # automatic | manual
    status: Mapped[str] = mapped_column(String(20))  # active | withdrawn
    created_by_api_key_id: Mapped[str | None] = mapped_column(String(40))
    withdrawn_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Order(Base):
    """A buyer's access request for an offer, from verification to the filed contract.

    requested → approved (the contract is generated; status ``awaiting_acceptance``) or
    ``rejected`` → ``accepted`` (by both parties) → ``filed`` (filing number, settlement, license).
    """

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("buyer_organization_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    offer_id: Mapped[str] = mapped_column(ForeignKey("offers.id"), index=True)
    listing_id: Mapped[str] = mapped_column(ForeignKey("listings.id"))
    version_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"))
    buyer_organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    seller_organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    uses: Mapped[list[str]] = mapped_column(JSON)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # company, use_case, country
    status: Mapped[str] = mapped_column(String(30), index=True)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    license_id: Mapped[str | None] = mapped_column(ForeignKey("licenses.id"), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    filing_idempotency_key: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContractAcceptance(Base):
    """One party's acceptance of a contract: who, when, and the SHA-256 of the text it accepted.

    ``basis``: ``explicit`` (the party accepted this text), ``purchase`` (the buyer's one-step
    purchase request), ``standing_offer`` (the seller's public, automatically approved offer).
    """

    __tablename__ = "contract_acceptances"
    __table_args__ = (UniqueConstraint("contract_id", "party"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), index=True)
    party: Mapped[str] = mapped_column(String(10))  # buyer | seller
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    api_key_id: Mapped[str | None] = mapped_column(String(40))
    contract_sha256: Mapped[str] = mapped_column(String(64))
    basis: Mapped[str] = mapped_column(String(20))
    accepted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
