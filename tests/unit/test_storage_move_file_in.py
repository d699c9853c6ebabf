"""ObjectStore.move_file_in: a file taken into the store, renamed where it can be, hashed once."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from infra.storage import (
    LocalObjectStore,
    S3ObjectStore,
    StorageError,
    StoredObject,
    content_key,
)

DATA = os.urandom(3 * 1024 * 1024 + 17)
DATA_SHA256 = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects", secret_key="unit-test-secret")


def scratch_file(tmp_path: Path, name: str = "weights.safetensors", data: bytes = DATA) -> Path:
    path = tmp_path / "scratch" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_file_on_the_store_s_filesystem_is_renamed_in_not_copied(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    source = scratch_file(tmp_path)
    inode = source.stat().st_ino

    stored = store.move_file_in(source, key="jobs/1/step-2/weights.safetensors")

    assert stored == StoredObject("jobs/1/step-2/weights.safetensors", len(DATA), DATA_SHA256)
    assert not source.exists()
    assert (store.root / stored.key).stat().st_ino == inode  # the same file: no byte copied
    assert store.stat(stored.key) == stored  # the sidecar records size and sha256
    assert store.get_bytes(stored.key) == DATA
    assert not any((store.root / ".tmp").iterdir())


def test_a_moved_file_gets_the_mode_of_a_written_object(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    source = scratch_file(tmp_path)
    source.chmod(0o600)  # as safetensors writes its files
    written = store.put_bytes(b"reference", key="written")

    moved = store.move_file_in(source, key="moved")

    assert mode(store.root / moved.key) == mode(store.root / written.key)


def test_without_a_key_the_file_is_content_addressed_and_stored_once(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    first = store.move_file_in(scratch_file(tmp_path, "a"))
    again = scratch_file(tmp_path, "b")

    second = store.move_file_in(again)

    assert first == second == StoredObject(content_key(DATA_SHA256), len(DATA), DATA_SHA256)
    assert not again.exists()
    assert [item.key for item in store.list()] == [content_key(DATA_SHA256)]


def test_the_file_is_hashed_once(
    store: LocalObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests: list[str] = []
    file_digest = hashlib.file_digest

    def counting_file_digest(*args: object, **kwargs: object) -> object:
        digests.append("file")
        return file_digest(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hashlib, "file_digest", counting_file_digest)
    store.move_file_in(scratch_file(tmp_path), key="once")

    assert digests == ["file"]


def test_across_filesystems_the_file_is_copied_then_removed(
    store: LocalObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(source: object, target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)  # what link(2) says across filesystems
    source = scratch_file(tmp_path)

    stored = store.move_file_in(source, key="copied")

    assert stored == StoredObject("copied", len(DATA), DATA_SHA256)
    assert store.stat("copied") == stored
    assert store.get_bytes("copied") == DATA
    assert not source.exists()


def test_a_failed_move_leaves_the_file_where_it_was(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    store.put_bytes(b"an object", key="taken")
    source = scratch_file(tmp_path)

    with pytest.raises(StorageError, match="cannot share a name"):
        store.move_file_in(source, key="taken/inside")

    assert source.read_bytes() == DATA
    assert not any((store.root / ".tmp").iterdir())
    assert store.get_bytes("taken") == b"an object"


def test_a_missing_file_is_an_error_and_stores_nothing(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        store.move_file_in(tmp_path / "missing", key="nothing")

    assert not store.exists("nothing")


def test_the_s3_store_uploads_the_file_then_removes_it(
    s3_store: S3ObjectStore, tmp_path: Path
) -> None:
    source = scratch_file(tmp_path)

    stored = s3_store.move_file_in(source, key="jobs/1/weights")

    assert stored == StoredObject("jobs/1/weights", len(DATA), DATA_SHA256)
    assert s3_store.stat("jobs/1/weights") == stored
    assert s3_store.get_bytes("jobs/1/weights") == DATA
    assert not source.exists()


def reading_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_hashing(*args: object, **kwargs: object) -> object:
        raise AssertionError("the file was read to hash it")

    monkeypatch.setattr(hashlib, "file_digest", no_hashing)


@pytest.mark.parametrize("backend", ["store", "s3_store"])
def test_a_digest_the_caller_computed_is_recorded_without_reading_the_file(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen: LocalObjectStore | S3ObjectStore = request.getfixturevalue(backend)
    source = scratch_file(tmp_path)
    reading_forbidden(monkeypatch)

    stored = chosen.move_file_in(source, key="jobs/1/known", sha256=DATA_SHA256)

    assert stored == StoredObject("jobs/1/known", len(DATA), DATA_SHA256)
    assert chosen.stat("jobs/1/known") == stored
    assert chosen.get_bytes("jobs/1/known") == DATA
    assert not source.exists()


def test_a_digest_that_is_not_sha256_hex_is_refused_and_the_file_stays(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    source = scratch_file(tmp_path)

    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        store.move_file_in(source, key="refused", sha256=DATA_SHA256.upper())

    assert source.read_bytes() == DATA
    assert not store.exists("refused")
    assert not any((store.root / ".tmp").iterdir())
