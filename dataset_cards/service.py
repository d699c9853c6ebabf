"""Card revisions: a version's card changes only by recording a new, numbered revision.

The version's first card comes from curation. A contributor then fills in what only a person
knows (and the exchange's reviewers record their findings) through :func:`update_card`, which
refuses machine facts and validates the whole card before anything is written. The latest
revision is also kept as the version's ``card``. Services own the transaction: each function
that writes commits once, with an audit event.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dataset_cards.autofill import describe_validation_error
from dataset_cards.errors import (
    CardConflictError,
    CardNotFoundError,
    InvalidCardError,
    ReadOnlyFieldError,
)
from dataset_cards.lint import LintIssue, lint_card
from dataset_cards.models import CardRevision
from dataset_cards.revisions import FieldChange, card_json, card_sha256, diff_cards
from dataset_cards.schema import CONTRIBUTOR_FIELDS, MACHINE_FIELDS, REVIEW_FIELDS, DatasetCard
from infra.db import new_id, utcnow
from marketplace.models import DatasetVersion
from marketplace.services import audit

# Fields whose meaning depends on the licence; a new licence clears them unless they are given.
_LICENSE_DEPENDENT = ("license_name", "license_link", "license_class")


def _version(session: Session, version_id: str, *, lock: bool = False) -> DatasetVersion:
    version = session.get(DatasetVersion, version_id, with_for_update=lock)
    if version is None:
        raise CardNotFoundError(f"dataset version {version_id!r} not found")
    return version


def _load(data: Mapping[str, Any], what: str) -> DatasetCard:
    try:
        return DatasetCard.model_validate(dict(data))
    except ValidationError as exc:
        raise InvalidCardError(f"{what}: {describe_validation_error(exc)}") from exc


def latest_revision(session: Session, *, version_id: str) -> CardRevision | None:
    """The newest revision of the version's card, or ``None`` before the first one."""
    return session.scalars(
        select(CardRevision)
        .where(CardRevision.version_id == version_id)
        .order_by(CardRevision.number.desc())
        .limit(1)
    ).first()


def current_card(session: Session, *, version_id: str) -> DatasetCard:
    """The version's card as it stands: its latest revision, else the card curation wrote."""
    version = _version(session, version_id)
    latest = latest_revision(session, version_id=version_id)
    if latest is not None:
        return _load(latest.card, f"revision {latest.number} of version {version_id}")
    return _load(version.card, f"the card of version {version_id}")


def list_revisions(session: Session, *, version_id: str) -> list[CardRevision]:
    """Every revision of the version's card, oldest first."""
    _version(session, version_id)
    return list(
        session.scalars(
            select(CardRevision)
            .where(CardRevision.version_id == version_id)
            .order_by(CardRevision.number)
        )
    )


def get_revision(session: Session, *, version_id: str, number: int) -> CardRevision:
    revision = session.scalars(
        select(CardRevision).where(
            CardRevision.version_id == version_id, CardRevision.number == number
        )
    ).first()
    if revision is None:
        raise CardNotFoundError(f"revision {number} of the card of version {version_id!r}")
    return revision


def diff_revisions(
    session: Session, *, version_id: str, old_number: int, new_number: int
) -> list[FieldChange]:
    """What changed from one revision of the version's card to another."""
    old = get_revision(session, version_id=version_id, number=old_number)
    new = get_revision(session, version_id=version_id, number=new_number)
    return diff_cards(
        _load(old.card, f"revision {old_number}"), _load(new.card, f"revision {new_number}")
    )


def lint_stored_card(
    session: Session, *, version_id: str, price_plans: list[dict[str, Any]] | None = None
) -> list[LintIssue]:
    """Lint the version's current card (for listing review: any error refuses the listing).

    The data files live in the object store, so their bytes are not read here; the card's own
    sizes, rows, splits and files are checked against each other.
    """
    return lint_card(current_card(session, version_id=version_id), price_plans=price_plans)


def record_revision(
    session: Session, *, version_id: str, card: DatasetCard, author_organization_id: str | None
) -> CardRevision:
    """Record ``card`` as the version's newest revision and commit.

    Returns the latest revision unchanged when ``card`` equals it. Raises
    :class:`CardNotFoundError` for an unknown version, :class:`InvalidCardError` when the card
    is of another version, :class:`CardConflictError` when another revision won the race.
    """
    with _writing(session, version_id):
        _version(session, version_id, lock=True)
        revision = _add_revision(
            session, version_id=version_id, card=card, author_organization_id=author_organization_id
        )
        session.commit()
    return revision


