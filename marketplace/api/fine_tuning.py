"""The OpenAI-shaped fine-tuning API, so the ``openai`` client can drive governed jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import ValidationError

from infra.queue import enqueue
from marketplace.api.deps import CurrentPrincipal, SessionDep, SettingsDep
from marketplace.errors import InvalidRequestError
from marketplace.models import DatasetVersion
from marketplace.services.datasets import get_visible_version
from training_jobs import openai_shape, service
from training_jobs.models import TrainingJob

router = APIRouter(tags=["fine-tuning (OpenAI-shaped)"])


def _model_name(job: TrainingJob) -> str:
    base = job.params.get("base_model")
    return base.rsplit("/", 1)[-1] if isinstance(base, str) else openai_shape.TINY_MODEL


@router.post("/v1/fine_tuning/jobs")
def create_job(
    body: dict[str, Any], session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep
) -> dict[str, Any]:
    try:
        request = openai_shape.JobCreate.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise InvalidRequestError(f"{field}: {first['msg']}") from error
    version: DatasetVersion = get_visible_version(
        session, actor=principal, version_id=request.training_file
    )
    params = openai_shape.training_params(request, num_rows=version.num_rows)
    job = service.submit_job(
        session, actor=principal, version_id=version.id, params=params, settings=settings
    )
    enqueue("training.run", job.id)
    return openai_shape.job_object(job, model=request.model)


@router.get("/v1/fine_tuning/jobs")
def list_jobs(
    session: SessionDep,
    principal: CurrentPrincipal,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    jobs = service.list_jobs(session, actor=principal, after=after, limit=limit + 1)
    return {
        "object": "list",
        "data": [openai_shape.job_object(job, model=_model_name(job)) for job in jobs[:limit]],
        "has_more": len(jobs) > limit,
    }


@router.get("/v1/fine_tuning/jobs/{job_id}")
def retrieve_job(job_id: str, session: SessionDep, principal: CurrentPrincipal) -> dict[str, Any]:
    job = service.get_job(session, actor=principal, job_id=job_id)
    return openai_shape.job_object(job, model=_model_name(job))


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str, session: SessionDep, principal: CurrentPrincipal) -> dict[str, Any]:
    job = service.cancel_job(session, actor=principal, job_id=job_id)
    return openai_shape.job_object(job, model=_model_name(job))


@router.get("/v1/fine_tuning/jobs/{job_id}/events")
def list_events(
    job_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict[str, Any]:
    """Newest first, as the OpenAI API lists them; ``after`` is an event id."""
    events = service.list_events(session, actor=principal, job_id=job_id, after=0)
    newest_first = list(reversed(events))
    if after is not None:
        ids = [openai_shape.event_object(event)["id"] for event in newest_first]
        newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
    page = newest_first[:limit]
    return {
        "object": "list",
        "data": [openai_shape.event_object(event) for event in page],
        "has_more": len(newest_first) > limit,
    }


@router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
def list_checkpoints(
    job_id: str, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Intermediate checkpoints are not kept yet: the list is empty but the job is checked."""
    service.get_job(session, actor=principal, job_id=job_id)
    return {"object": "list", "data": [], "has_more": False}
