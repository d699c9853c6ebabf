"""Datasets, raw uploads and the versions curation makes of them; who may see what.

A dataset has one lead owner (``Dataset.organization_id``, the organisation that created it) and
may have co-owners: contributor organisations the lead invites and that accept
(``DatasetOwner``). Every owner uploads files to it (each upload records its organisation, and
curation stamps each row's provenance with it); a version's ``contributions`` count its rows per
organisation, and sales split the revenue by them. Owners see the dataset, its uploads and its
versions, and download the versions' files; the lead alone manages the card and the listings. A
co-owner can be removed (or leave, or an invitation be withdrawn) only while it has uploaded
nothing to the dataset: once it has, its rows may be in a version, which never changes and keeps
paying it by its share.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow.parquet as pq
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from curation.errors import CurationError, InvalidInputError
from curation.readers import detect_format, validate_file
from curation.steps.base import CONTRIBUTOR_COLUMN
from infra.db import new_id, utcnow
from infra.storage import ObjectStore
from marketplace.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from marketplace.models import (
    Dataset,
    DatasetOwner,
    DatasetVersion,
    Entitlement,
    Listing,
    Organization,
    Upload,
)
from marketplace.services import audit
from marketplace.services.organizations import Principal

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


def owner_ids(session: Session, dataset: Dataset) -> set[str]:
    """The organisations that own ``dataset``: the lead and every accepted co-owner."""
    accepted = session.scalars(
        select(DatasetOwner.organization_id)
        .where(DatasetOwner.dataset_id == dataset.id)
        .where(DatasetOwner.status == "accepted")
    )
    return {dataset.organization_id, *accepted}


def is_owner(session: Session, dataset: Dataset, organization_id: str) -> bool:
    return organization_id in owner_ids(session, dataset)


def get_owned_dataset(session: Session, *, actor: Principal, dataset_id: str) -> Dataset:
    """A dataset the caller's organisation owns or co-owns (operators see all); 404 for others."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or not (
        actor.is_operator or is_owner(session, dataset, actor.organization_id)
    ):
        raise NotFoundError("dataset", dataset_id)
    return dataset


def get_dataset(session: Session, *, actor: Principal, dataset_id: str) -> Dataset:
    """A dataset's metadata: for its owners, operators, and organisations invited to co-own it."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFoundError("dataset", dataset_id)
    if actor.is_operator or dataset.organization_id == actor.organization_id:
        return dataset
    if _membership(session, dataset_id, actor.organization_id) is None:
        raise NotFoundError("dataset", dataset_id)
    return dataset


def list_datasets(session: Session, *, actor: Principal) -> list[Dataset]:
    """The caller's datasets: those it leads, co-owns or is invited to (operators: all)."""
    query = select(Dataset).order_by(Dataset.created_at, Dataset.id)
    if not actor.is_operator:
        member_of = select(DatasetOwner.dataset_id).where(
            DatasetOwner.organization_id == actor.organization_id
        )
        query = query.where(
            or_(Dataset.organization_id == actor.organization_id, Dataset.id.in_(member_of))
        )
    return list(session.scalars(query))


# Co-ownership -------------------------------------------------------------------------------


def _membership(session: Session, dataset_id: str, organization_id: str) -> DatasetOwner | None:
    return session.scalar(
        select(DatasetOwner).where(
            DatasetOwner.dataset_id == dataset_id, DatasetOwner.organization_id == organization_id
        )
    )


def _led_dataset(session: Session, *, actor: Principal, dataset_id: str) -> Dataset:
    """A dataset the caller leads; co-owners are told only the lead may do this."""
    dataset = get_owned_dataset(session, actor=actor, dataset_id=dataset_id)
    if dataset.organization_id != actor.organization_id:
        raise PermissionDeniedError(
            f"only the lead owner of dataset {dataset_id} ({dataset.organization_id}) may "
            "manage its co-owners"
        )
    return dataset


def invite_owner(
    session: Session, *, actor: Principal, dataset_id: str, organization_id: str
) -> DatasetOwner:
    """The lead owner invites a contributor organisation to co-own the dataset."""
    actor.require_role("contributor")
    dataset = _led_dataset(session, actor=actor, dataset_id=dataset_id)
    invitee = session.get(Organization, organization_id)
    if invitee is None:
        raise NotFoundError("organization", organization_id)
    if "contributor" not in invitee.roles:
        raise InvalidRequestError(
            f"organisation {organization_id} has no contributor role, so it cannot co-own data"
        )
    if organization_id == dataset.organization_id:
        raise ConflictError(f"organisation {organization_id} already leads dataset {dataset_id}")
    membership = DatasetOwner(
        id=new_id("dso"),
        dataset_id=dataset.id,
        organization_id=organization_id,
        status="invited",
        invited_by=actor.organization_id,
        created_at=utcnow(),
    )
    session.add(membership)
    try:
        session.flush()
    except IntegrityError as error:
        session.rollback()
        raise ConflictError(
            f"organisation {organization_id} is already invited to or co-owns dataset {dataset_id}"
        ) from error
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="dataset_owner.invited",
        object_type="dataset",
        object_id=dataset.id,
        organization_id=organization_id,
    )
    session.commit()
    return membership


