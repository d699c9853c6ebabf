"""TabularProfile: per-column completeness, validity against the inferred type and uniqueness,
accumulated across batches while the rows pass through unchanged."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from curation.readers import read_batches
from curation.steps import TabularProfile
from tests.unit.curation.conftest import FIXTURES, RunSteps


def read_csv_rows(name: str) -> list[dict[str, str]]:
    with (FIXTURES / name).open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def profile_of(
    run_steps: RunSteps, name: str, batch_size: int
) -> tuple[dict[str, Any], pa.Table, pa.Table]:
    batches = list(read_batches(FIXTURES / name, format="csv", batch_size=batch_size))
    rows = pa.Table.from_batches(batches).to_pylist()
    step = TabularProfile()
    table = run_steps([step], rows, batch_size=batch_size)
    plain = run_steps([], rows, batch_size=batch_size)
    return step.details, table, plain


def test_titanic_question_marks_count_as_missing(run_steps: RunSteps) -> None:
    details, table, plain = profile_of(run_steps, "titanic.csv", batch_size=200)
    raw = read_csv_rows("titanic.csv")
    columns = details["columns"]

    assert table.equals(plain)  # rows pass through unchanged
    assert details["rows"] == len(raw) == 1309
    for name in ("age", "cabin", "boat", "body", "home.dest", "fare", "embarked"):
        missing = sum(row[name] in ("?", "") for row in raw)
        assert columns[name]["missing"] == missing, name
        assert columns[name]["completeness"] == round(1 - missing / len(raw), 6)
    assert columns["age"]["missing"] == 263
    assert columns["cabin"]["completeness"] == pytest.approx(0.2254, abs=1e-4)
    # Ages like 0.9167 and 28.5 make the column float; every present age is a number.
    assert columns["age"]["type"] == "float"
    assert columns["age"]["validity"] == 1.0
    assert (columns["age"]["min"], columns["age"]["max"]) == (0.1667, 80.0)
    assert columns["body"]["type"] == "integer"
    assert columns["name"]["type"] == "string"
    assert columns["name"]["distinct"] == len({row["name"] for row in raw}) == 1307
    assert columns["pclass"]["distinct"] == 3
    assert columns["survived"]["mean"] == pytest.approx(
        sum(int(row["survived"]) for row in raw) / len(raw), abs=1e-6
    )
    assert json.loads(json.dumps(details)) == details


def test_adult_profile_does_not_depend_on_batching(run_steps: RunSteps) -> None:
    small, _, _ = profile_of(run_steps, "adult.csv", batch_size=97)
    large, _, _ = profile_of(run_steps, "adult.csv", batch_size=5000)
    raw = read_csv_rows("adult.csv")

    assert small == large
    columns = small["columns"]
    assert all(column["completeness"] == 1.0 for column in columns.values())
    assert columns["fnlwgt"]["distinct"] == len({row["fnlwgt"] for row in raw})
    assert columns["sex"]["distinct"] == 2
    assert columns["age"]["type"] == "integer"
    assert columns["education"]["type"] == "string"


def test_validity_drops_with_values_of_the_wrong_type(run_steps: RunSteps, tmp_path: Path) -> None:
    raw = read_csv_rows("adult.csv")[:500]
    for row in raw[:20]:
        row["age"] = "unknown"
    rows = [{"age": row["age"], "hours": row["hr_per_week"]} for row in raw]
    step = TabularProfile(missing_values=["unknown"])
    strict = TabularProfile(missing_values=[])

    run_steps([step], rows)
    run_steps([strict], rows)

    assert step.details["columns"]["age"]["missing"] == 20
    assert step.details["columns"]["age"]["validity"] == 1.0
    assert strict.details["columns"]["age"]["type"] == "integer"
    assert strict.details["columns"]["age"]["validity"] == 0.96
    assert strict.details["columns"]["hours"]["type"] == "integer"
