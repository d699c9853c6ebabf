"""Delivery of dataset versions through the Hugging Face Hub protocol: repos, revisions, files.

A dataset that has versions is a Hub dataset repository. Its id is ``<namespace>/<name>``: the
slugs of the owning organisation's and of the dataset's names (``Contributor Co`` /
``GSM8K part`` → ``contributor-co/gsm8k-part``). Should two datasets slug alike, the older one
keeps that id and the other answers to ``<namespace>/<dataset id>``, which every dataset also
answers to. The files of a commit are a version's Parquet shards (``data/...``) and its card,
``README.md``. A version's data never changes but its card is revised, so a commit is one state
of a version's card: the card as curation wrote it, then each recorded revision. Its 40-hex sha
derives from the version's content hash, its id and the card revision. ``main`` is the newest
version the caller may see, at its current card; ``v<number>`` names a version at its current
card; an older commit's sha keeps serving the card as it was then.

Who may see what follows the rest of the exchange: a version's metadata (repo info, tree, the
card) for its owner, operators, licensees, and every member once it is listed; its data files
for the owner and for holders of an active ``download`` entitlement. Everyone else gets the
Hub's errors, which these classes carry as ``hub_code`` (the ``X-Error-Code`` header)::

    RepositoryNotFoundError     404 RepoNotFound: no such dataset, or one the caller may not see
    RevisionNotFoundError       404 RevisionNotFound: no such version visible to the caller
    EntryNotFoundError          404 EntryNotFound: no such file or folder in the commit
    GatedRepositoryError        403 GatedRepo: data files without a download entitlement
    RangeNotSatisfiableError    416: a byte range that starts past the end of the file

Every delivery, bytes streamed or a presigned URL handed out, is an audit event
``delivery.hf_file``, committed before the first byte leaves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dataset_cards import service as cards
from dataset_cards.documents import RenderFormat, render_card
from dataset_cards.schema import DatasetCard
from infra.storage import LocalObjectStore, ObjectStore
from marketplace.errors import MarketplaceError
from marketplace.models import Dataset, DatasetVersion, Listing, Organization
from marketplace.services import audit
from marketplace.services.datasets import active_entitlement, list_visible_versions
from marketplace.services.organizations import Principal

README = "README.md"
PRESIGNED_URL_SECONDS = 300
MAX_NAME_PART = 96  # huggingface_hub's limit on each half of a repo id
_WORD = re.compile(r"[a-z0-9]+")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_VERSION_TAG = re.compile(r"^v([1-9][0-9]{0,8})$")
_DATASET_ID = re.compile(r"^ds_[0-9a-f]{32}$")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where it is built
_LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"


# Errors ---------------------------------------------------------------------------------------


class HubError(MarketplaceError):
    """A refusal the Hugging Face client understands; ``commit`` is set once one was resolved."""

    hub_code: str | None = None

    def __init__(self, message: str, *, commit: str | None = None) -> None:
        super().__init__(message)
        self.commit = commit


class RepositoryNotFoundError(HubError):
    status_code, code, hub_code = 404, "not_found", "RepoNotFound"

    def __init__(self, repo_id: str) -> None:
        super().__init__(f"dataset repository {repo_id!r} not found")


class RevisionNotFoundError(HubError):
    status_code, code, hub_code = 404, "not_found", "RevisionNotFound"

    def __init__(self, repo_id: str, revision: str) -> None:
        super().__init__(f"revision {revision!r} not found in dataset {repo_id!r}")


class EntryNotFoundError(HubError):
    status_code, code, hub_code = 404, "not_found", "EntryNotFound"

    def __init__(self, repo_id: str, path: str, *, commit: str) -> None:
        super().__init__(f"{path!r} not found in dataset {repo_id!r}", commit=commit)


class GatedRepositoryError(HubError):
    status_code, code, hub_code = 403, "permission_denied", "GatedRepo"


class RangeNotSatisfiableError(HubError):
    status_code = 416
    code = "range_not_satisfiable"

    def __init__(self, path: str, size: int, *, commit: str) -> None:
        message = f"the byte range starts past the end of {path!r} ({size} bytes)"
        super().__init__(message, commit=commit)
        self.size = size


# Values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepoFile:
    """One file of a commit. Shards are Git LFS files (the Hub's ``lfs`` entry), the card not."""

    path: str
    size: int
    sha256: str
    key: str
    lfs: bool
    blob_id: str
    content: bytes | None = field(default=None, repr=False)  # the card's bytes, already read

    @property
    def pointer_size(self) -> int:
        return len(_LFS_POINTER.format(sha256=self.sha256, size=self.size))


@dataclass(frozen=True)
class Folder:
    path: str
    tree_id: str


@dataclass(frozen=True)
class Commit:
    """A version as a commit of its dataset's repository, as the caller may see it."""

    repo_id: str
    sha: str
    dataset_id: str
    version_id: str
    version_number: int
    card_revision: int  # 0: the card as curation wrote it
    author: str
    description: str
    created_at: dt.datetime
    last_modified: dt.datetime
    private: bool


@dataclass(frozen=True)
class RepositoryInfo:
    commit: Commit
    files: list[RepoFile]
    card_data: dict[str, Any]
    tags: list[str]


@dataclass(frozen=True)
class ByteRange:
    """An HTTP ``Range: bytes=``: ``start``-``end`` (end optional), or the last ``suffix`` bytes."""

    start: int | None = None
    end: int | None = None
    suffix: int | None = None

    def satisfy(self, size: int) -> tuple[int, int] | None:
        """The inclusive positions to serve, or None for the whole file.

        Raises ``ValueError`` when no byte of the file is in the range.
        """
        if self.suffix is not None:
            if self.suffix == 0 or size == 0:
                raise ValueError("empty range")
            return max(size - self.suffix, 0), size - 1
        assert self.start is not None
        if self.end is not None and self.end < self.start:
            return None  # syntactically invalid: RFC 9110 says to ignore the header
        if self.start >= size:
            raise ValueError("range starts past the end")
        end = size - 1 if self.end is None else min(self.end, size - 1)
        return self.start, end


@dataclass(frozen=True)
class Delivery:
    """What to answer a resolve request with: a presigned URL, or bytes from here."""

    commit: Commit
    file: RepoFile
    url: str | None
    byte_range: tuple[int, int] | None


# Names ----------------------------------------------------------------------------------------


def slug(name: str) -> str:
    """``name`` as a repo-id part: lowercase ASCII letters and digits, runs joined by ``-``."""
    return "-".join(_WORD.findall(name.lower()))[:MAX_NAME_PART].strip("-")


def namespace_of(organization: Organization) -> str:
    return slug(organization.name) or organization.id


def commit_sha(version: DatasetVersion, card_revision: int = 0, card_sha256: str = "") -> str:
    """The 40-hex commit of a version at one state of its card (revision 0: curation's)."""
    identity = f"{version.content_hash} {version.id} {card_revision} {card_sha256}"
    return hashlib.sha256(identity.encode()).hexdigest()[:40]


def _git_object_id(kind: str, content: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind.encode(), len(content)) + content).hexdigest()


