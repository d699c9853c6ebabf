"""The quality report: scores from measured facts, plots that render, accuracy left to review."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.report import DIMENSIONS, quality_report, write_quality_report
from curation.runner import CurationResult, InputFile, run_local

FIXTURES = Path(__file__).parents[2] / "fixtures" / "data"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CurationResult]:
    folder = tmp_path_factory.mktemp("web")
    lines = (FIXTURES / "c4_demo.jsonl").read_bytes().splitlines(keepends=True)
    path = folder / "c4.jsonl"
    rows = [json.loads(line) for line in lines]
    for index, row in enumerate(rows[200:]):
        row["text"] += f" Mail me at writer{index}@example.org."
    copies = [rows[index] for index in range(0, 60, 3)]  # exact copies of kept rows
    path.write_text("".join(json.dumps(row) + "\n" for row in rows + copies), encoding="utf-8")
    out = folder / "out"
    return out, run_local([InputFile(path, "jsonl", "c4.jsonl", "alice")], out, recipe="web_en")


def test_report_measures_stages_languages_pii_and_scores(
    web: tuple[Path, CurationResult],
) -> None:
    out, result = web

    report = quality_report(result, out)

    assert [stage["step"] for stage in report["stages"]] == [s["step"] for s in result.steps]
    facts = report["facts"]
    assert facts["languages"]["en"] >= 290
    assert facts["pii_counts"]["EMAIL"] >= 50
    assert sum(facts["duplicate_clusters"]["exact"].values()) >= 10
    assert facts["text_lengths"]["count"] == result.num_rows
    assert sum(facts["text_lengths"]["histogram"]["counts"]) == result.num_rows
    scores = report["quality_scores"]
    assert set(scores) == set(DIMENSIONS)
    assert scores["accuracy"] is None and "no human review" in report["score_notes"]["accuracy"]
    assert scores["timeliness"] is None  # web text has no date column
    assert scores["accessibility"] == 1.0
    assert scores["consistency"] == 1.0  # exact dedup ran
    assert scores["completeness"] == 1.0
    assert scores["normativity"] == 1.0


def test_review_sets_accuracy_and_a_torn_file_lowers_accessibility(
    web: tuple[Path, CurationResult], tmp_path: Path
) -> None:
    out, result = web
    review = {"sample_size": 50, "pass_rate": 0.92}

    assert quality_report(result, out, review=review)["quality_scores"]["accuracy"] == 0.92

    table = pq.read_table(out / result.shards[0].path)
    torn = tmp_path / result.shards[0].path
    torn.parent.mkdir(parents=True)
    pq.write_table(table.slice(1), torn)
    assert result.exclusions is not None
    (tmp_path / result.exclusions.path).write_bytes((out / result.exclusions.path).read_bytes())
    assert quality_report(result, tmp_path)["quality_scores"]["accessibility"] == 0.0


def test_completeness_consistency_and_timeliness_of_a_table(tmp_path: Path) -> None:
    rows = [
        {"name": "a", "when": dt.date(2025, 1, 1)},
        {"name": " ", "when": dt.date(2001, 1, 1)},
        {"name": "a", "when": dt.date(2025, 1, 1)},
        {"name": "b", "when": None},
    ]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    result = run_local(
        [InputFile(path, "parquet", "t.parquet", "bob")],
        tmp_path / "out",
        recipe={"steps": ["normalize"]},
    )

    report = quality_report(result, tmp_path / "out", today=dt.date(2026, 1, 1))

    scores = report["quality_scores"]
    assert scores["completeness"] == 1 - 2 / 8  # a blank name, a missing date
    assert scores["consistency"] == 0.5  # two rows are copies of each other
    assert scores["timeliness"] == round(2 / 3, 4)


def test_written_report_has_pages_and_png_plots(web: tuple[Path, CurationResult]) -> None:
    out, result = web

    paths = write_quality_report(result, out)

    assert [path.name for path in paths] == ["report.json", "report.md", "report.html"]
    plots = sorted(path.name for path in (out / "plots").iterdir())
    assert {"exact_clusters.png", "languages.png", "lengths.png", "pii.png", "stages.png"} <= set(
        plots
    )
    for plot in plots:
        assert (out / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert "| accuracy | not scored |" in markdown
    assert "![stages](plots/stages.png)" in markdown
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(plots)
