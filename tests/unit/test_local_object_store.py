"""LocalObjectStore: content addressing, atomic writes, sidecars, listing and presigned URLs."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from pydantic import SecretStr

from infra.config import Settings
from infra.storage import (
    InvalidKeyError,
    InvalidRangeError,
    LocalObjectStore,
    ObjectNotFoundError,
    S3ObjectStore,
    StorageError,
    StoredObject,
    content_key,
    get_object_store,
)
from tests.fixtures.streams import FailingStream

DATA = bytes(range(256)) * 40  # 10 240 bytes, every byte value
DATA_SHA256 = hashlib.sha256(DATA).hexdigest()
LONGEST_KEY = "/".join(["x" * 254, "x" * 255, "x" * 255, "x" * 255, "y"])  # 1024 bytes


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> LocalObjectStore:
    return LocalObjectStore(
        tmp_path / "objects",
        secret_key="unit-test-secret",
        base_url="http://exchange.test/",
        clock=clock,
    )


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# Writing ------------------------------------------------------------------------------------


def test_content_addressed_key_is_derived_from_the_sha256(store: LocalObjectStore) -> None:
    stored = store.put_bytes(DATA)

    assert stored == StoredObject(
        key=f"blobs/sha256/{DATA_SHA256[:2]}/{DATA_SHA256}", size=len(DATA), sha256=DATA_SHA256
    )
    assert stored.key == content_key(DATA_SHA256)
    assert (store.root / stored.key).read_bytes() == DATA


def test_writing_the_same_content_again_leaves_the_object_untouched(
    store: LocalObjectStore,
) -> None:
    first = store.put_bytes(DATA)
    mtime = (store.root / first.key).stat().st_mtime_ns

    second = store.put_stream(io.BytesIO(DATA))

    assert second == first
    assert (store.root / first.key).stat().st_mtime_ns == mtime
    assert [obj.key for obj in store.list()] == [first.key]


def test_content_addressed_write_repairs_a_blob_that_no_longer_matches(
    store: LocalObjectStore,
) -> None:
    stored = store.put_bytes(DATA)
    (store.root / stored.key).write_bytes(b"corrupted")

    assert store.put_bytes(DATA) == stored
    assert store.get_bytes(stored.key) == DATA


def test_put_file_stream_and_bytes_record_size_and_sha256(
    store: LocalObjectStore, tmp_path: Path
) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(DATA)

    results = [
        store.put_file(source, key="a/file.bin"),
        store.put_stream(io.BytesIO(DATA), key="a/stream.bin"),
        store.put_bytes(DATA, key="a/bytes.bin"),
    ]

    for result in results:
        assert (result.size, result.sha256) == (len(DATA), DATA_SHA256)
        assert store.stat(result.key) == result
        assert store.get_bytes(result.key) == DATA


def test_empty_object_is_stored(store: LocalObjectStore) -> None:
    stored = store.put_bytes(b"", key="empty")

    assert stored == StoredObject("empty", 0, hashlib.sha256(b"").hexdigest())
    assert store.get_bytes("empty") == b""


def test_explicit_key_is_overwritten_with_new_content(store: LocalObjectStore) -> None:
    store.put_bytes(b"first version", key="reports/latest.json")

    stored = store.put_bytes(b"second", key="reports/latest.json")

    assert store.get_bytes("reports/latest.json") == b"second"
    assert store.stat("reports/latest.json") == stored
    assert stored.sha256 == hashlib.sha256(b"second").hexdigest()


def test_failed_stream_leaves_nothing_at_the_key_and_no_temp_file(
    store: LocalObjectStore,
) -> None:
    store.put_bytes(b"old", key="datasets/1/train.jsonl")

    with pytest.raises(ConnectionResetError):
        store.put_stream(FailingStream(3 << 20), key="datasets/1/train.jsonl")
    with pytest.raises(ConnectionResetError):
        store.put_stream(FailingStream(100), key="datasets/1/new.jsonl")
    with pytest.raises(ConnectionResetError):
        store.put_stream(FailingStream(100))

    assert store.get_bytes("datasets/1/train.jsonl") == b"old"
    assert not store.exists("datasets/1/new.jsonl")
    assert files_under(store.root) == [".meta/datasets/1/train.jsonl", "datasets/1/train.jsonl"]


def test_interrupted_rename_keeps_the_previous_object(
    store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put_bytes(b"old", key="k")
    real_replace = os.replace

    def crash_on_data_rename(source: str | Path, target: str | Path) -> None:
        if Path(target) == store.root / "k":
            raise OSError("power cut")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_on_data_rename)
    with pytest.raises(OSError, match="power cut"):
        store.put_bytes(b"new!", key="k")
    monkeypatch.undo()

    assert store.get_bytes("k") == b"old"
    # The sidecar already describes the new bytes, so it no longer vouches for the old file.
    assert store.stat("k") == StoredObject("k", 3, None)
    assert list((store.root / ".tmp").iterdir()) == []


def test_stale_temp_files_are_removed(store: LocalObjectStore, clock: Clock) -> None:
    store.put_bytes(b"x", key="k")
    leftover = store.root / ".tmp" / "crashed.part"
    leftover.write_bytes(b"half")
    os.utime(leftover, (clock.now - 7200, clock.now - 7200))

    assert store.remove_stale_temp_files(older_than_seconds=3600) == 1
    assert not leftover.exists()
    assert store.remove_stale_temp_files() == 0


def test_object_and_folder_cannot_share_a_name(store: LocalObjectStore) -> None:
    store.put_bytes(b"file", key="a")
    store.put_bytes(b"nested", key="b/c")

    with pytest.raises(StorageError, match="'a/b'"):
        store.put_bytes(b"x", key="a/b")
    with pytest.raises(StorageError, match="'b'"):
        store.put_bytes(b"x", key="b")

    assert not store.exists("b")
    assert store.get_bytes("a") == b"file"
    assert [obj.key for obj in store.list()] == ["a", "b/c"]


# Keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "a/../../outside",
        "a/./b",
        "a//b",
        "a/",
        "windows\\path",
        "nul\x00byte",
        "x" * 1025,
        "é" * 513,
        "a/" + "x" * 256,
        ".tmp/sneaky",
        ".meta/sneaky",
    ],
)
def test_invalid_keys_are_rejected(store: LocalObjectStore, key: str) -> None:
    with pytest.raises(InvalidKeyError) as raised:
        store.put_bytes(b"data", key=key)
    assert repr(key) in str(raised.value)
    with pytest.raises(InvalidKeyError):
        store.stat(key)
    with pytest.raises(InvalidKeyError):
        store.delete(key)
    assert not (store.root.parent / "outside").exists()


@pytest.mark.parametrize(
    "key", ["a", LONGEST_KEY, "datasets/7/shard-00001.parquet", "ü/..x/.hidden"]
)
def test_unusual_but_valid_keys_are_accepted(store: LocalObjectStore, key: str) -> None:
    store.put_bytes(b"ok", key=key)
    assert store.get_bytes(key) == b"ok"


# Reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 0), (0, 9), (5, 5), (100, 4095), (len(DATA) - 1, len(DATA) - 1), (10_000, 20_000)],
)
def test_range_reads_are_inclusive_and_clamped(
    store: LocalObjectStore, start: int, end: int
) -> None:
    key = store.put_bytes(DATA).key
    assert store.get_range(key, start, end) == DATA[start : end + 1]


def test_open_ended_range_reads_to_the_end(store: LocalObjectStore) -> None:
    key = store.put_bytes(DATA).key
    assert b"".join(store.open_stream(key, start=10_000)) == DATA[10_000:]


@pytest.mark.parametrize(
    ("start", "end"), [(len(DATA), None), (len(DATA), len(DATA) + 5), (-1, 3), (9, 2)]
)
def test_unsatisfiable_ranges_are_refused(
    store: LocalObjectStore, start: int, end: int | None
) -> None:
    key = store.put_bytes(DATA).key
    with pytest.raises(InvalidRangeError):
        store.open_stream(key, start=start, end=end)


def test_stream_yields_chunks_of_at_most_chunk_size(store: LocalObjectStore) -> None:
    key = store.put_bytes(DATA).key

    chunks = list(store.open_stream(key, chunk_size=4096))

    assert [len(chunk) for chunk in chunks] == [4096, 4096, 2048]
    assert b"".join(chunks) == DATA
    ranged = list(store.open_stream(key, chunk_size=1000, start=500, end=2999))
    assert [len(chunk) for chunk in ranged] == [1000, 1000, 500]
    assert b"".join(ranged) == DATA[500:3000]


def test_missing_object_raises_before_the_first_chunk(store: LocalObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError) as raised:
        store.open_stream("no/such/key")
    assert raised.value.key == "no/such/key"
    assert "no/such/key" in str(raised.value)
    with pytest.raises(ObjectNotFoundError):
        store.stat("no/such/key")
    with pytest.raises(ObjectNotFoundError):
        store.get_bytes("no/such/key")
    assert not store.exists("no/such/key")


def test_a_folder_is_not_an_object(store: LocalObjectStore) -> None:
    store.put_bytes(b"x", key="folder/object")
    assert not store.exists("folder")
    with pytest.raises(ObjectNotFoundError):
        store.open_stream("folder")


def test_download_to_writes_the_object(store: LocalObjectStore, tmp_path: Path) -> None:
    key = store.put_bytes(DATA).key
    target = tmp_path / "downloads" / "copy.bin"

    store.download_to(key, target)

    assert target.read_bytes() == DATA
    assert list(target.parent.iterdir()) == [target]


def test_file_written_outside_the_store_has_no_sha256(store: LocalObjectStore) -> None:
    store.put_bytes(b"seed", key="seed")
    (store.root / "manual.txt").write_bytes(b"placed by hand")

    assert store.stat("manual.txt") == StoredObject("manual.txt", 14, None)


def test_file_replaced_by_hand_loses_its_recorded_sha256(store: LocalObjectStore) -> None:
    store.put_bytes(b"original", key="doc.txt")
    (store.root / "doc.txt").write_bytes(b"replaced!")

    assert store.stat("doc.txt") == StoredObject("doc.txt", 9, None)


# Listing and deleting -----------------------------------------------------------------------


def test_list_is_sorted_filtered_by_prefix_and_hides_bookkeeping(
    store: LocalObjectStore,
) -> None:
    for key in ["a/b", "a.txt", "a/a/z", "a0", "b", "ab/c"]:
        store.put_bytes(key.encode(), key=key)
    blob = store.put_bytes(DATA)
    (store.root / ".tmp" / "in-flight.part").write_bytes(b"partial")

    listed = list(store.list())

    assert [obj.key for obj in listed] == sorted(
        ["a/b", "a.txt", "a/a/z", "a0", "b", "ab/c", blob.key]
    )
    assert all(obj.sha256 is not None for obj in listed)
    assert [obj.key for obj in store.list("a/")] == ["a/a/z", "a/b"]
    assert [obj.key for obj in store.list("a")] == ["a.txt", "a/a/z", "a/b", "a0", "ab/c"]
    assert [obj.key for obj in store.list("a/a")] == ["a/a/z"]
    assert list(store.list("blobs/")) == [blob]
    assert list(store.list("nothing/here/")) == []
    assert list(store.list(".")) == []


def test_list_of_an_empty_store_is_empty(store: LocalObjectStore) -> None:
    assert list(store.list()) == []


def test_list_rejects_a_prefix_that_escapes_the_store(store: LocalObjectStore) -> None:
    with pytest.raises(InvalidKeyError):
        list(store.list("../"))


def test_delete_is_idempotent_and_removes_the_sidecar(store: LocalObjectStore) -> None:
    store.put_bytes(b"x", key="gone/soon")

    store.delete("gone/soon")
    store.delete("gone/soon")
    store.delete("never/existed")

    assert not store.exists("gone/soon")
    assert files_under(store.root) == []


# Presigned URLs -----------------------------------------------------------------------------


def parse_presigned(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    key = unquote(parts.path.removeprefix("/v1/objects/"))
    return key, query["expires"][0], query["signature"][0]


def test_presigned_url_points_at_the_api_and_verifies(
    store: LocalObjectStore, clock: Clock
) -> None:
    url = store.presigned_get_url("datasets/1/train data.jsonl", expires_in=600)

    assert url.startswith("http://exchange.test/v1/objects/datasets/1/train%20data.jsonl?")
    key, expires, signature = parse_presigned(url)
    assert key == "datasets/1/train data.jsonl"
    assert int(expires) == int(clock.now) + 600
    assert store.verify_presigned(key, expires, signature)
    assert store.verify_presigned(key, int(expires), signature)


def test_expired_presigned_url_is_refused(store: LocalObjectStore, clock: Clock) -> None:
    key, expires, signature = parse_presigned(store.presigned_get_url("k", expires_in=60))

    clock.now += 61

    assert not store.verify_presigned(key, expires, signature)


def test_tampered_presigned_url_is_refused(store: LocalObjectStore) -> None:
    key, expires, signature = parse_presigned(store.presigned_get_url("k", expires_in=60))
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]

    assert not store.verify_presigned("other", expires, signature)
    assert not store.verify_presigned(key, str(int(expires) + 3600), signature)
    assert not store.verify_presigned(key, expires, flipped)
    assert not store.verify_presigned(key, expires, "")
    assert not store.verify_presigned(key, "soon", signature)
    assert not store.verify_presigned(key, expires, "ü" * 64)
    assert not store.verify_presigned("../k", expires, signature)


def test_presigned_url_from_another_secret_is_refused(tmp_path: Path, clock: Clock) -> None:
    ours = LocalObjectStore(tmp_path, secret_key="ours", clock=clock)
    theirs = LocalObjectStore(tmp_path, secret_key="theirs", clock=clock)

    key, expires, signature = parse_presigned(theirs.presigned_get_url("k"))

    assert not ours.verify_presigned(key, expires, signature)


# Choosing a backend -------------------------------------------------------------------------


def test_settings_without_a_bucket_give_a_local_store(tmp_path: Path) -> None:
    settings = Settings(storage_root=tmp_path / "store", public_base_url="https://x.test/")

    store = get_object_store(settings)

    assert isinstance(store, LocalObjectStore)
    assert store.root == (tmp_path / "store").resolve()
    assert store.presigned_get_url("k").startswith("https://x.test/v1/objects/k?")
    assert not store.root.exists()  # nothing is created until the first write


def test_settings_with_a_bucket_give_an_s3_store() -> None:
    settings = Settings(
        s3_bucket="aidx",
        s3_endpoint_url="http://127.0.0.1:9",
        s3_region="eu-west-1",
        s3_access_key_id="id",
        s3_secret_access_key=SecretStr("secret"),
    )

    store = get_object_store(settings)

    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.endpoint_url, store.region) == (
        "aidx",
        "http://127.0.0.1:9",
        "eu-west-1",
    )
    assert store._client_instance is None  # no client until first use
