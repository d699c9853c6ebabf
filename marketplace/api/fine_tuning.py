"""The OpenAI-shaped fine-tuning API, so the ``openai`` client can drive governed jobs.

Errors here have OpenAI's shape: ``{"error": {"code", "message", "param", "type"}}``, with the
request parameter at fault in ``param`` (``model``, ``training_file``, ``suffix``, ``metadata``,
``method.supervised.hyperparameters.batch_size``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from marketplace.api.deps import CurrentPrincipal, SessionDep, SettingsDep
from marketplace.errors import MarketplaceError, NotFoundError
from marketplace.models import DatasetVersion
from marketplace.services.datasets import get_visible_version
from training_jobs import openai_shape, service
from training_jobs.job_errors import JobRequestError

_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


def openai_error(status: int, code: str, message: str, param: str | None) -> JSONResponse:
    kind = _TYPES.get(status, "invalid_request_error")
    return JSONResponse(
        {"error": {"code": code, "message": message, "param": param, "type": kind}},
        status_code=status,
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )


class OpenAIErrorRoute(APIRoute):
    """Routes whose domain and validation errors answer in OpenAI's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except MarketplaceError as error:
                return openai_error(
                    error.status_code, error.code, error.message, getattr(error, "param", None)
                )
            except RequestValidationError as error:
                first = error.errors()[0]
                field = ".".join(str(part) for part in first["loc"] if part not in ("query",))
                return openai_error(422, "invalid_request", f"{field}: {first['msg']}", field)

        return handle


router = APIRouter(tags=["fine-tuning (OpenAI-shaped)"], route_class=OpenAIErrorRoute)


@router.post("/v1/fine_tuning/jobs")
def create_job(
    body: dict[str, Any], session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep
) -> dict[str, Any]:
    try:
        request = openai_shape.JobCreate.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise JobRequestError(f"{field}: {first['msg']}", param=field) from error
    try:
        version: DatasetVersion = get_visible_version(
            session, actor=principal, version_id=request.training_file
        )
    except NotFoundError as error:
        raise JobRequestError(
            error.message, param="training_file", code="file_not_found"
        ) from error
    params = openai_shape.training_params(request, num_rows=version.num_rows)
    try:
        job = service.submit_job(
            session,
            actor=principal,
            version_id=version.id,
            params=params,
            settings=settings,
            model=request.model,
            suffix=request.suffix,
            metadata=request.metadata,
            country=request.country,
        )
    except JobRequestError as error:
        error.param = openai_shape.openai_param(error.param, request)
        raise
    service.enqueue_job(job, settings)
    return openai_shape.job_object(job)


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
        "data": [openai_shape.job_object(job) for job in jobs[:limit]],
        "has_more": len(jobs) > limit,
    }


@router.get("/v1/fine_tuning/jobs/{job_id}")
def retrieve_job(job_id: str, session: SessionDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return openai_shape.job_object(service.get_job(session, actor=principal, job_id=job_id))


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str, session: SessionDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return openai_shape.job_object(service.cancel_job(session, actor=principal, job_id=job_id))


@router.post("/v1/fine_tuning/jobs/{job_id}/pause")
def pause_job(job_id: str, session: SessionDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """A running job checkpoints at its next step and stops; a queued one stays put."""
    return openai_shape.job_object(service.pause_job(session, actor=principal, job_id=job_id))


@router.post("/v1/fine_tuning/jobs/{job_id}/resume")
def resume_job(
    job_id: str, session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep
) -> dict[str, Any]:
    """A paused job is queued again and continues from its last checkpoint."""
    job = service.resume_job(session, actor=principal, job_id=job_id)
    service.enqueue_job(job, settings)
    return openai_shape.job_object(job)


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
    job_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """The checkpoints kept in the object store, newest first; ``after`` is a checkpoint id."""
    job = service.get_job(session, actor=principal, job_id=job_id)
    checkpoints = service.list_checkpoints(session, actor=principal, job_id=job_id)
    if after is not None:
        ids = [checkpoint.id for checkpoint in checkpoints]
        checkpoints = checkpoints[ids.index(after) + 1 :] if after in ids else []
    data = [openai_shape.checkpoint_object(job, checkpoint) for checkpoint in checkpoints[:limit]]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(checkpoints) > limit,
    }
