"""Writers: shards are named, sized and hashed as reported, and written deterministically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.errors import CurationError
from curation.writers import (
    EXCLUSIONS_SCHEMA,
    ShardInfo,
    version_content_hash,
    write_exclusions,
    write_parquet_shards,
)

GSM8K_TEST = Path(__file__).parents[2] / "fixtures" / "data" / "gsm8k_test.jsonl"


def gsm8k_table(count: int) -> pa.Table:
    with GSM8K_TEST.open(encoding="utf-8") as file:
        return pa.Table.from_pylist([json.loads(next(file)) for _ in range(count)])


def test_rows_are_split_into_named_shards_with_true_sizes_and_hashes(tmp_path: Path) -> None:
    table = gsm8k_table(1000)

    shards = write_parquet_shards(table.to_batches(max_chunksize=128), tmp_path, rows_per_shard=300)

    assert [shard.path for shard in shards] == [
        f"data/train-{index:05d}-of-00004.parquet" for index in range(4)
    ]
    assert [shard.num_rows for shard in shards] == [300, 300, 300, 100]
    for shard in shards:
        data = (tmp_path / shard.path).read_bytes()
        assert shard.sha256 == hashlib.sha256(data).hexdigest()
        assert shard.num_bytes == len(data)
        assert pq.ParquetFile(tmp_path / shard.path).metadata.row_group(0).column(
            0
        ).compression == ("ZSTD")
    read_back = pa.concat_tables(pq.read_table(tmp_path / shard.path) for shard in shards)
    assert read_back.equals(table)
    assert sorted(path.name for path in (tmp_path / "data").iterdir()) == [
        Path(shard.path).name for shard in shards
    ]


def test_a_custom_prefix_names_the_shards(tmp_path: Path) -> None:
    shards = write_parquet_shards(gsm8k_table(10).to_batches(), tmp_path, prefix="test")

    assert [shard.path for shard in shards] == ["test-00000-of-00001.parquet"]


def test_shards_are_byte_identical_whatever_the_batching(tmp_path: Path) -> None:
    table = gsm8k_table(500)

    small = write_parquet_shards(
        table.to_batches(max_chunksize=7), tmp_path / "a", rows_per_shard=200
    )
    large = write_parquet_shards(
        table.to_batches(max_chunksize=500), tmp_path / "b", rows_per_shard=200
    )

    assert small == large
    assert version_content_hash(small) == version_content_hash(large)


def test_no_rows_is_an_error_and_leaves_no_files(tmp_path: Path) -> None:
    with pytest.raises(CurationError, match="no rows survived curation"):
        write_parquet_shards(iter([]), tmp_path)

    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_a_changed_schema_mid_run_is_an_error_and_cleans_up(tmp_path: Path) -> None:
    first = gsm8k_table(20).to_batches()[0]
    other = pa.RecordBatch.from_pylist([{"text": "not the same columns"}])

    with pytest.raises(CurationError, match="changed schema"):
        write_parquet_shards(iter([first, other]), tmp_path, rows_per_shard=10)

    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_exclusions_are_written_with_their_schema(tmp_path: Path) -> None:
    rows = [
        {
            "step": "exact_dedup",
            "reason": f"exact duplicate of {'ab' * 32}",
            "content_hash": "ab" * 32,
            "source_file": "upload.jsonl",
            "source_row": row,
        }
        for row in (4, 9)
    ]

    info = write_exclusions(rows, tmp_path)

    assert info is not None
    assert info.path == "exclusions.parquet"
    assert info.num_rows == 2
    table = pq.read_table(tmp_path / info.path)
    assert table.schema.equals(EXCLUSIONS_SCHEMA)
    assert table.to_pylist() == rows
    assert info.sha256 == hashlib.sha256((tmp_path / info.path).read_bytes()).hexdigest()


def test_no_exclusions_write_no_file(tmp_path: Path) -> None:
    assert write_exclusions([], tmp_path) is None
    assert not (tmp_path / "exclusions.parquet").exists()


def test_version_content_hash_ignores_order_and_sees_every_byte() -> None:
    shards = [
        ShardInfo("data/train-00000-of-00002.parquet", 10, 100, "aa" * 32),
        ShardInfo("data/train-00001-of-00002.parquet", 5, 50, "bb" * 32),
    ]
    changed = [shards[0], ShardInfo(shards[1].path, 5, 50, "cc" * 32)]
    lines = "".join(f"{shard.sha256}  {shard.path}\n" for shard in shards)

    assert version_content_hash(shards) == hashlib.sha256(lines.encode()).hexdigest()
    assert version_content_hash(reversed(shards)) == version_content_hash(shards)
    assert version_content_hash(changed) != version_content_hash(shards)
