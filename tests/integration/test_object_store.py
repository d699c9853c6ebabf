"""The object-store contract, checked once against every backend: a local folder and S3 (moto)."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest

from infra.storage import (
    InvalidKeyError,
    InvalidRangeError,
    LocalObjectStore,
    ObjectNotFoundError,
    ObjectStore,
    S3ObjectStore,
    StorageError,
    StoredObject,
    content_key,
)
from tests.fixtures.streams import FailingStream

DATA = os.urandom(300_000)
DATA_SHA256 = hashlib.sha256(DATA).hexdigest()
BIG = os.urandom(12 * 1024 * 1024)  # more than two parts at the fixture's 5 MiB part size
BIG_SHA256 = hashlib.sha256(BIG).hexdigest()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects", secret_key="integration-secret")
    s3_store: S3ObjectStore = request.getfixturevalue("s3_store")
    return s3_store


def read_url(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
        return body


# Writing ------------------------------------------------------------------------------------


def test_content_addressed_write_is_idempotent(store: ObjectStore) -> None:
    first = store.put_bytes(DATA)
    second = store.put_stream(io.BytesIO(DATA))

    assert first == second == StoredObject(content_key(DATA_SHA256), len(DATA), DATA_SHA256)
    assert first.key == f"blobs/sha256/{DATA_SHA256[:2]}/{DATA_SHA256}"
    assert store.stat(first.key) == first
    assert [obj.key for obj in store.list()] == [first.key]


def test_every_way_of_writing_records_size_and_sha256(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(DATA)

    written = [
        store.put_file(source, key="in/file.bin", content_type="application/octet-stream"),
        store.put_stream(io.BytesIO(DATA), key="in/stream.bin"),
        store.put_bytes(DATA, key="in/bytes.bin", content_type="application/octet-stream"),
        store.put_file(source),
    ]

    assert {(obj.size, obj.sha256) for obj in written} == {(len(DATA), DATA_SHA256)}
    for obj in written:
        assert store.stat(obj.key) == obj
        assert store.get_bytes(obj.key) == DATA


def test_explicit_key_is_overwritten(store: ObjectStore) -> None:
    store.put_bytes(b"version one", key="reports/latest.json")
    second = store.put_bytes(b"two", key="reports/latest.json")

    assert store.get_bytes("reports/latest.json") == b"two"
    assert store.stat("reports/latest.json") == second


def test_empty_object_round_trips(store: ObjectStore) -> None:
    stored = store.put_bytes(b"", key="empty")

    assert store.stat("empty") == stored == StoredObject("empty", 0, hashlib.sha256().hexdigest())
    assert store.get_bytes("empty") == b""
    assert list(store.open_stream("empty")) == []
    with pytest.raises(InvalidRangeError):
        store.get_range("empty", 0, 0)  # no byte 0 to serve, as S3 answers 416


def test_failed_stream_leaves_no_object(store: ObjectStore) -> None:
    store.put_bytes(b"old", key="datasets/1/train.jsonl")

    with pytest.raises(ConnectionResetError):
        store.put_stream(FailingStream(2 << 20), key="datasets/1/train.jsonl")
    with pytest.raises(ConnectionResetError):
        store.put_stream(FailingStream(10), key="datasets/1/other.jsonl")
    with pytest.raises(ConnectionResetError):
        store.put_stream(FailingStream(10))

    assert store.get_bytes("datasets/1/train.jsonl") == b"old"
    assert [obj.key for obj in store.list()] == ["datasets/1/train.jsonl"]


def test_multi_megabyte_file_round_trips(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(BIG)

    stored = store.put_file(source, key="models/7/weights.safetensors")

    assert stored == StoredObject("models/7/weights.safetensors", len(BIG), BIG_SHA256)
    assert store.stat(stored.key) == stored
    chunks = list(store.open_stream(stored.key, chunk_size=1 << 20))
    assert all(len(chunk) <= 1 << 20 for chunk in chunks)
    assert hashlib.sha256(b"".join(chunks)).hexdigest() == BIG_SHA256
    boundary = 5 * 1024 * 1024
    assert (
        store.get_range(stored.key, boundary - 10, boundary + 9)
        == BIG[boundary - 10 : boundary + 10]
    )
    downloaded = tmp_path / "out" / "weights.safetensors"
    store.download_to(stored.key, downloaded)
    assert hashlib.sha256(downloaded.read_bytes()).hexdigest() == BIG_SHA256


def test_multi_megabyte_stream_is_content_addressed(store: ObjectStore) -> None:
    stored = store.put_stream(io.BytesIO(BIG))

    assert stored == StoredObject(content_key(BIG_SHA256), len(BIG), BIG_SHA256)
    assert store.get_range(stored.key, len(BIG) - 3, len(BIG) - 1) == BIG[-3:]


# Keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["", "/abs", "../up", "a/../b", "a//b", "a/", "back\\slash", "nul\x00", "k" * 1025]
)
def test_invalid_keys_are_rejected_by_every_operation(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKeyError, match="invalid object key"):
        store.put_bytes(b"x", key=key)
    for operation in (store.stat, store.exists, store.get_bytes, store.delete):
        with pytest.raises(InvalidKeyError):
            operation(key)
    with pytest.raises(InvalidKeyError):
        store.presigned_get_url(key)


@pytest.mark.parametrize("key", ["unicode/ü 名前.txt", "spaces and+plus/%41.bin", "..dots/x..y"])
def test_unusual_valid_keys_round_trip(store: ObjectStore, key: str) -> None:
    store.put_bytes(b"payload", key=key)

    assert store.get_bytes(key) == b"payload"
    assert [obj.key for obj in store.list()] == [key]


# Reading ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 0),
        (0, 99),
        (1, 1),
        (4096, 65_535),
        (len(DATA) - 1, len(DATA) - 1),
        (len(DATA) - 5, 10**9),
    ],
)
def test_ranges_are_inclusive_and_clamped_at_the_end(
    store: ObjectStore, start: int, end: int
) -> None:
    key = store.put_bytes(DATA).key

    assert store.get_range(key, start, end) == DATA[start : end + 1]
    assert (
        b"".join(store.open_stream(key, start=start, end=end, chunk_size=1000))
        == DATA[start : end + 1]
    )


def test_open_ended_range_reads_to_the_end(store: ObjectStore) -> None:
    key = store.put_bytes(DATA).key
    assert b"".join(store.open_stream(key, start=123_456)) == DATA[123_456:]


@pytest.mark.parametrize(
    ("start", "end"), [(len(DATA), None), (len(DATA) + 1, len(DATA) + 9), (5, 4), (-1, 0)]
)
def test_unsatisfiable_ranges_raise(store: ObjectStore, start: int, end: int | None) -> None:
    key = store.put_bytes(DATA).key
    with pytest.raises(InvalidRangeError):
        store.open_stream(key, start=start, end=end)


def test_streaming_yields_bounded_chunks(store: ObjectStore) -> None:
    key = store.put_bytes(DATA).key

    chunks = list(store.open_stream(key, chunk_size=64 * 1024))

    assert len(chunks) >= 5
    assert all(0 < len(chunk) <= 64 * 1024 for chunk in chunks)
    assert b"".join(chunks) == DATA


def test_missing_objects_raise_not_found(store: ObjectStore, tmp_path: Path) -> None:
    for read in (store.stat, store.get_bytes, store.open_stream):
        with pytest.raises(ObjectNotFoundError, match="no/such/key"):
            read("no/such/key")
    with pytest.raises(ObjectNotFoundError):
        store.get_range("no/such/key", 0, 10)
    with pytest.raises(ObjectNotFoundError):
        store.download_to("no/such/key", tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert not store.exists("no/such/key")
    assert issubclass(ObjectNotFoundError, StorageError)


# Listing and deleting -----------------------------------------------------------------------


def test_list_is_sorted_and_filtered_by_prefix(store: ObjectStore) -> None:
    keys = ["a/b", "a.txt", "a/a/z", "a0", "b", "ab/c", "datasets/2/x", "datasets/10/x"]
    for key in reversed(keys):
        store.put_bytes(key.encode(), key=key)
    blob = store.put_bytes(DATA)

    listed = list(store.list())

    assert [obj.key for obj in listed] == sorted([*keys, blob.key])
    assert {obj.key: obj.size for obj in listed} == {
        **{key: len(key.encode()) for key in keys},
        blob.key: len(DATA),
    }
    assert [obj.key for obj in store.list("a/")] == ["a/a/z", "a/b"]
    assert [obj.key for obj in store.list("a")] == ["a.txt", "a/a/z", "a/b", "a0", "ab/c"]
    assert [obj.key for obj in store.list("datasets/1")] == ["datasets/10/x"]
    assert list(store.list("blobs/")) == [blob]  # content addressing names the sha256
    assert list(store.list("missing/")) == []


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put_bytes(b"x", key="gone/soon")
    store.put_bytes(b"y", key="gone/later")

    store.delete("gone/soon")
    store.delete("gone/soon")
    store.delete("never/existed")

    assert not store.exists("gone/soon")
    assert [obj.key for obj in store.list("gone/")] == ["gone/later"]


# Presigned URLs -----------------------------------------------------------------------------


def test_presigned_url_grants_the_object(store: ObjectStore) -> None:
    key = store.put_bytes(DATA, key="shared/train data.jsonl").key

    url = store.presigned_get_url(key, expires_in=300)

    if isinstance(store, S3ObjectStore):
        assert read_url(url) == DATA
    else:
        assert isinstance(store, LocalObjectStore)
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        assert unquote(parts.path) == f"/v1/objects/{key}"
        assert store.verify_presigned(key, query["expires"][0], query["signature"][0])


# S3 specifics -------------------------------------------------------------------------------


def raw_client(store: S3ObjectStore) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=store.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_s3_records_the_sha256_as_metadata_and_uploads_big_files_in_parts(
    s3_store: S3ObjectStore, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(BIG)
    small = s3_store.put_bytes(b"small", key="small")
    big = s3_store.put_file(source, key="big")
    client = raw_client(s3_store)

    small_head = client.head_object(Bucket=s3_store.bucket, Key="small")
    big_head = client.head_object(Bucket=s3_store.bucket, Key="big")

    assert small_head["Metadata"] == {"sha256": small.sha256}
    assert big_head["Metadata"] == {"sha256": big.sha256}
    assert big_head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MiB


def test_s3_content_addressed_rewrite_uploads_nothing(s3_store: S3ObjectStore) -> None:
    uploads: list[str] = []
    s3_store.client.meta.events.register(
        "before-parameter-build.s3.PutObject", lambda params, **_: uploads.append(params["Key"])
    )

    first = s3_store.put_bytes(b"same bytes")
    second = s3_store.put_bytes(b"same bytes")

    assert first == second
    assert uploads == [first.key]


def test_s3_store_without_checksums_still_records_the_sha256(
    s3_endpoint_url: str, s3_bucket: str
) -> None:
    store = S3ObjectStore(
        bucket=s3_bucket,
        endpoint_url=s3_endpoint_url,
        access_key_id="testing",
        secret_access_key="testing",
        checksums=False,
    )

    stored = store.put_bytes(DATA, key="plain")  # also creates the bucket on first write

    assert store.stat("plain") == stored
    assert store.get_bytes("plain") == DATA


def test_ensure_bucket_creates_it_once(s3_endpoint_url: str, s3_bucket: str) -> None:
    store = S3ObjectStore(
        bucket=s3_bucket,
        endpoint_url=s3_endpoint_url,
        region="eu-west-1",
        access_key_id="testing",
        secret_access_key="testing",
    )

    store.ensure_bucket()
    store.ensure_bucket()

    assert list(store.list()) == []


def test_s3_listing_follows_continuation_pages(
    s3_store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"many/{i:02d}" for i in range(7)]
    client = raw_client(s3_store)
    for key in keys:
        client.put_object(Bucket=s3_store.bucket, Key=key, Body=b"")
    real_paginator = s3_store.client.get_paginator("list_objects_v2")
    pages_served = []

    class TwoKeysPerPage:
        def paginate(self, **arguments: Any) -> Any:
            for page in real_paginator.paginate(**arguments, PaginationConfig={"PageSize": 2}):
                pages_served.append(page["KeyCount"])
                yield page

    monkeypatch.setattr(s3_store.client, "get_paginator", lambda name: TwoKeysPerPage())

    listed = list(s3_store.list("many/"))

    assert [obj.key for obj in listed] == keys
    assert pages_served == [2, 2, 2, 1]
    assert all(obj.sha256 is None for obj in listed)  # written outside the store


def test_missing_bucket_is_a_storage_error_not_an_empty_listing(
    s3_endpoint_url: str, s3_bucket: str
) -> None:
    store = S3ObjectStore(
        bucket=s3_bucket,
        endpoint_url=s3_endpoint_url,
        access_key_id="testing",
        secret_access_key="testing",
    )

    with pytest.raises(StorageError, match=s3_bucket):
        list(store.list())
    with pytest.raises(StorageError, match=s3_bucket):
        store.delete("k")
