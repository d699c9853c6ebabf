"""The Hugging Face Hub protocol, so buyers fetch licensed versions with ``huggingface_hub`` and
``datasets`` (``HF_ENDPOINT`` set to the exchange, an API key as the token).

Only the read side the clients call is served: dataset repo info by revision, the tree
listing, paths-info and ``resolve`` (see ``docs/hf-protocol.md``). Errors take the Hub's shape,
not the exchange's: ``X-Error-Code`` and ``X-Error-Message`` headers and ``{"error": message}``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from marketplace.api.deps import CurrentPrincipal, SessionDep, StoreDep
from marketplace.errors import AuthenticationError, MarketplaceError
from marketplace.services import delivery
from marketplace.services.delivery import (
    ByteRange,
    Commit,
    Folder,
    HubError,
    RangeNotSatisfiableError,
    RepoFile,
    RepositoryNotFoundError,
)

PAGE_SIZE = 1000
EXPANDED_PAGE_SIZE = 50  # the Hub's page sizes, which the client's pagination expects
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_MEDIA_TYPES = {".parquet": "application/vnd.apache.parquet", ".md": "text/markdown; charset=utf-8"}
# huggingface_hub raises its plain 401 error, not "repository not found", for this exact message.
_INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


class HubRoute(APIRoute):
    """A route whose refusals are Hub errors, including those of the auth dependency."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def hub_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except MarketplaceError as error:
                return hub_error(request, error)

        return hub_handler


def hub_error(request: Request, error: MarketplaceError) -> JSONResponse:
    headers = {"X-Error-Message": _header_value(error.message)}
    if isinstance(error, HubError):
        if error.hub_code:
            headers["X-Error-Code"] = error.hub_code
        if error.commit:
            headers["X-Repo-Commit"] = error.commit
        if isinstance(error, RangeNotSatisfiableError):
            headers["Content-Range"] = f"bytes */{error.size}"
    if isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
        if request.headers.get("authorization"):
            headers["X-Error-Message"] = _INVALID_CREDENTIALS
    return JSONResponse({"error": error.message}, status_code=error.status_code, headers=headers)


router = APIRouter(tags=["hugging face hub"], route_class=HubRoute)


# Repo info ------------------------------------------------------------------------------------


@router.get("/api/datasets/{namespace}/{name}")
def dataset_info(
    namespace: str,
    name: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    store: StoreDep,
    blobs: bool = False,
    expand: Annotated[list[str] | None, Query()] = None,
) -> JSONResponse:
    """``HfApi.dataset_info``: the newest version the caller may see (``main``)."""
    return dataset_info_at_revision(
        namespace, name, "main", session, principal, store, blobs=blobs, expand=expand
    )


@router.get("/api/datasets/{namespace}/{name}/revision/{revision:path}")
def dataset_info_at_revision(
    namespace: str,
    name: str,
    revision: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    store: StoreDep,
    blobs: bool = False,
    expand: Annotated[list[str] | None, Query()] = None,
) -> JSONResponse:
    """``HfApi.dataset_info(revision=...)``: ``main``, a 40-hex commit, or ``v<number>``."""
    info = delivery.repository_info(
        session, store=store, actor=principal, repo_id=f"{namespace}/{name}", revision=revision
    )
    commit = info.commit
    body: dict[str, Any] = {
        "_id": commit.dataset_id,
        "id": commit.repo_id,
        "author": commit.author,
        "sha": commit.sha,
        "createdAt": _timestamp(commit.created_at),
        "lastModified": _timestamp(commit.last_modified),
        "private": commit.private,
        "gated": "manual",  # access comes with a license, never by default
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": info.tags,
        "description": commit.description,
        "cardData": info.card_data,
        "siblings": [_sibling(file, blobs=blobs) for file in info.files],
        "usedStorage": sum(file.size for file in info.files),
    }
    if expand:
        body = {key: value for key, value in body.items() if key in {"_id", "id", *expand}}
    return JSONResponse(body)


def _sibling(file: RepoFile, *, blobs: bool) -> dict[str, Any]:
    sibling: dict[str, Any] = {"rfilename": file.path}
    if blobs:
        sibling |= {"size": file.size, "blobId": file.blob_id}
        if file.lfs:
            sibling["lfs"] = {
                "sha256": file.sha256,
                "size": file.size,
                "pointerSize": file.pointer_size,
            }
    return sibling


# Tree and paths-info --------------------------------------------------------------------------


@router.get("/api/datasets/{namespace}/{name}/tree/{revision}")
def list_tree_root(
    namespace: str,
    name: str,
    revision: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    store: StoreDep,
    recursive: bool = False,
    expand: bool = False,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE)] = None,
) -> JSONResponse:
    """``HfApi.list_repo_tree`` of the whole commit."""
    return list_tree(
        namespace, name, revision, "", request, session, principal, store,
        recursive=recursive, expand=expand, cursor=cursor, limit=limit,
    )  # fmt: skip


