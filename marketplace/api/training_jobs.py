"""Governed fine-tuning jobs: submit, follow events, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from infra.queue import enqueue
from marketplace import schemas
from marketplace.api.deps import CurrentPrincipal, SessionDep, SettingsDep, StoreDep
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


@router.get("/v1/training-jobs/{job_id}/artifacts/{path:path}")
def download_artifact(
    job_id: str, path: str, session: SessionDep, principal: CurrentPrincipal, store: StoreDep
) -> StreamingResponse:
    """A file of the trained model (safetensors, config, tokenizer), once it is released."""
    artifact = service.released_artifact(session, actor=principal, job_id=job_id, path=path)
    session.close()
    return StreamingResponse(
        store.open_stream(artifact["key"]),
        headers={
            "Content-Length": str(artifact["size"]),
            "X-Checksum-Sha256": str(artifact["sha256"]),
        },
        media_type="application/octet-stream",
    )


@router.post("/v1/training-jobs/{job_id}/cancel")
def cancel_job(
    job_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.TrainingJobPublic:
    return schemas.TrainingJobPublic.model_validate(
        service.cancel_job(session, actor=principal, job_id=job_id)
    )
