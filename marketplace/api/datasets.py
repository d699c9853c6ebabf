"""Datasets, raw uploads, curation runs, versions, their files and cards."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse

from curation import service as curation_service
from infra.queue import enqueue
from marketplace import schemas
from marketplace.api.deps import CurrentPrincipal, SessionDep, SettingsDep, StoreDep
from marketplace.errors import InvalidRequestError
from marketplace.models import DatasetOwner
from marketplace.services import datasets

router = APIRouter(tags=["datasets"])
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@router.post("/v1/datasets", status_code=201)
def create_dataset(
    body: schemas.DatasetCreate, session: SessionDep, principal: CurrentPrincipal
) -> schemas.DatasetPublic:
    return schemas.DatasetPublic.model_validate(
        datasets.create_dataset(
            session,
            actor=principal,
            name=body.name,
            description=body.description,
            license=body.license,
            language=body.language,
        )
    )


@router.get("/v1/datasets")
def list_datasets(session: SessionDep, principal: CurrentPrincipal) -> list[schemas.DatasetPublic]:
    return [
        schemas.DatasetPublic.model_validate(dataset)
        for dataset in datasets.list_datasets(session, actor=principal)
    ]


@router.get("/v1/datasets/{dataset_id}")
def get_dataset(
    dataset_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.DatasetPublic:
    return schemas.DatasetPublic.model_validate(
        datasets.get_dataset(session, actor=principal, dataset_id=dataset_id)
    )


def _member_public(member: DatasetOwner) -> schemas.DatasetOwnerPublic:
    return schemas.DatasetOwnerPublic(
        dataset_id=member.dataset_id,
        organization_id=member.organization_id,
        role="co_owner",
        status=member.status,
        invited_by=member.invited_by,
        created_at=member.created_at,
        accepted_at=member.accepted_at,
    )


@router.get("/v1/datasets/{dataset_id}/owners")
def list_owners(
    dataset_id: str, session: SessionDep, principal: CurrentPrincipal
) -> list[schemas.DatasetOwnerPublic]:
    """The lead owner, then the co-owners (invited ones until they accept)."""
    dataset, members = datasets.list_owners(session, actor=principal, dataset_id=dataset_id)
    lead = schemas.DatasetOwnerPublic(
        dataset_id=dataset.id,
        organization_id=dataset.organization_id,
        role="lead",
        status="accepted",
        invited_by=None,
        created_at=dataset.created_at,
        accepted_at=dataset.created_at,
    )
    return [lead, *(_member_public(member) for member in members)]


@router.post("/v1/datasets/{dataset_id}/owners", status_code=201)
def invite_owner(
    dataset_id: str,
    body: schemas.DatasetOwnerCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.DatasetOwnerPublic:
    """The lead owner invites a contributor organisation to co-own the dataset."""
    return _member_public(
        datasets.invite_owner(
            session, actor=principal, dataset_id=dataset_id, organization_id=body.organization_id
        )
    )


@router.post("/v1/datasets/{dataset_id}/owners/{organization_id}/accept")
def accept_ownership(
    dataset_id: str, organization_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.DatasetOwnerPublic:
    """The invited organisation accepts (accepting again gives the same answer)."""
    return _member_public(
        datasets.accept_ownership(
            session, actor=principal, dataset_id=dataset_id, organization_id=organization_id
        )
    )


@router.delete("/v1/datasets/{dataset_id}/owners/{organization_id}", status_code=204)
def remove_owner(
    dataset_id: str, organization_id: str, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Withdraw an invitation, remove a co-owner, or leave; refused once it has uploaded."""
    datasets.remove_owner(
        session, actor=principal, dataset_id=dataset_id, organization_id=organization_id
    )
    return Response(status_code=204)


@router.post("/v1/datasets/{dataset_id}/uploads", status_code=201)
def upload_file(
    dataset_id: str,
    file: UploadFile,
    session: SessionDep,
    principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
) -> schemas.ContributedUploadPublic:
    """Upload one raw file (JSONL, JSON array, CSV, Parquet or text) as multipart ``file``."""
    if not file.filename:
        raise InvalidRequestError("the multipart field 'file' needs a filename")
    with tempfile.TemporaryDirectory(prefix="aidx-upload-") as scratch:
        path = Path(scratch) / "upload"
        with path.open("wb") as handle:
            copied = 0
            while chunk := file.file.read(1 << 20):
                copied += len(chunk)
                if copied > settings.max_upload_bytes:
                    raise InvalidRequestError(
                        f"upload is larger than the limit of {settings.max_upload_bytes} bytes"
                    )
                handle.write(chunk)
        upload = datasets.add_upload(
            session,
            store=store,
            actor=principal,
            dataset_id=dataset_id,
            filename=file.filename,
            path=path,
        )
    return schemas.ContributedUploadPublic.model_validate(upload)


