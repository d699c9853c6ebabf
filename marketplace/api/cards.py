"""A version's dataset card: rendered in every form, revised by people, diffed and linted."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import PlainTextResponse, Response

from dataset_cards import service as cards
from dataset_cards.documents import RenderFormat, render_card
from marketplace.api.deps import CurrentPrincipal, SessionDep
from marketplace.errors import NotFoundError
from marketplace.models import Dataset
from marketplace.services import catalog
from marketplace.services.datasets import get_visible_version

router = APIRouter(tags=["dataset cards"])
MEDIA_TYPES = {
    RenderFormat.README: "text/markdown; charset=utf-8",
    RenderFormat.CROISSANT: "application/ld+json",
    RenderFormat.CARD_JSON: "application/json",
    RenderFormat.PRODUCT_MARKDOWN: "text/markdown; charset=utf-8",
    RenderFormat.PRODUCT_HTML: "text/html; charset=utf-8",
}


def _revision_public(revision: Any) -> dict[str, Any]:
    return {
        "version_id": revision.version_id,
        "number": revision.number,
        "sha256": revision.sha256,
        "author_organization_id": revision.author_organization_id,
        "created_at": revision.created_at.isoformat(),
    }


@router.get("/v1/versions/{version_id}/card", response_class=PlainTextResponse)
def get_card(
    version_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    format: Annotated[RenderFormat, Query()] = RenderFormat.README,
) -> Response:
    """The current card as a Hugging Face README (default), croissant.json, card JSON, or the
    bilingual product page (Markdown or HTML)."""
    get_visible_version(session, actor=principal, version_id=version_id)
    card = cards.current_card(session, version_id=version_id)
    return Response(render_card(card, format), media_type=MEDIA_TYPES[format])


@router.patch("/v1/versions/{version_id}/card")
def update_card(
    version_id: str,
    changes: Annotated[dict[str, Any], Body(description="Card fields to set; null clears one.")],
    session: SessionDep,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    """The contributor fills in what a machine cannot know; reviewers record their findings."""
    version = get_visible_version(session, actor=principal, version_id=version_id)
    dataset = session.get(Dataset, version.dataset_id)
    assert dataset is not None
    reviewer = principal.is_operator  # auditors and regulators only read (docs/access.md)
    if dataset.organization_id != principal.organization_id and not reviewer:
        raise NotFoundError("dataset version", version_id)
    revision = catalog.revise_card(
        session,
        version_id=version_id,
        changes=changes,
        author_organization_id=principal.organization_id,
        reviewer=reviewer,
    )
    issues = cards.lint_stored_card(session, version_id=version_id)
    return {**_revision_public(revision), "lint": [issue.as_dict() for issue in issues]}


@router.get("/v1/versions/{version_id}/card/revisions")
def list_revisions(
    version_id: str, session: SessionDep, principal: CurrentPrincipal
) -> list[dict[str, Any]]:
    get_visible_version(session, actor=principal, version_id=version_id)
    return [_revision_public(r) for r in cards.list_revisions(session, version_id=version_id)]


@router.get("/v1/versions/{version_id}/card/diff")
def diff_revisions(
    version_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    old: Annotated[int, Query(alias="from", ge=1)],
    new: Annotated[int, Query(alias="to", ge=1)],
) -> list[dict[str, Any]]:
    """Every field that changed between two revisions, with its old and new value."""
    get_visible_version(session, actor=principal, version_id=version_id)
    changes = cards.diff_revisions(session, version_id=version_id, old_number=old, new_number=new)
    return [{"path": c.path, "old": c.old, "new": c.new} for c in changes]


@router.get("/v1/versions/{version_id}/card/lint")
def lint_card(version_id: str, session: SessionDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """The card's errors (which block a listing) and warnings, each with its field path."""
    get_visible_version(session, actor=principal, version_id=version_id)
    issues = cards.lint_stored_card(session, version_id=version_id)
    return {
        "errors": sum(issue.severity == "error" for issue in issues),
        "issues": [issue.as_dict() for issue in issues],
    }
