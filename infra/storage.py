"""One object-store interface for every blob the exchange keeps, with a local and an S3 backend.

Objects are addressed by keys such as ``datasets/42/train.parquet``. Writing without a key stores
the bytes content-addressed under ``blobs/sha256/<first 2 hex>/<hex>``, so writing the same
content twice is a no-op. A write becomes visible only once it is complete, and the SHA-256 and
size of everything written through this module are computed while writing (or, for a file moved
in with ``move_file_in``, in one read of it).

Errors::

    StorageError            every failure of the store (a backend error is chained as __cause__)
    ├── ObjectNotFoundError no object at the key
    ├── InvalidKeyError     a key that could escape the store or alias another key
    └── InvalidRangeError   a byte range that is malformed or starts past the end of the object

``get_object_store()`` picks the backend from the settings; nothing here touches the disk or the
network until a method is called.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import json
import os
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_IMODE
from typing import IO, Any, Protocol
from urllib.parse import quote

from infra.config import Settings, get_settings

__all__ = [
    "BLOB_PREFIX",
    "ByteStream",
    "InvalidKeyError",
    "InvalidRangeError",
    "LocalObjectStore",
    "ObjectNotFoundError",
    "ObjectStore",
    "S3ObjectStore",
    "StorageError",
    "StoredObject",
    "content_key",
    "get_object_store",
    "validate_key",
]

BLOB_PREFIX = "blobs/sha256/"
MAX_KEY_LENGTH = 1024
MAX_SEGMENT_LENGTH = 255
COPY_CHUNK_SIZE = 1 << 20
# Folders of LocalObjectStore's root that hold its bookkeeping; no key may start with them.
_TEMP_DIR = ".tmp"
_META_DIR = ".meta"
_RESERVED_FIRST_SEGMENTS = frozenset({_TEMP_DIR, _META_DIR})


# Errors ---------------------------------------------------------------------------------------


class StorageError(Exception):
    """Base class of every error raised by the object store."""


class ObjectNotFoundError(StorageError):
    """There is no object at ``key``."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no object at key {self.key!r}"