def accept_ownership(
    session: Session, *, actor: Principal, dataset_id: str, organization_id: str
) -> DatasetOwner:
    """The invited organisation accepts; accepting again returns the same membership."""
    if organization_id != actor.organization_id:
        raise PermissionDeniedError(
            f"only organisation {organization_id} itself may accept its invitation"
        )
    membership = _membership(session, dataset_id, organization_id)
    if membership is None:
        raise NotFoundError("invitation to dataset", dataset_id)
    if membership.status == "accepted":
        return membership
    membership.status, membership.accepted_at = "accepted", utcnow()
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="dataset_owner.accepted",
        object_type="dataset",
        object_id=dataset_id,
        organization_id=organization_id,
    )
    session.commit()
    return membership


def list_owners(
    session: Session, *, actor: Principal, dataset_id: str
) -> tuple[Dataset, list[DatasetOwner]]:
    """The dataset and its co-owners (invited and accepted), for its lead, members, operators."""
    dataset = get_dataset(session, actor=actor, dataset_id=dataset_id)
    members = session.scalars(
        select(DatasetOwner)
        .where(DatasetOwner.dataset_id == dataset_id)
        .order_by(DatasetOwner.created_at, DatasetOwner.id)
    )
    return dataset, list(members)


def remove_owner(
    session: Session, *, actor: Principal, dataset_id: str, organization_id: str
) -> None:
    """Withdraw an invitation or remove a co-owner (the lead, the member itself, or operators).

    Refused once the organisation has uploaded to the dataset: its rows may be in a version,
    which never changes and keeps paying it by its share.
    """
    dataset = get_dataset(session, actor=actor, dataset_id=dataset_id)
    if organization_id == dataset.organization_id:
        raise ConflictError(f"organisation {organization_id} leads dataset {dataset_id}")
    allowed = actor.is_operator or actor.organization_id in (
        dataset.organization_id,
        organization_id,
    )
    membership = _membership(session, dataset_id, organization_id)
    if membership is None or not allowed:
        if not allowed and membership is not None:
            raise PermissionDeniedError(
                f"only the lead owner or organisation {organization_id} itself may remove it"
            )
        raise NotFoundError("co-owner of dataset", organization_id)
    uploads = session.scalar(
        select(func.count())
        .select_from(Upload)
        .where(Upload.dataset_id == dataset_id, Upload.organization_id == organization_id)
    )
    in_versions = any(
        organization_id in (contributions or {})
        for contributions in session.scalars(
            select(DatasetVersion.contributions).where(DatasetVersion.dataset_id == dataset_id)
        )
    )
    if uploads or in_versions:
        raise ConflictError(
            f"organisation {organization_id} has contributed {uploads} upload(s) to dataset "
            f"{dataset_id}; a contributing co-owner stays, since versions pay it by its rows"
        )
    session.delete(membership)
    audit.record(
        session,
        actor_organization_id=actor.organization_id,
        action="dataset_owner.removed",
        object_type="dataset",
        object_id=dataset_id,
        organization_id=organization_id,
        status=membership.status,
    )
    session.commit()


def contributions_from_shards(
    paths: Iterable[Path], organization_ids: Mapping[str, str]
) -> dict[str, int]:
    """Rows per contributing organisation id, counted from the shards' provenance.

    ``_contributor`` holds each row's organisation name; ``organization_ids`` maps the names of
    the run's contributors to their ids. A name outside it means the rows are not what the run
    was given, so it raises rather than pay someone by guess.
    """
    counts: Counter[str] = Counter()
    for path in paths:
        column = pq.read_table(path, columns=[CONTRIBUTOR_COLUMN]).column(CONTRIBUTOR_COLUMN)
        for entry in column.value_counts().to_pylist():
            name, rows = entry["values"], entry["counts"]
            if name not in organization_ids:
                raise CurationError(f"{path.name}: rows of unknown contributor {name!r}")
            counts[organization_ids[name]] += rows
    return dict(counts)


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
    if not is_owner(session, dataset, actor.organization_id):  # operators read, owners upload
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
        dataset_id=dataset.id,
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
    if actor.is_operator or is_owner(session, dataset, actor.organization_id):
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
    if not actor.is_operator and not is_owner(session, dataset, actor.organization_id):
        listed = select(Listing.version_id).where(Listing.status == "listed")
        entitled = select(Entitlement.version_id).where(
            Entitlement.organization_id == actor.organization_id
        )
        query = query.where(or_(DatasetVersion.id.in_(listed), DatasetVersion.id.in_(entitled)))
    return list(session.scalars(query))


def version_file_for_download(
    session: Session, *, actor: Principal, version_id: str, path: str
) -> tuple[DatasetVersion, dict[str, object]]:
    """The file record a caller may download: owners (co-owners too) always, buyers with a
    download entitlement."""
    version = get_visible_version(session, actor=actor, version_id=version_id)
    dataset = session.get(Dataset, version.dataset_id)
    assert dataset is not None
    if not is_owner(session, dataset, actor.organization_id) and (
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