def _like_pattern(part: str) -> str:
    # Every name that slugs to ``part`` matches (and some others): words in order, anything between.
    return "%" + "%".join(part.split("-")) + "%"


# Finding repositories and commits -------------------------------------------------------------


def _find_dataset(session: Session, repo_id: str) -> tuple[Dataset, str, str]:
    """The dataset a repo id names, with its namespace and canonical id; checks no visibility."""
    namespace, _, name = repo_id.partition("/")
    if not namespace or not name:
        raise RepositoryNotFoundError(repo_id)
    if _DATASET_ID.fullmatch(name):
        row = session.execute(
            select(Dataset, Organization)
            .join(Organization, Organization.id == Dataset.organization_id)
            .where(Dataset.id == name)
        ).first()
        if row is None or namespace_of(row.Organization) != namespace:
            raise RepositoryNotFoundError(repo_id)
        return row.Dataset, namespace, _canonical_id(session, row.Dataset, namespace)
    named = _datasets_named(session, namespace, name)
    if not named:
        raise RepositoryNotFoundError(repo_id)
    return named[0], namespace, f"{namespace}/{name}"


def _datasets_named(session: Session, namespace: str, name: str) -> list[Dataset]:
    """The datasets whose slugs are ``namespace``/``name``, oldest (the id's owner) first."""
    query = select(Dataset, Organization).join(
        Organization, Organization.id == Dataset.organization_id
    )
    if namespace.startswith("org_"):
        query = query.where(Organization.id == namespace)
    else:
        query = query.where(func.lower(Organization.name).like(_like_pattern(namespace)))
    query = query.where(func.lower(Dataset.name).like(_like_pattern(name)))
    rows = session.execute(query.order_by(Dataset.created_at, Dataset.id)).all()
    return [
        row.Dataset
        for row in rows
        if namespace_of(row.Organization) == namespace and slug(row.Dataset.name) == name
    ]