class InvalidKeyError(StorageError):
    """``key`` is not a valid object key; ``reason`` says why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid object key {self.key!r}: {self.reason}"


class InvalidRangeError(StorageError):
    """The byte range ``start``-``end`` cannot be served from the object at ``key``."""

    def __init__(self, key: str, start: int, end: int | None) -> None:
        super().__init__(key, start, end)
        self.key = key
        self.start = start
        self.end = end

    def __str__(self) -> str:
        end = "" if self.end is None else self.end
        return f"unsatisfiable byte range {self.start}-{end} for key {self.key!r}"


# Streams --------------------------------------------------------------------------------------


class ByteStream(Protocol):
    """Anything with ``read(size) -> bytes``: an open binary file, an upload, a socket reader."""

    def read(self, size: int = -1, /) -> bytes: ...


# Values ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredObject:
    """An object in the store: its key, its size in bytes and its SHA-256 (hex), where known."""

    key: str
    size: int
    sha256: str | None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid object key, else raise ``InvalidKeyError``.

    A key is a relative, ``/``-separated path: non-empty, at most 1024 bytes in UTF-8 (S3's
    limit) with segments of at most 255 bytes (a file name's limit), with no backslash or NUL,
    no empty, ``.`` or ``..`` segment, and not inside the local store's bookkeeping folders
    (``.tmp/``, ``.meta/``). The rules are the same for every backend, so a key that works on S3
    also works on a local folder.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(str(key), "a key must be a non-empty string")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_LENGTH:
        raise InvalidKeyError(key, f"longer than {MAX_KEY_LENGTH} bytes in UTF-8")
    if "\\" in key or "\x00" in key:
        raise InvalidKeyError(key, "backslashes and NUL characters are not allowed")
    if key.startswith("/"):
        raise InvalidKeyError(key, "a key must not start with '/'")
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise InvalidKeyError(key, "empty, '.' and '..' path segments are not allowed")
    if any(
        len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_LENGTH for segment in segments
    ):
        raise InvalidKeyError(key, f"a path segment is longer than {MAX_SEGMENT_LENGTH} bytes")
    if segments[0] in _RESERVED_FIRST_SEGMENTS:
        raise InvalidKeyError(key, f"{segments[0]!r} is reserved for the store's bookkeeping")
    return key


def _validate_prefix(prefix: str) -> str:
    # A prefix is valid when some valid key can start with it.
    if prefix:
        validate_key(prefix + "x")
    return prefix


def content_key(sha256_hex: str) -> str:
    """The content-addressed key of a blob with this SHA-256."""
    return f"{BLOB_PREFIX}{sha256_hex[:2]}/{sha256_hex}"


def _sha256_from_content_key(key: str) -> str | None:
    """The SHA-256 that a content-addressed key names, or None for any other key."""
    if not key.startswith(BLOB_PREFIX):
        return None
    head, _, digest = key[len(BLOB_PREFIX) :].partition("/")
    return digest if _is_sha256_hex(digest) and head == digest[:2] else None


def _is_sha256_hex(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _check_range(key: str, start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise InvalidRangeError(key, start, end)


def _copy_hashing(source: ByteStream, target: IO[bytes]) -> tuple[int, str]:
    """Copy ``source`` to ``target``; return the number of bytes copied and their SHA-256."""
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(COPY_CHUNK_SIZE):
        digest.update(chunk)
        target.write(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _hash_file(path: Path) -> tuple[int, str]:
    with path.open("rb") as source:
        digest = hashlib.file_digest(source, "sha256")
        return source.tell(), digest.hexdigest()


def _size_and_sha256(path: Path, sha256: str | None) -> tuple[int, str]:
    """The file's size, and its SHA-256: `sha256` where the caller knows it, else read."""
    if sha256 is None:
        return _hash_file(path)
    if not _is_sha256_hex(sha256):
        raise ValueError(f"sha256 must be 64 lowercase hex digits, not {sha256!r}")
    return path.stat().st_size, sha256


def _fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# The interface --------------------------------------------------------------------------------


