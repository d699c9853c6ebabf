"""Human review rounds of dataset versions in Label Studio (operators only).

Starting a round samples the version and creates its Label Studio project; collecting reads the
annotations back; deciding accepts or rejects the round against its thresholds and records the
reviewed accuracy in the version's quality report. The Label Studio token is given with each
call that talks to Label Studio and never stored.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from curation import review
from curation.errors import CurationError
from marketplace import schemas
from marketplace.api.deps import CurrentPrincipal, SessionDep, StoreDep
from marketplace.errors import InvalidRequestError

router = APIRouter(tags=["reviews"])


@router.post("/v1/review-rounds", status_code=201)
def start_review_round(
    body: schemas.ReviewRoundCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    store: StoreDep,
) -> schemas.ReviewRoundPublic:
    """Draw a stratified sample of the version and open its review in a new Label Studio project."""
    try:
        thresholds = review.Thresholds(
            min_pass_rate=body.min_pass_rate,
            min_agreement=body.min_agreement,
            min_annotated_tasks=body.min_annotated_tasks,
        )
    except CurationError as error:
        raise InvalidRequestError(str(error)) from error
    return schemas.ReviewRoundPublic.model_validate(
        review.start_review_round(
            session,
            store,
            actor=principal,
            version_id=body.version_id,
            label_studio_url=body.label_studio_url,
            label_studio_token=body.label_studio_token,
            sample_size=body.sample_size,
            annotators_per_task=body.annotators_per_task,
            strata=body.strata,
            min_per_stratum=body.min_per_stratum,
            seed=body.seed,
            thresholds=thresholds,
        )
    )


@router.get("/v1/review-rounds")
def list_review_rounds(
    session: SessionDep,
    principal: CurrentPrincipal,
    version_id: Annotated[str | None, Query(max_length=40)] = None,
) -> schemas.ReviewRoundsPublic:
    rows = review.list_review_rounds(session, actor=principal, version_id=version_id)
    return schemas.ReviewRoundsPublic(
        data=[schemas.ReviewRoundPublic.model_validate(row) for row in rows], count=len(rows)
    )


@router.get("/v1/review-rounds/{round_id}")
def get_review_round(
    round_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.ReviewRoundPublic:
    return schemas.ReviewRoundPublic.model_validate(
        review.get_review_round(session, actor=principal, round_id=round_id)
    )


@router.post("/v1/review-rounds/{round_id}/collect")
def collect_review_round(
    round_id: str,
    body: schemas.ReviewRoundCollect,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.ReviewRoundPublic:
    """Read the annotations back from Label Studio: pass rate, its interval, agreement."""
    return schemas.ReviewRoundPublic.model_validate(
        review.collect_review_round(
            session, actor=principal, round_id=round_id, label_studio_token=body.label_studio_token
        )
    )


@router.post("/v1/review-rounds/{round_id}/decide")
def decide_review_round(
    round_id: str,
    body: schemas.ReviewRoundDecide,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.ReviewRoundPublic:
    """Accept or reject the round on its collected figures; the version's report follows."""
    return schemas.ReviewRoundPublic.model_validate(
        review.decide_review_round(session, actor=principal, round_id=round_id, notes=body.notes)
    )