@router.get("/api/datasets/{namespace}/{name}/tree/{revision}/{path:path}")
def list_tree(
    namespace: str,
    name: str,
    revision: str,
    path: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    store: StoreDep,
    recursive: bool = False,
    expand: bool = False,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=PAGE_SIZE)] = None,
) -> JSONResponse:
    """``HfApi.list_repo_tree(path_in_repo=...)``, in pages with a ``Link: rel="next"`` header."""
    commit, entries = delivery.list_tree(
        session,
        store=store,
        actor=principal,
        repo_id=f"{namespace}/{name}",
        revision=revision,
        path=path,
        recursive=recursive,
    )
    size = min(limit or PAGE_SIZE, EXPANDED_PAGE_SIZE if expand else PAGE_SIZE)
    page = entries[cursor : cursor + size]
    headers = {"X-Repo-Commit": commit.sha}
    if cursor + size < len(entries):
        following = request.url.include_query_params(cursor=cursor + size)
        headers["Link"] = f'<{following}>; rel="next"'
    return JSONResponse([_entry(entry, commit, expand=expand) for entry in page], headers=headers)


@router.post("/api/datasets/{namespace}/{name}/paths-info/{revision}")
def paths_info(
    namespace: str,
    name: str,
    revision: str,
    paths: Annotated[list[str], Form()],
    session: SessionDep,
    principal: CurrentPrincipal,
    store: StoreDep,
    expand: Annotated[bool, Form()] = False,
) -> JSONResponse:
    """``HfApi.get_paths_info``: the entries of the paths that exist, the rest left out."""
    commit, entries = delivery.paths_info(
        session,
        store=store,
        actor=principal,
        repo_id=f"{namespace}/{name}",
        revision=revision,
        paths=paths,
    )
    return JSONResponse(
        [_entry(entry, commit, expand=expand) for entry in entries],
        headers={"X-Repo-Commit": commit.sha},
    )


def _entry(entry: RepoFile | Folder, commit: Commit, *, expand: bool) -> dict[str, Any]:
    body: dict[str, Any]
    if isinstance(entry, Folder):
        body = {"type": "directory", "oid": entry.tree_id, "size": 0, "path": entry.path}
    else:
        body = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": entry.path}
        if entry.lfs:
            body["lfs"] = {
                "oid": entry.sha256,
                "size": entry.size,
                "pointerSize": entry.pointer_size,
            }
    if expand:
        body["lastCommit"] = {
            "id": commit.sha,
            "title": f"Version {commit.version_number}",
            "date": _timestamp(commit.last_modified),
        }
    return body


# Resolve --------------------------------------------------------------------------------------


# HEAD shares GET's handler; documented once (one route per method keeps operation ids unique).
@router.api_route("/datasets/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET"])
@router.api_route(
    "/datasets/{namespace}/{name}/resolve/{revision}/{path:path}",
    methods=["HEAD"],
    include_in_schema=False,
)
def resolve(
    namespace: str,
    name: str,
    revision: str,
    path: str,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    store: StoreDep,
) -> Response:
    """A file of a commit: its bytes (ranges too), or a 302 to a presigned URL of the store.

    ``X-Repo-Commit`` is always set; the ``ETag`` is the file's SHA-256, quoted.
    """
    found = delivery.resolve_file(
        session,
        store=store,
        actor=principal,
        repo_id=f"{namespace}/{name}",
        revision=revision,
        path=path,
        method=request.method,
        byte_range=_byte_range(request.headers.get("range")),
    )
    file = found.file
    headers = {"X-Repo-Commit": found.commit.sha}
    if found.url is not None:
        headers |= {
            "Location": found.url,
            "X-Linked-Etag": f'"{file.sha256}"',
            "X-Linked-Size": str(file.size),
        }
        return Response(status_code=302, headers=headers)
    headers |= {
        "ETag": f'"{file.sha256}"',
        "Accept-Ranges": "bytes",
        "Content-Length": str(file.size),
    }
    status, start, end = 200, 0, file.size - 1
    if found.byte_range is not None:
        status, (start, end) = 206, found.byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{file.size}"
        headers["Content-Length"] = str(end - start + 1)
    media_type = _MEDIA_TYPES.get(path[path.rfind(".") :], "application/octet-stream")
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    if file.content is not None:
        body = file.content[start : end + 1]
        return Response(body, status_code=status, headers=headers, media_type=media_type)
    chunks = store.open_stream(file.key, start=start, end=end if status == 206 else None)
    return StreamingResponse(chunks, status_code=status, headers=headers, media_type=media_type)


def _byte_range(header: str | None) -> ByteRange | None:
    """A single ``bytes=`` range; anything else is ignored (RFC 9110): the whole file is sent."""
    match = _RANGE.match(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        return ByteRange(suffix=int(last))
    return ByteRange(start=int(first), end=int(last) if last else None)


# Anything else under the Hub's prefixes -------------------------------------------------------


@router.api_route(
    "/api/datasets/{rest:path}", methods=["GET", "HEAD", "POST"], include_in_schema=False
)
@router.api_route("/datasets/{rest:path}", methods=["GET", "HEAD"], include_in_schema=False)
def unknown_repository(rest: str, principal: CurrentPrincipal) -> Response:
    """A repo id without a namespace, or a request this exchange does not serve."""
    raise RepositoryNotFoundError(rest.partition("/resolve/")[0])


def _timestamp(moment: dt.datetime) -> str:
    """The Hub's timestamp format: UTC, milliseconds, ``Z``."""
    utc = moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _header_value(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii").replace("\n", " ")