def _canonical_id(session: Session, dataset: Dataset, namespace: str) -> str:
    name = slug(dataset.name)
    if name:
        named = _datasets_named(session, namespace, name)
        if named and named[0].id == dataset.id:
            return f"{namespace}/{name}"
    return f"{namespace}/{dataset.id}"


@dataclass(frozen=True)
class _CardState:
    """One state of a version's card: what its README is rendered from, and when it began."""

    number: int
    sha256: str
    card: dict[str, Any] | None  # None: curation's stored README (revised since)
    since: dt.datetime


@dataclass(frozen=True)
class _Resolved:
    dataset: Dataset
    version: DatasetVersion
    commit: Commit
    card: _CardState


def _card_states(session: Session, version: DatasetVersion) -> list[_CardState]:
    revisions = cards.list_revisions(session, version_id=version.id)
    first = _CardState(0, "", None if revisions else version.card, version.created_at)
    return [first, *(_CardState(r.number, r.sha256, r.card, r.created_at) for r in revisions)]


def _resolve(session: Session, *, actor: Principal, repo_id: str, revision: str) -> _Resolved:
    dataset, namespace, canonical = _find_dataset(session, repo_id)
    versions = list_visible_versions(session, actor=actor, dataset_id=dataset.id)
    if not versions:
        raise RepositoryNotFoundError(repo_id)
    picked = _pick(session, versions, revision)
    if picked is None:
        raise RevisionNotFoundError(repo_id, revision)
    version, card = picked
    listed = session.scalar(
        select(Listing.id)
        .join(DatasetVersion, DatasetVersion.id == Listing.version_id)
        .where(DatasetVersion.dataset_id == dataset.id)
        .where(Listing.status == "listed")
        .limit(1)
    )
    commit = Commit(
        repo_id=canonical,
        sha=commit_sha(version, card.number, card.sha256),
        dataset_id=dataset.id,
        version_id=version.id,
        version_number=version.number,
        card_revision=card.number,
        author=namespace,
        description=dataset.description,
        created_at=dataset.created_at,
        last_modified=card.since,
        private=listed is None,
    )
    return _Resolved(dataset=dataset, version=version, commit=commit, card=card)


def _pick(
    session: Session, versions: Sequence[DatasetVersion], revision: str
) -> tuple[DatasetVersion, _CardState] | None:
    """The version and card state a revision names among the visible versions (by number)."""
    if revision == "main":
        return versions[-1], _card_states(session, versions[-1])[-1]
    tag = _VERSION_TAG.fullmatch(revision)
    if tag:
        number = int(tag.group(1))
        version = next((version for version in versions if version.number == number), None)
        return (version, _card_states(session, version)[-1]) if version else None
    if _COMMIT.fullmatch(revision):
        for version in reversed(versions):
            for card in _card_states(session, version):
                if commit_sha(version, card.number, card.sha256) == revision:
                    return version, card
    return None


# Files ----------------------------------------------------------------------------------------


