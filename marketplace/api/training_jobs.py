"""Governed fine-tuning jobs: submit, follow events, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from infra.queue import enqueue
from marketplace import schemas
from marketplace.api.deps import CurrentPrincipal, SessionDep, SettingsDep
from training_jobs import service

router = APIRouter(tags=["training jobs"])


@router.post("/v1/training-jobs", status_code=202)
def submit_job(
    body: schemas.TrainingJobCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
) -> schemas.TrainingJobPublic:
    job = service.submit_job(
        session, actor=principal, version_id=body.version_id, params=body.params, settings=settings
    )
    enqueue("training.run", job.id)
    return schemas.TrainingJobPublic.model_validate(job)


@router.get("/v1/training-jobs/{job_id}")
def get_job(
    job_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.TrainingJobPublic:
    return schemas.TrainingJobPublic.model_validate(
        service.get_job(session, actor=principal, job_id=job_id)
    )


@router.get("/v1/training-jobs/{job_id}/events")
def list_events(
    job_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    after: Annotated[int, Query(ge=0, description="Only events with a larger seq.")] = 0,
) -> schemas.TrainingJobEventsPublic:
    events = service.list_events(session, actor=principal, job_id=job_id, after=after)
    return schemas.TrainingJobEventsPublic(
        data=[schemas.TrainingJobEventPublic.model_validate(event) for event in events],
        count=len(events),
    )


@router.post("/v1/training-jobs/{job_id}/cancel")
def cancel_job(
    job_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.TrainingJobPublic:
    return schemas.TrainingJobPublic.model_validate(
        service.cancel_job(session, actor=principal, job_id=job_id)
    )
