"""Governed fine-tuning jobs: submit, follow events, pause, resume, cancel; checkpoints, the data
validation report and the signed model card of a released model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from marketplace import schemas
from marketplace.api.deps import CurrentPrincipal, SessionDep, SettingsDep, SigningKeyDep, StoreDep
from marketplace.certificates import CertificateError, key_id
from training_jobs import service
from training_jobs.model_card import render_markdown, verify_model_card

router = APIRouter(tags=["training jobs"])


@router.post("/v1/training-jobs", status_code=202)
def submit_job(
    body: schemas.TrainingJobSubmit,
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
) -> schemas.TrainingJobDetail:
    job = service.submit_job(
        session,
        actor=principal,
        version_id=body.version_id,
        params=body.params,
        settings=settings,
        suffix=body.suffix,
        metadata=body.metadata,
        country=body.country,
    )
    service.enqueue_job(job, settings)
    return schemas.TrainingJobDetail.model_validate(job)


@router.get("/v1/training-jobs/{job_id}")
def get_job(
    job_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.TrainingJobDetail:
    return schemas.TrainingJobDetail.model_validate(
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


@router.get("/v1/training-jobs/{job_id}/validation")
def validation_report(
    job_id: str, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """The data validation report: rows, problems by row and field, token counts."""
    return service.validation_report(session, actor=principal, job_id=job_id)


@router.get("/v1/training-jobs/{job_id}/checkpoints")
def list_checkpoints(
    job_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.TrainingJobCheckpointsPublic:
    checkpoints = service.list_checkpoints(session, actor=principal, job_id=job_id)
    return schemas.TrainingJobCheckpointsPublic(
        data=[schemas.TrainingJobCheckpointPublic.model_validate(item) for item in checkpoints],
        count=len(checkpoints),
    )


@router.get("/v1/training-jobs/{job_id}/model-card", response_model=None)
def get_model_card(
    job_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    format: Annotated[Literal["json", "markdown"], Query()] = "json",
) -> dict[str, Any] | PlainTextResponse:
    """The signed model card of a released model (JSON), or its Markdown rendering."""
    card = service.model_card(session, actor=principal, job_id=job_id)
    if format == "markdown":
        return PlainTextResponse(render_markdown(card), media_type="text/markdown")
    return card


@router.post("/v1/model-cards/verify")
def verify_card(
    body: dict[str, Any], principal: CurrentPrincipal, signing_key: SigningKeyDep
) -> schemas.ModelCardVerification:
    """Check a model card against the exchange's key: intact, signed here, a model card."""
    public_key = signing_key.public_key()
    try:
        payload = verify_model_card(body, public_key)
    except CertificateError as error:
        return schemas.ModelCardVerification(
            valid=False, key_id=key_id(public_key), problem=str(error), payload=None
        )
    return schemas.ModelCardVerification(
        valid=True, key_id=key_id(public_key), problem=None, payload=payload
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
) -> schemas.TrainingJobDetail:
    return schemas.TrainingJobDetail.model_validate(
        service.cancel_job(session, actor=principal, job_id=job_id)
    )


@router.post("/v1/training-jobs/{job_id}/pause")
def pause_job(
    job_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.TrainingJobDetail:
    return schemas.TrainingJobDetail.model_validate(
        service.pause_job(session, actor=principal, job_id=job_id)
    )


@router.post("/v1/training-jobs/{job_id}/resume")
def resume_job(
    job_id: str, session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep
) -> schemas.TrainingJobDetail:
    job = service.resume_job(session, actor=principal, job_id=job_id)
    service.enqueue_job(job, settings)
    return schemas.TrainingJobDetail.model_validate(job)
