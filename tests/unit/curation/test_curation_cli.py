"""``aidx curate``: real fixture files in, a dataset folder out; bad input leaves --out bare."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from curation.cli import curate_app

FIXTURES = Path(__file__).parents[2] / "fixtures" / "data"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(curate_app, list(args))
    return result.exit_code, result.output


def test_curate_writes_shards_exclusions_and_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    train, test = FIXTURES / "gsm8k_train.jsonl", FIXTURES / "gsm8k_test.jsonl"

    code, output = invoke(
        "default", str(train), str(test), str(train), "--out", str(out),
        "--processes", "2", "--rows-per-shard", "3000", "--contributor", "OpenAI",
    )  # fmt: skip

    assert code == 0, output
    assert "exact_dedup" in output and "merge" in output
    assert f"report: {out / 'report.md'}" in output.replace("\n", "")
    assert sorted(path.name for path in out.iterdir()) == [
        "data", "exclusions.parquet", "plots", "report.html", "report.json", "report.md",
    ]  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    train_rows = len(train.read_bytes().splitlines())
    test_rows = len(test.read_bytes().splitlines())
    assert report["rows_in"] == 2 * train_rows + test_rows
    assert report["rows_out"] == train_rows + test_rows
    assert report["quality_scores"]["accuracy"] is None
    kept = pa.concat_tables(pq.read_table(path) for path in sorted((out / "data").iterdir()))
    assert kept.num_rows == train_rows + test_rows
    assert set(kept.column("_contributor").to_pylist()) == {"OpenAI"}
    excluded = pq.read_table(out / "exclusions.parquet")
    assert excluded.num_rows == train_rows
    assert set(excluded.column("source_file").to_pylist()) == {"gsm8k_train.jsonl"}


def test_curate_refuses_an_out_folder_that_holds_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()

    code, output = invoke("default", str(FIXTURES / "titanic.csv"), "--out", str(tmp_path))

    assert code == 1
    assert "already holds a curated dataset" in output


def c4_lines() -> list[bytes]:
    return (FIXTURES / "c4_demo.jsonl").read_bytes().splitlines(keepends=True)


def bad_inputs(folder: Path) -> dict[str, tuple[list[Path], str]]:
    """Each kind of bad input, made from real data, and what the message must say."""
    lines = c4_lines()
    utf8 = folder / "latin1.jsonl"
    utf8.write_bytes(b"".join(lines[:40]) + '{"text": "caf\u00e9"}\n'.encode("latin-1"))
    syntax = folder / "syntax.jsonl"
    syntax.write_bytes(b"".join(lines[:10]) + lines[10][:-3] + b"\n" + b"".join(lines[11:20]))
    titanic = FIXTURES / "titanic.csv"
    gsm8k = folder / "gsm8k.parquet"
    rows = [json.loads(line) for line in (FIXTURES / "gsm8k_test.jsonl").read_bytes().splitlines()]
    rows = rows[:300]
    pq.write_table(pa.Table.from_pylist(rows), gsm8k, row_group_size=50)
    truncated = folder / "truncated.parquet"
    truncated.write_bytes(gsm8k.read_bytes()[:-2000])
    huge = folder / "huge.jsonl"
    text = (json.loads(lines[0])["text"] + " ") * (50 * 2**20 // len(lines[0]))
    huge.write_bytes(b"".join(lines[:3]) + json.dumps({"text": text}).encode() + b"\n")
    empty = folder / "empty.jsonl"
    empty.write_bytes(b"")
    return {
        "utf8": ([utf8], r"latin1.jsonl line 41: not UTF-8"),
        "syntax": ([syntax], r"syntax.jsonl line 11: not valid JSON"),
        "mixed": ([gsm8k, titanic], r"titanic.csv: columns differ from gsm8k.parquet"),
        "truncated": ([truncated], r"truncated.parquet: not a valid Parquet file"),
        "huge": ([huge], r"huge.jsonl line 4: longer than 16 MiB"),
        "empty": ([empty], r"empty.jsonl: the file has no rows"),
    }


@pytest.mark.parametrize("kind", ["utf8", "syntax", "mixed", "truncated", "huge", "empty"])
def test_bad_input_names_file_and_line_and_publishes_nothing(tmp_path: Path, kind: str) -> None:
    inputs, message = bad_inputs(tmp_path)[kind]
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    code, output = invoke(
        "web_en", *map(str, inputs), "--out", str(out), "--processes", "2", "--rows-per-shard", "8"
    )

    assert code == 1
    assert message in " ".join(output.split()), output
    assert sorted(path.name for path in out.iterdir()) == ["notes.txt"]
