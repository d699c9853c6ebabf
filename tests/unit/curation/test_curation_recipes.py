"""The shipped recipes, each run with run_local on a small real input, as the worker runs them."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from curation.pipeline import Pipeline, available_recipes
from curation.runner import CurationResult, InputFile, run_local
from tests.unit.curation.conftest import FIXTURES, read_json, read_jsonl


def steps_by_name(result: CurationResult) -> dict[str, dict[str, Any]]:
    return {step["step"]: step for step in result.report["steps"]}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_every_shipped_recipe_builds() -> None:
    assert set(available_recipes()) >= {
        "default",
        "web_en",
        "web_zh",
        "instruct_en",
        "instruct_zh",
        "tabular",
    }
    for name in available_recipes():
        assert Pipeline.from_recipe(name).name == name


def test_web_en_on_c4_with_a_planted_copy_and_personal_data(tmp_path: Path) -> None:
    rows = read_jsonl("c4_demo.jsonl")
    # A contributor re-posts page 1 with a tenth of its words changed and an e-mail added.
    words = rows[1]["text"].split()
    rng = random.Random(1)
    for index in rng.sample(range(len(words)), len(words) // 10):
        words[index] = words[rng.randrange(len(words))]
    copy = " ".join(words) + "\nQuestions? Write to editor@example-news.com today."
    upload = write_jsonl(tmp_path / "web.jsonl", [*rows, {"text": copy}])

    result = run_local(
        [InputFile(upload, "jsonl", "web.jsonl", "alice")], tmp_path / "out", recipe="web_en"
    )

    steps = steps_by_name(result)
    assert list(steps) == [
        "normalize",
        "language_filter",
        "gopher_repetition",
        "gopher_quality",
        "c4_filter",
        "c4_clean",
        "fineweb_quality",
        "exact_dedup",
        "near_dedup",
        "pii_redact",
    ]
    assert steps["near_dedup"]["dropped_by_reason"] == {"near duplicate": 1}
    assert steps["gopher_quality"]["dropped_by_reason"]["gopher_quality: words < 50"] > 0
    assert steps["pii_redact"]["details"]["matches_by_kind"]["PHONE"] > 0
    for step in result.steps:
        assert "details" not in step  # the card takes result.steps as they were
    assert result.num_rows == steps["pii_redact"]["rows_out"]
    assert result.rows_in == len(rows) + 1
    texts = pq.read_table(tmp_path / "out" / result.shards[0].path).column("text").to_pylist()
    assert not any("780-800-7092" in text for text in texts)
    exclusions = pq.read_table(tmp_path / "out" / "exclusions.parquet").to_pylist()
    (near,) = [r for r in exclusions if r["step"] == "near_dedup"]
    assert near["source_row"] == len(rows)  # the copy, not page 1
    assert near["reason"].startswith("near duplicate of ")
    assert json.loads(json.dumps(result.report)) == result.report


def test_web_zh_on_the_analects_and_tang_poems(tmp_path: Path) -> None:
    chapters = [{"text": "\n".join(chapter["paragraphs"])} for chapter in read_json("lunyu.json")]
    poems = [{"text": "\n".join(poem["paragraphs"])} for poem in read_json("tangshi_300.json")]
    copy = {"text": chapters[0]["text"].replace("子曰", "孔子说", 3)}
    upload = write_jsonl(tmp_path / "zh.jsonl", [*chapters, *poems[:40], copy])

    result = run_local(
        [InputFile(upload, "jsonl", "zh.jsonl", "bob")], tmp_path / "out", recipe="web_zh"
    )

    steps = steps_by_name(result)
    assert steps["normalize"]["params"]["to_simplified"] is True
    assert steps["language_filter"]["rows_out"] == steps["language_filter"]["rows_in"]
    short = steps["chinese_quality"]["dropped_by_reason"]["chinese_quality: characters < 50"]
    assert short == sum(1 for p in poems[:40] if len("".join(p["text"].split())) < 50)
    assert steps["near_dedup"]["dropped_by_reason"] == {"near duplicate": 1}
    kept = pq.read_table(tmp_path / "out" / result.shards[0].path).column("text").to_pylist()
    assert all("學" not in text for text in kept)


@pytest.mark.parametrize(("recipe", "name"), [("instruct_en", "en"), ("instruct_zh", "zh")])
def test_instruct_recipes_on_alpaca(tmp_path: Path, recipe: str, name: str) -> None:
    source = FIXTURES / f"alpaca_{name}_demo.json"
    upload = tmp_path / "alpaca.json"
    shutil.copy(source, upload)

    result = run_local(
        [InputFile(upload, "json", "alpaca.json", "carol")], tmp_path / "out", recipe=recipe
    )

    steps = steps_by_name(result)
    assert result.schema.names[0] == "messages"
    assert "instruction" not in result.schema.names
    assert steps["chat_format"]["rows_in"] == 400
    dropped = sum(sum(step["dropped_by_reason"].values()) for step in steps.values())
    assert result.num_rows == 400 - dropped
    assert result.num_rows >= 385
    first = pq.read_table(tmp_path / "out" / result.shards[0].path).column("messages")[0].as_py()
    assert [turn["role"] for turn in first] == ["user", "assistant"]


def test_tabular_recipe_profiles_titanic(tmp_path: Path) -> None:
    upload = tmp_path / "titanic.csv"
    shutil.copy(FIXTURES / "titanic.csv", upload)

    result = run_local(
        [InputFile(upload, "csv", "titanic.csv", "dave")], tmp_path / "out", recipe="tabular"
    )

    profile = steps_by_name(result)["tabular_profile"]["details"]
    assert profile["rows"] == 1309 == result.num_rows
    assert profile["columns"]["age"]["missing"] == 263
    assert profile["columns"]["age"]["type"] == "float"
    assert profile["columns"]["cabin"]["completeness"] < 0.25