def update_card(
    session: Session,
    *,
    version_id: str,
    changes: Mapping[str, Any],
    author_organization_id: str | None,
    reviewer: bool = False,
) -> CardRevision:
    """Apply a person's changes to the version's card as a new revision, and commit.

    ``changes`` maps card fields to new values (``None`` clears an optional field). Contributors
    may change :data:`~dataset_cards.schema.CONTRIBUTOR_FIELDS`; with ``reviewer`` the
    exchange's reviewers may also set :data:`~dataset_cards.schema.REVIEW_FIELDS`. Machine facts
    are refused with :class:`ReadOnlyFieldError`, a card that breaks the schema with
    :class:`InvalidCardError`, both naming the field; then nothing is written. Changing the
    licence clears ``license_name``, ``license_link`` and ``license_class`` unless given.
    """
    for name in changes:
        if name in MACHINE_FIELDS:
            raise ReadOnlyFieldError(
                f"{name} is a fact curation measured; it cannot be changed by hand", field=name
            )
        if name in REVIEW_FIELDS and not reviewer:
            raise ReadOnlyFieldError(
                f"{name} is recorded by the exchange's reviewers, not the contributor", field=name
            )
        if name not in CONTRIBUTOR_FIELDS and name not in REVIEW_FIELDS:
            raise InvalidCardError(f"{name}: not a field of the dataset card")
    with _writing(session, version_id):
        _version(session, version_id, lock=True)
        current = current_card(session, version_id=version_id)
        revision = _apply(session, version_id, current, changes, author_organization_id)
        session.commit()
    return revision


def _apply(
    session: Session,
    version_id: str,
    current: DatasetCard,
    changes: Mapping[str, Any],
    author_organization_id: str | None,
) -> CardRevision:
    merged = card_json(current)
    if "license" in changes:
        for name in _LICENSE_DEPENDENT:
            if name not in changes:
                merged[name] = None
    merged.update(changes)
    try:
        card = DatasetCard.model_validate(merged)
    except ValidationError as exc:
        raise InvalidCardError(describe_validation_error(exc)) from exc
    if latest_revision(session, version_id=version_id) is None and card != current:
        # the card curation wrote becomes revision 1, so the history starts where the data did
        _add_revision(session, version_id=version_id, card=current, author_organization_id=None)
    return _add_revision(
        session, version_id=version_id, card=card, author_organization_id=author_organization_id
    )


def _add_revision(
    session: Session, *, version_id: str, card: DatasetCard, author_organization_id: str | None
) -> CardRevision:
    version = _version(session, version_id)
    if card.version_id != version_id:
        raise InvalidCardError(
            f"version_id: the card is of version {card.version_id!r}, not {version_id!r}"
        )
    digest = card_sha256(card)
    latest = latest_revision(session, version_id=version_id)
    if latest is not None and latest.sha256 == digest:
        return latest
    number = (
        session.scalar(
            select(func.max(CardRevision.number)).where(CardRevision.version_id == version_id)
        )
        or 0
    ) + 1
    changed = (
        [change.path for change in diff_cards(_load(latest.card, "latest revision"), card)]
        if latest is not None
        else []
    )
    revision = CardRevision(
        id=new_id("crv"),
        version_id=version_id,
        number=number,
        card=card_json(card),
        sha256=digest,
        author_organization_id=author_organization_id,
        created_at=utcnow(),
    )
    session.add(revision)
    version.card = card_json(card)
    audit.record(
        session,
        actor_organization_id=author_organization_id,
        action="card.revised",
        object_type="dataset_version",
        object_id=version_id,
        revision=number,
        sha256=digest,
        changed=changed[:50],
    )
    session.flush()
    return revision


@contextmanager
def _writing(session: Session, version_id: str) -> Iterator[None]:
    """Roll back on any error; a lost race for a revision number is a conflict to retry."""
    try:
        yield
    except IntegrityError as exc:
        session.rollback()
        raise CardConflictError(
            f"another revision of the card of version {version_id!r} was recorded at the same"
            " time; try again"
        ) from exc
    except BaseException:
        session.rollback()
        raise