class ObjectStore(ABC):
    """Where the exchange keeps blobs: datasets, shards, model weights, reports.

    Byte ranges are inclusive at both ends, as in HTTP ``Range: bytes=start-end``; an ``end``
    past the last byte is clamped, a ``start`` at or past the end raises ``InvalidRangeError``.
    """

    # Writing -----------------------------------------------------------------------------------

    @abstractmethod
    def put_stream(
        self, stream: ByteStream, *, key: str | None = None, content_type: str | None = None
    ) -> StoredObject:
        """Store everything read from ``stream``; content-addressed when ``key`` is None."""

    def put_file(
        self,
        path: Path,
        *,
        key: str | None = None,
        content_type: str | None = None,
        sha256: str | None = None,
    ) -> StoredObject:
        """Store the file at ``path``; content-addressed when ``key`` is None.

        ``sha256``: the file's SHA-256, where the caller computed it from the bytes it wrote. A
        backend that would read the file only to hash it records this instead; one that copies
        the bytes anyway hashes them on the way.
        """
        with Path(path).open("rb") as stream:
            return self.put_stream(stream, key=key, content_type=content_type)

    def put_bytes(
        self, data: bytes, *, key: str | None = None, content_type: str | None = None
    ) -> StoredObject:
        """Store ``data``; content-addressed when ``key`` is None."""
        return self.put_stream(io.BytesIO(data), key=key, content_type=content_type)

    def move_file_in(
        self,
        path: Path,
        *,
        key: str | None = None,
        content_type: str | None = None,
        sha256: str | None = None,
    ) -> StoredObject:
        """Store the file at ``path`` and remove it from there; content-addressed when ``key``
        is None.

        For files nobody needs at ``path`` any more (a job's scratch output): a backend that can
        take the file without copying its bytes does so (the local store, when ``path`` is on its
        filesystem); the others store a copy, as `put_file` does, then delete ``path``. Either
        way the size and SHA-256 are recorded from one read of the file, or from none where
        ``sha256`` is given (see `put_file`). Nothing may write to ``path`` meanwhile. If
        storing fails, ``path`` is left where it was.
        """
        stored = self.put_file(path, key=key, content_type=content_type, sha256=sha256)
        Path(path).unlink()
        return stored

    # Reading -----------------------------------------------------------------------------------

    @abstractmethod
    def open_stream(
        self, key: str, *, chunk_size: int = 1 << 20, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """Chunks of the object (or of bytes ``start``..``end``, inclusive).

        A missing object or a bad range raises here, before the first chunk, so an HTTP handler
        can still answer with an error status.
        """

    def get_bytes(self, key: str) -> bytes:
        """The whole object."""
        return b"".join(self.open_stream(key))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start``..``end`` of the object, both inclusive."""
        return b"".join(self.open_stream(key, start=start, end=end))

    def download_to(self, key: str, path: Path) -> None:
        """Write the object to ``path``; ``path`` appears only once the download is complete."""
        path = Path(path)
        stream = self.open_stream(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            with partial.open("xb") as target:
                for chunk in stream:
                    target.write(chunk)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    @abstractmethod
    def stat(self, key: str) -> StoredObject:
        """The object at ``key``; raises ``ObjectNotFoundError`` when there is none."""

    def exists(self, key: str) -> bool:
        """Whether there is an object at ``key``."""
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """The objects whose key starts with ``prefix``, sorted by key.

        ``sha256`` is filled where the backend knows it without an extra request per object:
        always for content-addressed keys, and for local objects written through this module.
        """

    # Removing and sharing ----------------------------------------------------------------------

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object at ``key``; removing a missing object is not an error."""

    @abstractmethod
    def presigned_get_url(self, key: str, *, expires_in: int = 3600) -> str:
        """A URL that lets its holder GET the object for ``expires_in`` seconds."""


# Local folder ---------------------------------------------------------------------------------


class LocalObjectStore(ObjectStore):
    """Objects as files under ``root``: ``<root>/<key>``.

    Writes go to ``<root>/.tmp/`` first, are fsynced and then renamed into place, so a crash
    mid-write never leaves a partial object at a key. Each object's SHA-256 is kept in a sidecar
    ``<root>/.meta/<key>`` (JSON, written before the data file is renamed) together with the data
    file's size and mtime; a sidecar that no longer matches its file, for instance after the file
    was replaced by hand, is ignored and ``stat`` reports ``sha256=None``.

    A folder cannot be both an object and hold objects, so on this backend ``a`` and ``a/b``
    cannot exist together; storing the second raises ``StorageError``. ``content_type`` is
    accepted for parity with S3 and not kept.

    Presigned URLs point at the API (``{base_url}/v1/objects/{key}``) and carry an HMAC-SHA256
    signature that ``verify_presigned`` checks.
    """

    def __init__(
        self,
        root: Path,
        *,
        secret_key: str,
        base_url: str = "http://127.0.0.1:8000",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.base_url = base_url.rstrip("/")
        # A key derived for this one purpose, so these signatures mean nothing anywhere else.
        self._signing_key = hmac.new(
            secret_key.encode(), b"aidx.storage.presigned-get.v1", hashlib.sha256
        ).digest()
        self._clock = clock
        self._file_mode: int | None = None

    def __repr__(self) -> str:
        return f"LocalObjectStore(root={str(self.root)!r})"

    # Paths -------------------------------------------------------------------------------------

    @property
    def _temp_dir(self) -> Path:
        return self.root / _TEMP_DIR

    def _data_path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _meta_path(self, key: str) -> Path:
        # The sidecar tree mirrors the data tree, so two keys clash there only if they clash here.
        return self.root / _META_DIR / validate_key(key)

    def _new_temp_path(self) -> Path:
        self._temp_dir.mkdir(parents=True, exist_ok=True)
        return self._temp_dir / f"{uuid.uuid4().hex}.part"

    # Writing -----------------------------------------------------------------------------------

    def put_stream(
        self, stream: ByteStream, *, key: str | None = None, content_type: str | None = None
    ) -> StoredObject:
        if key is not None:
            validate_key(key)
        temp_path = self._new_temp_path()
        try:
            # "x" creates the file with the usual permissions (0666 less the umask).
            with temp_path.open("xb") as target:
                size, sha256 = _copy_hashing(stream, target)
                target.flush()
                os.fsync(target.fileno())
            stored = StoredObject(key=key or content_key(sha256), size=size, sha256=sha256)
            if key is None and self._holds(stored):
                return stored
            self._commit(temp_path, stored)
            return stored
        finally:
            temp_path.unlink(missing_ok=True)

    def move_file_in(
        self,
        path: Path,
        *,
        key: str | None = None,
        content_type: str | None = None,
        sha256: str | None = None,
    ) -> StoredObject:
        """Hard-link the file into ``.tmp/``, hash (unless ``sha256`` is given) and fsync it
        there, rename it to its key, then unlink ``path``: its bytes are never copied. On another
        filesystem (or one without hard links) the file is copied instead."""
        if key is not None:
            validate_key(key)
        path = Path(path)
        temp_path = self._new_temp_path()
        try:
            os.link(path, temp_path)
        except OSError:
            return super().move_file_in(path, key=key, content_type=content_type, sha256=sha256)
        try:
            # The link shares the file's inode: its mode becomes that of any object written here.
            os.chmod(temp_path, self._new_file_mode())
            size, sha256 = _size_and_sha256(temp_path, sha256)
            fd = os.open(temp_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            stored = StoredObject(key=key or content_key(sha256), size=size, sha256=sha256)
            if key is not None or not self._holds(stored):
                self._commit(temp_path, stored)
        finally:
            temp_path.unlink(missing_ok=True)
        path.unlink()
        return stored

    def _new_file_mode(self) -> int:
        """The mode `put_stream` gives a new object (0666 less the umask), found once."""
        if self._file_mode is None:
            probe = self._new_temp_path()
            probe.touch(exist_ok=False)
            try:
                self._file_mode = S_IMODE(probe.stat().st_mode)
            finally:
                probe.unlink()
        return self._file_mode

    def _holds(self, stored: StoredObject) -> bool:
        try:
            return self.stat(stored.key) == stored
        except ObjectNotFoundError:
            return False

    def _commit(self, temp_path: Path, stored: StoredObject) -> None:
        """Record the sidecar, then rename the finished data file to its key."""
        data_path = self._data_path(stored.key)
        written = temp_path.stat()
        sidecar = {
            "sha256": stored.sha256,
            "size": written.st_size,
            "mtime_ns": written.st_mtime_ns,
        }
        try:
            data_path.parent.mkdir(parents=True, exist_ok=True)
            self._write_sidecar(stored.key, sidecar)
            os.replace(temp_path, data_path)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            with contextlib.suppress(OSError):
                self._meta_path(stored.key).unlink(missing_ok=True)
            raise StorageError(
                f"cannot store {stored.key!r}: a local object and a folder of objects "
                f"cannot share a name ({exc})"
            ) from exc
        _fsync_directory(data_path.parent)

    def _write_sidecar(self, key: str, sidecar: dict[str, Any]) -> None:
        meta_path = self._meta_path(key)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        temp_path = self._new_temp_path()
        try:
            with temp_path.open("x", encoding="utf-8") as target:
                json.dump(sidecar, target)
                target.flush()
                os.fsync(target.fileno())
            os.replace(temp_path, meta_path)
        finally:
            temp_path.unlink(missing_ok=True)

    # Reading -----------------------------------------------------------------------------------

    def stat(self, key: str) -> StoredObject:
        data_path = self._data_path(key)
        try:
            file_stat = data_path.stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(key) from exc
        if not data_path.is_file():
            raise ObjectNotFoundError(key)
        return StoredObject(
            key=key, size=file_stat.st_size, sha256=self._recorded_sha256(key, file_stat)
        )

    def _recorded_sha256(self, key: str, file_stat: os.stat_result) -> str | None:
        """The sidecar's SHA-256, if the sidecar still describes this very file."""
        try:
            sidecar = json.loads(self._meta_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(sidecar, dict):
            return None
        sha256 = sidecar.get("sha256")
        matches = (
            sidecar.get("size") == file_stat.st_size
            and sidecar.get("mtime_ns") == file_stat.st_mtime_ns
            and isinstance(sha256, str)
        )
        return sha256 if matches else None

    def open_stream(
        self, key: str, *, chunk_size: int = 1 << 20, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        data_path = self._data_path(key)
        _check_range(key, start, end)
        try:
            source = data_path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFoundError(key) from exc
        size = os.fstat(source.fileno()).st_size
        ranged = start > 0 or end is not None
        if ranged and start >= size:
            source.close()
            raise InvalidRangeError(key, start, end)
        last = size - 1 if end is None else min(end, size - 1)
        return self._read_chunks(
            source, start=start, length=last - start + 1, chunk_size=chunk_size
        )

    @staticmethod
    def _read_chunks(
        source: io.BufferedReader, *, start: int, length: int, chunk_size: int
    ) -> Iterator[bytes]:
        remaining = length
        with source:
            source.seek(start)
            while remaining > 0:
                chunk = source.read(min(chunk_size, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        _validate_prefix(prefix)
        folder, _, name_prefix = prefix.rpartition("/")
        start_dir = self.root / folder if folder else self.root
        key_prefix = f"{folder}/" if folder else ""
        return self._walk(start_dir, key_prefix, name_prefix, at_root=not folder)

    def _walk(
        self, directory: Path, key_prefix: str, name_prefix: str, *, at_root: bool
    ) -> Iterator[StoredObject]:
        try:
            with os.scandir(directory) as scan:
                entries = [entry for entry in scan if entry.name.startswith(name_prefix)]
        except (FileNotFoundError, NotADirectoryError):
            return
        if at_root:
            entries = [entry for entry in entries if entry.name not in _RESERVED_FIRST_SEGMENTS]
        # Sorting a folder as "name/" makes this depth-first walk yield keys in sorted order.
        entries.sort(key=lambda entry: entry.name + "/" if entry.is_dir() else entry.name)
        for entry in entries:
            key = key_prefix + entry.name
            if entry.is_dir():
                yield from self._walk(Path(entry.path), f"{key}/", "", at_root=False)
            elif entry.is_file():
                with contextlib.suppress(ObjectNotFoundError, InvalidKeyError):
                    yield self.stat(key)

    # Removing ----------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        missing = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
        with contextlib.suppress(*missing):
            self._data_path(key).unlink()
        with contextlib.suppress(*missing):
            self._meta_path(key).unlink()

    def remove_stale_temp_files(self, *, older_than_seconds: float = 24 * 3600) -> int:
        """Delete what interrupted writes left in ``.tmp/``; returns how many files went."""
        removed = 0
        cutoff = self._clock() - older_than_seconds
        try:
            entries = list(os.scandir(self._temp_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    # Presigned URLs ----------------------------------------------------------------------------

    def presigned_get_url(self, key: str, *, expires_in: int = 3600) -> str:
        validate_key(key)
        expires = int(self._clock()) + expires_in
        signature = self._signature(key, expires)
        return (
            f"{self.base_url}/v1/objects/{quote(key, safe='/')}"
            f"?expires={expires}&signature={signature}"
        )

    def verify_presigned(self, key: str, expires: int | str, signature: str) -> bool:
        """Whether ``signature`` was issued for ``key`` and ``expires`` has not passed."""
        try:
            validate_key(key)
            expires_at = int(expires)
        except (InvalidKeyError, ValueError):
            return False
        if expires_at < self._clock():
            return False
        expected = self._signature(key, expires_at)
        return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))

    def _signature(self, key: str, expires: int) -> str:
        message = f"GET\n{key}\n{expires}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()


# S3 -------------------------------------------------------------------------------------------


class S3ObjectStore(ObjectStore):
    """Objects in one bucket of any S3-compatible endpoint (AWS, MinIO, Ceph, moto).

    The SHA-256 of each object travels as user metadata (``x-amz-meta-sha256``) and, unless
    ``checksums`` is off for endpoints that lack it, as an S3 checksum the server verifies: the
    whole-object ``ChecksumSHA256`` for single uploads, per-part SHA-256 for multipart ones.
    The bucket is created, if missing, before the first write (``ensure_bucket``).
    """

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        checksums: bool = True,
        multipart_threshold: int = 8 * 1024 * 1024,
        multipart_chunksize: int = 8 * 1024 * 1024,
    ) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self.checksums = checksums
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self._client_instance: Any = None
        self._bucket_ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3ObjectStore(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use."""
        if self._client_instance is None:
            with self._lock:
                if self._client_instance is None:
                    self._client_instance = self._create_client()
        return self._client_instance

    def _create_client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            retries={"max_attempts": 5, "mode": "standard"},
            s3={"addressing_style": "path"},
        )
        # A session of our own: boto3's default session is not safe to share across threads.
        session = boto3.session.Session()
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self._access_key_id,
            aws_secret_access_key=self._secret_access_key,
            config=config,
        )

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist; safe to call any number of times."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            status = _error_status(exc)
            if status == 404:
                self._create_bucket()
            # 403: the bucket exists but these credentials may not inspect it; writes will tell.
            elif status != 403:
                raise StorageError(f"cannot reach bucket {self.bucket!r}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot reach bucket {self.bucket!r}: {exc}") from exc
        self._bucket_ready = True

    def _create_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        arguments: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            arguments["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**arguments)
        except ClientError as exc:
            if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StorageError(f"cannot create bucket {self.bucket!r}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot create bucket {self.bucket!r}: {exc}") from exc

    # Writing -----------------------------------------------------------------------------------

    def put_file(
        self,
        path: Path,
        *,
        key: str | None = None,
        content_type: str | None = None,
        sha256: str | None = None,
    ) -> StoredObject:
        if key is not None:
            validate_key(key)
        path = Path(path)
        size, sha256 = _size_and_sha256(path, sha256)
        stored = StoredObject(key=key or content_key(sha256), size=size, sha256=sha256)
        if key is None and self._holds(stored):
            return stored
        with path.open("rb") as body:
            self._upload(body, stored, content_type)
        return stored

    def put_stream(
        self, stream: ByteStream, *, key: str | None = None, content_type: str | None = None
    ) -> StoredObject:
        if key is not None:
            validate_key(key)
        # Spool first: the key may depend on the hash, and boto3 wants a seekable body.
        with tempfile.TemporaryFile(prefix="aidx-upload-") as spool:
            size, sha256 = _copy_hashing(stream, spool)
            stored = StoredObject(key=key or content_key(sha256), size=size, sha256=sha256)
            if key is None and self._holds(stored):
                return stored
            spool.seek(0)
            self._upload(spool, stored, content_type)
        return stored

    def _holds(self, stored: StoredObject) -> bool:
        try:
            return self.stat(stored.key) == stored
        except ObjectNotFoundError:
            return False

    def _upload(self, body: IO[bytes], stored: StoredObject, content_type: str | None) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        if not self._bucket_ready:
            self.ensure_bucket()
        assert stored.sha256 is not None
        extra: dict[str, Any] = {"Metadata": {"sha256": stored.sha256}}
        if content_type:
            extra["ContentType"] = content_type
        try:
            if stored.size < self.multipart_threshold:
                if self.checksums:
                    digest = bytes.fromhex(stored.sha256)
                    extra["ChecksumSHA256"] = base64.b64encode(digest).decode("ascii")
                self.client.put_object(Bucket=self.bucket, Key=stored.key, Body=body, **extra)
            else:
                if self.checksums:
                    extra["ChecksumAlgorithm"] = "SHA256"
                transfer = TransferConfig(
                    multipart_threshold=self.multipart_threshold,
                    multipart_chunksize=self.multipart_chunksize,
                )
                self.client.upload_fileobj(
                    body, self.bucket, stored.key, ExtraArgs=extra, Config=transfer
                )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot upload {stored.key!r} to {self.bucket!r}: {exc}") from exc

    # Reading -----------------------------------------------------------------------------------

    def stat(self, key: str) -> StoredObject:
        from botocore.exceptions import BotoCoreError, ClientError

        validate_key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_status(exc) == 404:
                raise ObjectNotFoundError(key) from exc
            raise StorageError(f"cannot stat {key!r} in {self.bucket!r}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot stat {key!r} in {self.bucket!r}: {exc}") from exc
        sha256 = head.get("Metadata", {}).get("sha256")
        return StoredObject(
            key=key, size=int(head["ContentLength"]), sha256=str(sha256) if sha256 else None
        )

    def open_stream(
        self, key: str, *, chunk_size: int = 1 << 20, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        validate_key(key)
        _check_range(key, start, end)
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start > 0 or end is not None:
            arguments["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            response = self.client.get_object(**arguments)
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404"):
                raise ObjectNotFoundError(key) from exc
            if _error_code(exc) == "InvalidRange" or _error_status(exc) == 416:
                raise InvalidRangeError(key, start, end) from exc
            raise StorageError(f"cannot read {key!r} from {self.bucket!r}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot read {key!r} from {self.bucket!r}: {exc}") from exc
        return self._read_chunks(response["Body"], key, chunk_size)

    def _read_chunks(self, body: Any, key: str, chunk_size: int) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError

        try:
            for chunk in body.iter_chunks(chunk_size):
                yield bytes(chunk)
        except BotoCoreError as exc:
            raise StorageError(f"reading {key!r} from {self.bucket!r} failed: {exc}") from exc
        finally:
            body.close()

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        _validate_prefix(prefix)
        return self._list_pages(prefix)

    def _list_pages(self, prefix: str) -> Iterator[StoredObject]:
        from botocore.exceptions import BotoCoreError, ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    key = str(item["Key"])
                    size = int(item["Size"])
                    yield StoredObject(key=key, size=size, sha256=_sha256_from_content_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot list {prefix!r} in {self.bucket!r}: {exc}") from exc

    # Removing and sharing ----------------------------------------------------------------------

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        validate_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot delete {key!r} from {self.bucket!r}: {exc}") from exc

    def presigned_get_url(self, key: str, *, expires_in: int = 3600) -> str:
        validate_key(key)
        url = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return str(url)


def _error_code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", {}) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _error_status(exc: Exception) -> int | None:
    response: dict[str, Any] = getattr(exc, "response", {}) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


# Choosing a backend ---------------------------------------------------------------------------


def get_object_store(settings: Settings | None = None) -> ObjectStore:
    """The store the settings describe: S3 when ``s3_bucket`` is set, else a local folder."""
    settings = settings or get_settings()
    if settings.storage_backend == "s3":
        assert settings.s3_bucket is not None
        secret = settings.s3_secret_access_key
        return S3ObjectStore(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )
    return LocalObjectStore(
        settings.resolved_storage_root,
        secret_key=settings.secret_key.get_secret_value(),
        base_url=settings.resolved_public_base_url,
    )
