"""Write curated rows as Parquet shards, and the rows dropped along the way.

Output is deterministic: the same rows in the same order give byte-identical files. Shards are
written whole from one table (so input batch boundaries do not matter), with zstd compression and
no timestamps; Parquet's ``created_by`` names the pyarrow version, so the bytes are stable for a
given pyarrow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curation.errors import CurationError

EXCLUSIONS_FILE = "exclusions.parquet"
EXCLUSIONS_SCHEMA = pa.schema(
    [
        pa.field("step", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("content_hash", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("source_row", pa.int64()),
    ]
)


@dataclass(frozen=True)
class ShardInfo:
    """One written file: its path relative to the output folder, rows, size and SHA-256."""

    path: str
    num_rows: int
    num_bytes: int
    sha256: str


def write_parquet_shards(
    batches: Iterable[pa.RecordBatch],
    out_dir: Path,
    *,
    rows_per_shard: int = 50_000,
    prefix: str = "data/train",
) -> list[ShardInfo]:
    """Write ``batches`` as ``{prefix}-{i:05d}-of-{n:05d}.parquet`` shards of ``rows_per_shard``.

    The shard count is known only at the end, so shards are written under temporary names and
    renamed. Every batch must have the schema of the first. No rows at all is a
    :class:`CurationError`: a version needs at least one row.
    """
    if rows_per_shard < 1:
        raise ValueError(f"rows_per_shard must be at least 1, not {rows_per_shard}")
    (out_dir / prefix).parent.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, int]] = []
    try:
        schema: pa.Schema | None = None
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        for batch in batches:
            if schema is None:
                schema = batch.schema
            elif not batch.schema.equals(schema):
                raise CurationError(
                    f"rows changed schema mid-run: {batch.schema.to_string()!r} after "
                    f"{schema.to_string()!r}"
                )
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= rows_per_shard:
                table = pa.Table.from_batches(pending, schema=schema)
                written.append(
                    _write_shard(table.slice(0, rows_per_shard), out_dir, prefix, written)
                )
                rest = table.slice(rows_per_shard)
                pending, pending_rows = rest.to_batches(), rest.num_rows
        if pending_rows:
            table = pa.Table.from_batches(pending, schema=schema)
            written.append(_write_shard(table, out_dir, prefix, written))
        if not written:
            raise CurationError("no rows survived curation")
        count = len(written)
        shards = []
        for index, (temporary, num_rows) in enumerate(written):
            relative = f"{prefix}-{index:05d}-of-{count:05d}.parquet"
            final = temporary.replace(out_dir / relative)
            shards.append(_describe(final, relative, num_rows))
        return shards
    except BaseException:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
        raise


def write_exclusions(rows: list[dict[str, Any]], out_dir: Path) -> ShardInfo | None:
    """Write the dropped rows' records to ``exclusions.parquet``; nothing (None) if there are none.

    Each record has the keys of :data:`EXCLUSIONS_SCHEMA`: step, reason, content_hash,
    source_file and source_row.
    """
    if not rows:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=EXCLUSIONS_SCHEMA)
    path = out_dir / EXCLUSIONS_FILE
    _write_table(table, path)
    return _describe(path, EXCLUSIONS_FILE, table.num_rows)


def write_exclusions_table(table: pa.Table, out_dir: Path) -> ShardInfo | None:
    """:func:`write_exclusions` for records already in a table of :data:`EXCLUSIONS_SCHEMA`."""
    if not table.num_rows:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / EXCLUSIONS_FILE
    _write_table(table.cast(EXCLUSIONS_SCHEMA), path)
    return _describe(path, EXCLUSIONS_FILE, table.num_rows)


def version_content_hash(shards: Iterable[ShardInfo]) -> str:
    """The SHA-256 identifying a version's data: it changes iff any shard's name or bytes change.

    It hashes the lines ``"<sha256>  <path>\\n"`` of the shards sorted by path, the format of
    ``sha256sum``, so it can be checked by hand with
    ``sha256sum data/* | sort -k2 | sha256sum`` in the output folder (for the default prefix).
    """
    lines = [f"{shard.sha256}  {shard.path}\n" for shard in sorted(shards, key=lambda s: s.path)]
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def _write_shard(
    table: pa.Table, out_dir: Path, prefix: str, written: list[tuple[Path, int]]
) -> tuple[Path, int]:
    temporary = out_dir / f"{prefix}-{len(written):05d}.parquet.partial"
    _write_table(table, temporary)
    return temporary, table.num_rows


def _write_table(table: pa.Table, path: Path) -> None:
    # One chunk per column, so page boundaries do not depend on how the rows were batched.
    pq.write_table(table.combine_chunks(), path, compression="zstd")


def _describe(path: Path, relative: str, num_rows: int) -> ShardInfo:
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    return ShardInfo(path=relative, num_rows=num_rows, num_bytes=path.stat().st_size, sha256=digest)