@router.get("/v1/datasets/{dataset_id}/uploads")
def list_uploads(
    dataset_id: str, session: SessionDep, principal: CurrentPrincipal
) -> list[schemas.ContributedUploadPublic]:
    return [
        schemas.ContributedUploadPublic.model_validate(upload)
        for upload in datasets.list_uploads(session, actor=principal, dataset_id=dataset_id)
    ]


@router.post("/v1/datasets/{dataset_id}/curation-runs", status_code=202)
def start_curation_run(
    dataset_id: str,
    body: schemas.CurationRunCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> schemas.CurationRunPublic:
    run = curation_service.start_curation_run(
        session,
        actor=principal,
        dataset_id=dataset_id,
        upload_ids=body.upload_ids,
        recipe=body.recipe,
    )
    enqueue("curation.run", run.id)  # after the commit: the worker must find the run
    return schemas.CurationRunPublic.model_validate(run)


@router.get("/v1/curation-runs/{run_id}")
def get_curation_run(
    run_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.CurationRunPublic:
    run = curation_service.get_run(session, actor=principal, run_id=run_id)
    progress = (run.report or {}).get("progress")
    return schemas.CurationRunPublic.model_validate(run).model_copy(update={"progress": progress})


@router.get("/v1/datasets/{dataset_id}/versions")
def list_versions(
    dataset_id: str, session: SessionDep, principal: CurrentPrincipal
) -> list[schemas.DatasetVersionSharesPublic]:
    return [
        schemas.DatasetVersionSharesPublic.model_validate(version)
        for version in datasets.list_versions(session, actor=principal, dataset_id=dataset_id)
    ]


@router.get("/v1/versions/{version_id}")
def get_version(
    version_id: str, session: SessionDep, principal: CurrentPrincipal
) -> schemas.DatasetVersionSharesPublic:
    """A version's metadata, with each contributing organisation's rows and revenue share."""
    return schemas.DatasetVersionSharesPublic.model_validate(
        datasets.get_visible_version(session, actor=principal, version_id=version_id)
    )


@router.get("/v1/versions/{version_id}/download-urls")
def download_urls(
    version_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    store: StoreDep,
    expires_in: Annotated[int, Query(ge=60, le=7 * 24 * 3600)] = 3600,
) -> list[schemas.DownloadUrl]:
    """Presigned GET URLs of every data file, for clients that fetch directly from storage."""
    version = datasets.get_visible_version(session, actor=principal, version_id=version_id)
    urls = []
    for file in version.files:
        datasets.version_file_for_download(
            session, actor=principal, version_id=version_id, path=file["path"]
        )
        urls.append(
            schemas.DownloadUrl(
                path=file["path"],
                sha256=file["sha256"],
                num_bytes=file["num_bytes"],
                url=store.presigned_get_url(file["key"], expires_in=expires_in),
                expires_in=expires_in,
            )
        )
    return urls


@router.get("/v1/versions/{version_id}/files/{path:path}")
def download_file(
    version_id: str,
    path: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    store: StoreDep,
) -> StreamingResponse:
    """Stream one data file of a version; owners, and licensees with a download entitlement."""
    _version, file = datasets.version_file_for_download(
        session, actor=principal, version_id=version_id, path=path
    )
    size = int(str(file["num_bytes"]))
    key = str(file["key"])
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{file["sha256"]}"',
        "X-Checksum-Sha256": str(file["sha256"]),
    }
    session.close()  # the bytes come from the object store; hold no transaction while streaming
    range_header = request.headers.get("range")
    if range_header:
        match = RANGE.match(range_header.strip())
        if match is None:
            raise InvalidRequestError(f"unsupported Range header {range_header!r}")
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else size - 1
        if start > end or start >= size:
            raise InvalidRequestError(f"Range {range_header!r} is outside the file of {size} bytes")
        end = min(end, size - 1)
        headers |= {
            "Content-Range": f"bytes {start}-{end}/{size}",
            "Content-Length": str(end - start + 1),
        }
        return StreamingResponse(
            store.open_stream(key, start=start, end=end),
            status_code=206,
            headers=headers,
            media_type="application/vnd.apache.parquet",
        )
    headers["Content-Length"] = str(size)
    return StreamingResponse(
        store.open_stream(key), headers=headers, media_type="application/vnd.apache.parquet"
    )
