"""Datasets, raw uploads and the versions curation makes of them; who may see what."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from curation.errors import InvalidInputError
from curation.readers import detect_format, validate_file
from infra.db import new_id, utcnow
from infra.storage import ObjectStore
from marketplace.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.models import Dataset, DatasetVersion, Entitlement, Listing, Upload
from marketplace.services import audit
from marketplace.services.organizations import Principal, get_owned

LICENSE_IDS = frozenset(
    {
        "apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "cc-by-4.0",
        "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "odc-by", "odbl", "pddl",
        "gpl-3.0", "other",
    }
)  # fmt: skip


def create_dataset(
    session: Session,
    *,
    actor: Principal,
    name: str,
    description: str,
    license: str,
    language: list[str],
) -> Dataset:
    actor.require_role("contributor")
    if license not in LICENSE_IDS:
        raise InvalidRequestError(
            f"license {license!r} is not a known id; use one of {', '.join(sorted(LICENSE_IDS))}"
        )
    dataset = Dataset(
        id=new_id("ds"),
        organization_id=actor.organization_id,
        name=name,
        description=description,
        license=license,
        language=language,
        created_at=utcnow(),
    )
    session.add(dataset)
    try:
        session.flush()
    except IntegrityError as error:
        session.rollback()
        raise ConflictError(f"your organisation already has a dataset named {name!r}") from error
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="dataset.created",
        object_type="dataset",
        object_id=dataset.id,
    )
    session.commit()
    return dataset


def get_owned_dataset(session: Session, *, actor: Principal, dataset_id: str) -> Dataset:
    """A dataset the caller's organisation owns (operators see all); 404 for anyone else."""
    return get_owned(session, Dataset, dataset_id, actor=actor, kind="dataset")


def list_datasets(session: Session, *, actor: Principal) -> list[Dataset]:
    query = select(Dataset).order_by(Dataset.created_at)
    if not actor.is_operator:
        query = query.where(Dataset.organization_id == actor.organization_id)
    return list(session.scalars(query))


def add_upload(
    session: Session,
    *,
    store: ObjectStore,
    actor: Principal,
    dataset_id: str,
    filename: str,
    path: Path,
) -> Upload:
    """Validate a raw file completely, then store it; an invalid file leaves nothing behind."""
    if not filename or any(c in filename for c in "/\\\0") or filename in (".", ".."):
        raise InvalidRequestError(f"filename {filename!r} is not a plain file name")
    try:
        file_format = detect_format(filename)
        summary = validate_file(path, format=file_format, source_name=filename)
    except InvalidInputError as error:
        raise InvalidRequestError(str(error)) from error
    dataset = get_owned_dataset(session, actor=actor, dataset_id=dataset_id)
    if dataset.organization_id != actor.organization_id:
        raise NotFoundError("dataset", dataset_id)
    session.commit()  # end the read transaction before the (possibly slow) object-store write
    stored = store.put_file(path)
    assert stored.sha256 is not None
    upload = Upload(
        id=new_id("up"),
        dataset_id=dataset.id,
        organization_id=actor.organization_id,
        filename=filename,
        format=file_format,
        object_key=stored.key,
        sha256=stored.sha256,
        size=stored.size,
        num_rows=summary.num_rows,
        columns=summary.columns,
        created_at=utcnow(),
    )
    session.add(upload)
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="upload.created",
        object_type="upload",
        object_id=upload.id,
        sha256=stored.sha256,
        num_rows=summary.num_rows,
    )
    session.commit()
    return upload


def list_uploads(session: Session, *, actor: Principal, dataset_id: str) -> list[Upload]:
    get_owned_dataset(session, actor=actor, dataset_id=dataset_id)
    return list(
        session.scalars(
            select(Upload).where(Upload.dataset_id == dataset_id).order_by(Upload.created_at)
        )
    )


def list_versions(session: Session, *, actor: Principal, dataset_id: str) -> list[DatasetVersion]:
    get_owned_dataset(session, actor=actor, dataset_id=dataset_id)
    return list(
        session.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.dataset_id == dataset_id)
            .order_by(DatasetVersion.number)
        )
    )


def active_entitlement(
    session: Session, *, organization_id: str, version_id: str, use: str
) -> Entitlement | None:
    """The caller's entitlement covering ``use`` of this version, if one is in force."""
    now = utcnow()
    for entitlement in session.scalars(
        select(Entitlement)
        .where(Entitlement.organization_id == organization_id)
        .where(Entitlement.version_id == version_id)
        .where(Entitlement.revoked_at.is_(None))
        .order_by(Entitlement.created_at)
    ):
        if use in entitlement.uses and (
            entitlement.expires_at is None or entitlement.expires_at > now
        ):
            return entitlement
    return None


def get_visible_version(session: Session, *, actor: Principal, version_id: str) -> DatasetVersion:
    """A version's metadata: for its owner, operators, licensees, or anyone once it is listed."""
    version = session.get(DatasetVersion, version_id)
    if version is None:
        raise NotFoundError("dataset version", version_id)
    dataset = session.get(Dataset, version.dataset_id)
    assert dataset is not None
    if dataset.organization_id == actor.organization_id or actor.is_operator:
        return version
    listed = session.scalar(
        select(Listing.id)
        .where(Listing.version_id == version_id)
        .where(Listing.status == "listed")
        .limit(1)
    )
    entitled = session.scalar(
        select(Entitlement.id)
        .where(Entitlement.version_id == version_id)
        .where(Entitlement.organization_id == actor.organization_id)
        .limit(1)
    )
    if listed is None and entitled is None:
        raise NotFoundError("dataset version", version_id)
    return version


def list_visible_versions(
    session: Session, *, actor: Principal, dataset_id: str
) -> list[DatasetVersion]:
    """The versions of a dataset whose metadata the caller may see (``get_visible_version``'s
    rule), oldest first; empty for an unknown dataset."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        return []
    query = (
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset_id)
        .order_by(DatasetVersion.number)
    )
    if dataset.organization_id != actor.organization_id and not actor.is_operator:
        listed = select(Listing.version_id).where(Listing.status == "listed")
        entitled = select(Entitlement.version_id).where(
            Entitlement.organization_id == actor.organization_id
        )
        query = query.where(or_(DatasetVersion.id.in_(listed), DatasetVersion.id.in_(entitled)))
    return list(session.scalars(query))


def version_file_for_download(
    session: Session, *, actor: Principal, version_id: str, path: str
) -> tuple[DatasetVersion, dict[str, object]]:
    """The file record a caller may download: owners always, buyers with a download entitlement."""
    version = get_visible_version(session, actor=actor, version_id=version_id)
    dataset = session.get(Dataset, version.dataset_id)
    assert dataset is not None
    if dataset.organization_id != actor.organization_id and (
        active_entitlement(
            session, organization_id=actor.organization_id, version_id=version_id, use="download"
        )
        is None
    ):
        raise PermissionDeniedError(
            f"your organisation holds no download entitlement for version {version_id}; "
            "license a listing of it first"
        )
    for file in version.files:
        if file["path"] == path:
            return version, file
    raise NotFoundError(f"file in version {version_id}", path)