def _card_file(store: ObjectStore, version: DatasetVersion, card: _CardState) -> RepoFile:
    """The README of one state of the card, rendered as ``GET /v1/versions/{id}/card`` does."""
    if card.card is None:
        content = store.get_bytes(version.card_key)
    else:
        rendered = render_card(DatasetCard.model_validate(card.card), RenderFormat.README)
        content = rendered.encode()
    return RepoFile(
        path=README,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        key=version.card_key,
        lfs=False,
        blob_id=_git_object_id("blob", content),
        content=content,
    )


def _data_file(entry: dict[str, Any]) -> RepoFile:
    sha256, size = str(entry["sha256"]), int(entry["num_bytes"])
    pointer = _LFS_POINTER.format(sha256=sha256, size=size).encode()
    return RepoFile(
        path=str(entry["path"]),
        size=size,
        sha256=sha256,
        key=str(entry["key"]),
        lfs=True,
        blob_id=_git_object_id("blob", pointer),
    )


def _files(store: ObjectStore, resolved: _Resolved) -> list[RepoFile]:
    card = _card_file(store, resolved.version, resolved.card)
    files = [card, *(_data_file(entry) for entry in resolved.version.files)]
    return sorted(files, key=lambda file: file.path)


def _folders(files: Iterable[RepoFile]) -> dict[str, Folder]:
    """Every folder of the commit (the root is ``""``), with its git tree id."""
    trees: dict[str, dict[str, tuple[bool, str]]] = {"": {}}
    for file in files:
        parent, _, name = file.path.rpartition("/")
        trees.setdefault(parent, {})[name] = (False, file.blob_id)
        while parent:
            parent = parent.rpartition("/")[0]
            trees.setdefault(parent, {})
    folders: dict[str, Folder] = {}
    # Deepest first, so that a folder's subfolders are hashed before it.
    for path in sorted(trees, key=lambda p: p.count("/") + bool(p), reverse=True):
        # Git sorts a tree's entries by name, a folder's as if it ended in "/".
        entries = sorted(trees[path].items(), key=lambda item: item[0] + "/" * item[1][0])
        content = b"".join(
            b"%s %s\0" % (b"40000" if is_dir else b"100644", name.encode()) + bytes.fromhex(oid)
            for name, (is_dir, oid) in entries
        )
        folders[path] = Folder(path=path, tree_id=_git_object_id("tree", content))
        if path:
            parent, _, name = path.rpartition("/")
            trees[parent][name] = (True, folders[path].tree_id)
    return folders


def _entries_under(
    files: list[RepoFile], folders: dict[str, Folder], path: str, *, recursive: bool
) -> list[RepoFile | Folder]:
    prefix = f"{path}/" if path else ""
    candidates: list[RepoFile | Folder] = [*(f for f in folders.values() if f.path), *files]
    return sorted(
        (
            entry
            for entry in candidates
            if entry.path.startswith(prefix) and (recursive or "/" not in entry.path[len(prefix) :])
        ),
        key=lambda entry: entry.path,
    )


def _card_data(card: bytes) -> dict[str, Any]:
    """The YAML front matter of a README, as the Hub's ``cardData``."""
    text = card.decode("utf-8", "replace")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    try:
        data = yaml.load(text[4 : end + 1], Loader=_YAML_LOADER)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _tags(card_data: dict[str, Any]) -> list[str]:
    tags = ["format:parquet"]
    for key in ("license", "language", "task_categories", "size_categories"):
        value = card_data.get(key)
        values = value if isinstance(value, list) else [value] if value else []
        tags += [f"{key.removesuffix('_categories')}:{item}" for item in values]
    return tags


# Services -------------------------------------------------------------------------------------


def repository_info(
    session: Session, *, store: ObjectStore, actor: Principal, repo_id: str, revision: str
) -> RepositoryInfo:
    """What ``HfApi.dataset_info`` shows of one commit: its sha, files and card metadata."""
    resolved = _resolve(session, actor=actor, repo_id=repo_id, revision=revision)
    session.commit()  # reading is done; release the transaction before touching storage
    files = _files(store, resolved)
    card = next(file for file in files if file.path == README)
    assert card.content is not None
    card_data = _card_data(card.content)
    return RepositoryInfo(
        commit=resolved.commit, files=files, card_data=card_data, tags=_tags(card_data)
    )


