"""Card revisions on SQLite: numbered, hashed, audited; machine facts cannot be edited by hand."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

import dataset_cards.models
from dataset_cards import service
from dataset_cards.errors import (
    CardNotFoundError,
    InvalidCardError,
    ReadOnlyFieldError,
)
from dataset_cards.models import CardRevision
from dataset_cards.revisions import FieldChange, card_sha256
from dataset_cards.schema import DatasetCard
from infra.db import Base, import_all_models, utcnow
from marketplace.models import AuditEvent, Dataset, DatasetVersion, Organization
from marketplace.services.audit import verify_chain

assert dataset_cards.models.CardRevision is CardRevision  # the module registers the table


@pytest.fixture
def session() -> Iterator[Session]:
    """A session on a fresh in-memory SQLite database built from the models (foreign keys on)."""
    import_all_models()
    engine = sa.create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    sa.event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA foreign_keys=ON"))
    Base.metadata.create_all(engine)
    with sessionmaker(bind=engine, expire_on_commit=False)() as session:
        yield session
    engine.dispose()


@pytest.fixture
def version_id(session: Session, card: DatasetCard) -> str:
    """A stored version whose card is the one curation wrote."""
    session.add(Organization(id="org_math", name="Math Co", roles=["contributor"]))
    session.flush()
    session.add(
        Dataset(id=card.dataset_id, organization_id="org_math", name="gsm8k", license="mit")
    )
    session.flush()
    session.add(
        DatasetVersion(
            id=card.version_id,
            dataset_id=card.dataset_id,
            number=1,
            content_hash=card.content_hash,
            num_rows=card.num_rows,
            num_bytes=card.num_bytes,
            features=[],
            files=[],
            report={},
            card=card.model_dump(mode="json"),
            card_key="datasets/x/README.md",
            created_at=utcnow(),
        )
    )
    session.commit()
    return card.version_id


def _stored(session: Session, version_id: str) -> dict[str, Any]:
    version = session.get(DatasetVersion, version_id)
    assert version is not None
    session.refresh(version)
    return version.card


def test_record_revision_numbers_hashes_and_keeps_the_version_card(
    session: Session, version_id: str, card: DatasetCard
) -> None:
    first = service.record_revision(
        session, version_id=version_id, card=card, author_organization_id=None
    )
    changed = card.model_copy(update={"biases": "US-centric settings."})
    second = service.record_revision(
        session, version_id=version_id, card=changed, author_organization_id="org_math"
    )

    assert (first.number, second.number) == (1, 2)
    assert first.id.startswith("crv_") and first.sha256 == card_sha256(card)
    assert second.sha256 == card_sha256(changed)
    assert second.author_organization_id == "org_math"
    assert _stored(session, version_id)["biases"] == "US-centric settings."
    assert service.current_card(session, version_id=version_id) == changed


def test_recording_an_unchanged_card_returns_the_latest_revision(
    session: Session, version_id: str, card: DatasetCard
) -> None:
    first = service.record_revision(
        session, version_id=version_id, card=card, author_organization_id=None
    )
    again = service.record_revision(
        session, version_id=version_id, card=card, author_organization_id="org_math"
    )

    assert again.id == first.id
    assert session.scalar(sa.select(sa.func.count()).select_from(CardRevision)) == 1


def test_update_card_applies_human_fields_as_a_new_revision(
    session: Session, version_id: str, card: DatasetCard
) -> None:
    revision = service.update_card(
        session,
        version_id=version_id,
        changes={"biases": "US-centric.", "update_frequency": "one-off", "tags": ["math"]},
        author_organization_id="org_math",
    )

    # the card curation wrote became revision 1, the change revision 2
    assert [r.number for r in service.list_revisions(session, version_id=version_id)] == [1, 2]
    assert revision.number == 2 and revision.author_organization_id == "org_math"
    assert service.diff_revisions(session, version_id=version_id, old_number=1, new_number=2) == [
        FieldChange("tags", [], ["math"]),
        FieldChange("biases", None, "US-centric."),
        FieldChange("update_frequency", None, "one-off"),
    ]
    assert _stored(session, version_id)["update_frequency"] == "one-off"
    events = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "card.revised"))
    assert [e.details["revision"] for e in events] == [1, 2]
    assert verify_chain(session).intact


@pytest.mark.parametrize(
    "field", ["dataset_info", "files", "content_hash", "size_categories", "pii_counts", "provider"]
)
def test_machine_facts_are_refused_and_nothing_is_written(
    session: Session, version_id: str, card: DatasetCard, field: str
) -> None:
    before = _stored(session, version_id)

    with pytest.raises(ReadOnlyFieldError, match=rf"^{field} is a fact curation measured") as err:
        service.update_card(
            session,
            version_id=version_id,
            changes={"biases": "x", field: None},
            author_organization_id="org_math",
        )
    assert err.value.field == field
    assert _stored(session, version_id) == before
    assert service.list_revisions(session, version_id=version_id) == []


def test_an_invalid_change_names_the_field_and_leaves_the_card_unchanged(
    session: Session, version_id: str, card: DatasetCard
) -> None:
    service.update_card(
        session, version_id=version_id, changes={"biases": "x"}, author_organization_id=None
    )
    before = _stored(session, version_id)

    with pytest.raises(InvalidCardError, match=r"license: .*'mit-9' is not a known license"):
        service.update_card(
            session,
            version_id=version_id,
            changes={"license": "mit-9", "scope": "all of it"},
            author_organization_id="org_math",
        )
    with pytest.raises(InvalidCardError, match=r"update_frequency: Input should be"):
        service.update_card(
            session,
            version_id=version_id,
            changes={"update_frequency": "hourly"},
            author_organization_id="org_math",
        )
    with pytest.raises(InvalidCardError, match=r"^surprise: not a field"):
        service.update_card(
            session, version_id=version_id, changes={"surprise": 1}, author_organization_id=None
        )
    assert _stored(session, version_id) == before
    assert len(service.list_revisions(session, version_id=version_id)) == 2


def test_review_fields_are_for_reviewers(session: Session, version_id: str) -> None:
    assessment = {"result": "passed", "assessed_by": "Listing review", "assessed_on": "2026-01-05"}

    with pytest.raises(ReadOnlyFieldError, match="recorded by the exchange's reviewers"):
        service.update_card(
            session,
            version_id=version_id,
            changes={"compliance_assessment": assessment},
            author_organization_id="org_math",
        )
    revision = service.update_card(
        session,
        version_id=version_id,
        changes={"compliance_assessment": assessment, "quality_summary": "Fine."},
        author_organization_id=None,
        reviewer=True,
    )
    card = DatasetCard.model_validate(revision.card)
    assert card.compliance_assessment is not None
    assert card.compliance_assessment.result == "passed"


def test_changing_the_license_updates_its_class(session: Session, version_id: str) -> None:
    revision = service.update_card(
        session,
        version_id=version_id,
        changes={"license": "cc-by-nc-4.0"},
        author_organization_id="org_math",
    )
    card = DatasetCard.model_validate(revision.card)
    assert card.license_class is not None
    assert card.license_class.allowed_use == "non-commercial"

    other = service.update_card(
        session,
        version_id=version_id,
        changes={
            "license": "other",
            "license_name": "uni-1.0",
            "license_link": "https://example.org/uni-1.0",
            "license_class": {
                "allowed_use": "academic",
                "attribution_required": True,
                "share_alike": False,
            },
        },
        author_organization_id="org_math",
    )
    assert other.card["license_class"]["allowed_use"] == "academic"


def test_an_unknown_version_or_revision_is_not_found(
    session: Session, version_id: str, card: DatasetCard
) -> None:
    with pytest.raises(CardNotFoundError, match="dv_nope"):
        service.update_card(
            session, version_id="dv_nope", changes={"biases": "x"}, author_organization_id=None
        )
    with pytest.raises(CardNotFoundError, match="revision 7"):
        service.get_revision(session, version_id=version_id, number=7)


def test_a_card_of_another_version_is_refused(
    session: Session, version_id: str, card: DatasetCard
) -> None:
    stranger = card.model_copy(update={"version_id": "dv_other"})

    with pytest.raises(InvalidCardError, match="the card is of version 'dv_other'"):
        service.record_revision(
            session, version_id=version_id, card=stranger, author_organization_id=None
        )
    assert service.list_revisions(session, version_id=version_id) == []


def test_lint_stored_card_lints_the_current_revision(session: Session, version_id: str) -> None:
    before = {issue.path for issue in service.lint_stored_card(session, version_id=version_id)}
    service.update_card(
        session,
        version_id=version_id,
        changes={"lawful_source_statement": "Published under the MIT licence."},
        author_organization_id="org_math",
    )
    after = {issue.path for issue in service.lint_stored_card(session, version_id=version_id)}

    assert before - after == {"lawful_source_statement"}
