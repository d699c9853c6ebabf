"""A real curation run's output becomes a card whose renderings the real tools accept.

Curation (``run_local``) curates GSM8K from two contributors into Parquet shards; the card is
filled from its result and report, written beside the shards as README.md and croissant.json,
and then read by huggingface_hub and mlcroissant, and linted against the shards on disk.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import mlcroissant as mlc
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard as HubCard
from typer.testing import CliRunner

from curation.runner import CurationResult, InputFile, run_local
from dataset_cards import card_from_curation, facts_from_report, lint_card, missing_fields
from dataset_cards.cli import card_app
from dataset_cards.render import front_matter, parse_croissant, render_croissant, render_readme
from dataset_cards.schema import DatasetCard

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CurationResult]:
    out = tmp_path_factory.mktemp("version")
    inputs = [
        InputFile(DATA / "gsm8k_train.jsonl", "jsonl", "gsm8k_train.jsonl", "OpenAI"),
        InputFile(DATA / "gsm8k_test.jsonl", "jsonl", "gsm8k_test.jsonl", "Math Co-op"),
    ]
    return out, run_local(inputs, out, recipe="default")


@pytest.fixture(scope="module")
def card(curated: tuple[Path, CurationResult]) -> DatasetCard:
    _, result = curated
    report: dict[str, Any] = {**result.report, "pii_counts": {"email": 0, "phone": 0}}
    return card_from_curation(
        dataset_id="ds_gsm8k",
        version_id="dv_gsm8k_1",
        name="GSM8K grade-school math",
        description="Grade-school math word problems with worked solutions.",
        license="mit",
        provider="OpenAI",
        schema=result.schema,
        files=[
            {"path": s.path, "sha256": s.sha256, "num_bytes": s.num_bytes, "num_rows": s.num_rows}
            for s in result.shards
        ],
        content_hash=result.content_hash,
        language=["en"],
        version_number=1,
        date_published=dt.date(2026, 1, 2),
        **facts_from_report(report),
    )


def test_the_card_holds_what_curation_measured(
    card: DatasetCard, curated: tuple[Path, CurationResult]
) -> None:
    _, result = curated

    assert card.num_rows == result.num_rows == 8_792
    assert card.content_hash == result.content_hash
    assert [step.step for step in card.preprocessing] == [s["step"] for s in result.steps]
    assert card.co_contributors == ["Math Co-op"]  # from the rows' provenance
    assert card.pii_counts == {"email": 0, "phone": 0}
    assert [f.name for f in card.dataset_info.features][-4:] == [
        "_contributor",
        "_source_file",
        "_source_row",
        "_content_hash",
    ]
    assert "lawful_source_statement" in missing_fields(card)


def test_the_readme_loads_in_huggingface_hub_and_round_trips(
    card: DatasetCard, curated: tuple[Path, CurationResult]
) -> None:
    out, _ = curated
    readme = out / "README.md"
    readme.write_text(render_readme(card), encoding="utf-8")

    hub_card = HubCard.load(readme)
    assert hub_card.data.to_dict() == front_matter(card)
    assert hub_card.data.to_dict()["configs"][0]["data_files"][0]["split"] == "train"


def test_mlcroissant_validates_the_croissant_file_and_reads_every_curated_row(
    card: DatasetCard, curated: tuple[Path, CurationResult]
) -> None:
    out, result = curated
    path = out / "croissant.json"
    path.write_text(render_croissant(card), encoding="utf-8")

    dataset = mlc.Dataset(jsonld=path)
    assert dataset.metadata.ctx.issues.errors == set()
    record_sets = [r.uuid for r in dataset.metadata.record_sets]
    rows = sum(sum(1 for _ in dataset.records(r)) for r in record_sets)
    assert rows == result.num_rows
    first = next(iter(dataset.records(record_sets[0])))
    assert first[f"{record_sets[0]}/_contributor"] == b"OpenAI"
    assert parse_croissant(path.read_text(encoding="utf-8")) == card


def test_lint_checks_the_card_against_the_shards_on_disk(
    card: DatasetCard, curated: tuple[Path, CurationResult]
) -> None:
    out, result = curated
    shards = [out / shard.path for shard in result.shards]
    issues = lint_card(card, data_files=shards)

    assert not [i for i in issues if i.rule.startswith("file-")]
    assert pq.read_metadata(shards[0]).num_rows == card.files[0].num_rows

    card_file = out / "card.json"
    card_file.write_text(card.model_dump_json(), encoding="utf-8")
    result_cli = CliRunner().invoke(
        card_app, ["lint", str(card_file), "--data-dir", str(out), "--format", "json"]
    )
    body = json.loads(result_cli.output)
    assert result_cli.exit_code == 1  # the lawful-source statement is still missing
    assert [i["rule"] for i in body["issues"] if i["severity"] == "error"] == [
        "lawful-source-missing"
    ]