def list_tree(
    session: Session,
    *,
    store: ObjectStore,
    actor: Principal,
    repo_id: str,
    revision: str,
    path: str,
    recursive: bool,
) -> tuple[Commit, list[RepoFile | Folder]]:
    """The files and folders under ``path`` (the root when empty), sorted by path."""
    resolved = _resolve(session, actor=actor, repo_id=repo_id, revision=revision)
    session.commit()
    commit, files = resolved.commit, _files(store, resolved)
    folders = _folders(files)
    path = path.strip("/")
    if path not in folders:
        raise EntryNotFoundError(commit.repo_id, path, commit=commit.sha)
    return commit, _entries_under(files, folders, path, recursive=recursive)


def paths_info(
    session: Session,
    *,
    store: ObjectStore,
    actor: Principal,
    repo_id: str,
    revision: str,
    paths: Sequence[str],
) -> tuple[Commit, list[RepoFile | Folder]]:
    """The entries for those of ``paths`` that exist; the others are left out, as on the Hub."""
    resolved = _resolve(session, actor=actor, repo_id=repo_id, revision=revision)
    session.commit()
    commit, files = resolved.commit, _files(store, resolved)
    by_path: dict[str, RepoFile | Folder] = {file.path: file for file in files}
    by_path |= {folder.path: folder for folder in _folders(files).values() if folder.path}
    wanted = dict.fromkeys(path.strip("/") for path in paths)
    return commit, [by_path[path] for path in wanted if path in by_path]


def resolve_file(
    session: Session,
    *,
    store: ObjectStore,
    actor: Principal,
    repo_id: str,
    revision: str,
    path: str,
    method: str,
    byte_range: ByteRange | None,
) -> Delivery:
    """One file of a commit for a ``resolve`` request, recorded as a delivery where one happens.

    Data files on a store that serves its own URLs (S3) are answered with a presigned URL, on
    HEAD too, since the client downloads from a HEAD's ``Location``; everything else is served
    from here. A HEAD served from here delivers nothing and is not recorded.
    """
    resolved = _resolve(session, actor=actor, repo_id=repo_id, revision=revision)
    dataset, version, commit = resolved.dataset, resolved.version, resolved.commit
    entry = next((entry for entry in version.files if entry["path"] == path), None)
    if entry is None and path != README:
        raise EntryNotFoundError(commit.repo_id, path, commit=commit.sha)
    entitlement_id = None
    if entry is not None and dataset.organization_id != actor.organization_id:
        entitlement = active_entitlement(
            session, organization_id=actor.organization_id, version_id=version.id, use="download"
        )
        if entitlement is None:
            raise GatedRepositoryError(
                f"your organisation holds no download entitlement for version {version.id} of "
                f"{commit.repo_id!r}; license a listing of it first",
                commit=commit.sha,
            )
        entitlement_id = entitlement.id
    file = _data_file(entry) if entry is not None else _card_file(store, version, resolved.card)
    presign = file.lfs and not isinstance(store, LocalObjectStore)
    served: tuple[int, int] | None = None
    if byte_range is not None and not presign:
        try:
            served = byte_range.satisfy(file.size)
        except ValueError:
            raise RangeNotSatisfiableError(path, file.size, commit=commit.sha) from None
    url = store.presigned_get_url(file.key, expires_in=PRESIGNED_URL_SECONDS) if presign else None
    if url is not None or method == "GET":
        audit.record(
            session,
            actor_organization_id=actor.organization_id,
            action="delivery.hf_file",
            object_type="dataset_version",
            object_id=version.id,
            repo_id=commit.repo_id,
            commit=commit.sha,
            path=file.path,
            sha256=file.sha256,
            num_bytes=file.size,
            byte_range=list(served) if served else None,
            via="presigned_url" if url else "stream",
            entitlement_id=entitlement_id,
        )
    session.commit()
    return Delivery(commit=commit, file=file, url=url, byte_range=served)
