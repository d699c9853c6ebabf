"""``aidx card`` (card_app) driven through typer's runner as a user would type it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import dataset_cards.models  # noqa: F401  (registers card_revisions for create_all)
from dataset_cards.cli import card_app
from dataset_cards.render import parse_croissant, render_croissant, render_readme
from dataset_cards.render.json_schema import render_json_schema
from dataset_cards.schema import DatasetCard
from infra.config import get_settings
from infra.db import Base, dispose_engines, import_all_models, session_scope, utcnow
from marketplace.models import Dataset, DatasetVersion, Organization

runner = CliRunner()


def squash(text: str) -> str:
    """The output without whitespace: rich wraps table cells at the terminal width."""
    return "".join(text.split())


@pytest.fixture
def files(
    complete_card: DatasetCard, card: DatasetCard, tmp_path: Path, price_plans: list[Any]
) -> dict[str, Path]:
    """The complete card in each kind, the fresh one as a README, and the price plans."""
    out = {
        "readme": tmp_path / "README.md",
        "croissant": tmp_path / "croissant.json",
        "json": tmp_path / "card.json",
        "fresh": tmp_path / "fresh" / "README.md",
        "plans": tmp_path / "plans.json",
    }
    out["readme"].write_text(render_readme(complete_card), encoding="utf-8")
    out["croissant"].write_text(render_croissant(complete_card), encoding="utf-8")
    out["json"].write_text(complete_card.model_dump_json(indent=2), encoding="utf-8")
    out["fresh"].parent.mkdir()
    out["fresh"].write_text(render_readme(card), encoding="utf-8")
    out["plans"].write_text(json.dumps(price_plans), encoding="utf-8")
    return out


@pytest.mark.parametrize("kind", ["readme", "croissant", "json"])
def test_lint_passes_a_complete_card_of_any_kind(
    files: dict[str, Path], dataset_root: Path, kind: str
) -> None:
    result = runner.invoke(
        card_app,
        ["lint", str(files[kind]), "--data-dir", str(dataset_root), "--price-plans",
         str(files["plans"])],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "no issues; the card is complete." in result.output


def test_lint_prints_a_table_and_exits_1_on_errors(files: dict[str, Path]) -> None:
    result = runner.invoke(card_app, ["lint", str(files["fresh"])], env={"COLUMNS": "300"})

    assert result.exit_code == 1
    text = squash(result.output)
    assert "┃severity┃path┃message┃" in text
    assert "│error│lawful_source_statement│nolawful-sourcestatement:" in text
    assert "│warning│motivation│notprovided:" in text
    assert result.output.endswith("1 error(s), 17 warning(s)\n")


def test_lint_as_json(files: dict[str, Path]) -> None:
    result = runner.invoke(card_app, ["lint", str(files["fresh"]), "--format", "json"])

    assert result.exit_code == 1
    body = json.loads(result.output)
    assert body["errors"] == 1
    assert body["warnings"] == len(body["issues"]) - 1
    assert {
        "severity": "error",
        "path": "lawful_source_statement",
        "message": "no lawful-source statement: listing review needs to know how the data was"
        " lawfully obtained",
        "rule": "lawful-source-missing",
    } in body["issues"]


def test_lint_checks_the_data_files(
    files: dict[str, Path], dataset_root: Path, tmp_path: Path, complete_card: DatasetCard
) -> None:
    data = complete_card.model_dump()
    data["files"][0]["sha256"] = "0" * 64
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data, default=str), encoding="utf-8")

    result = runner.invoke(
        card_app, ["lint", str(edited), "--data-dir", str(dataset_root), "--format", "json"]
    )
    assert result.exit_code == 1
    paths = [issue["path"] for issue in json.loads(result.output)["issues"]]
    assert paths == ["files[0].sha256"]


def test_lint_reports_a_card_that_cannot_be_read(files: dict[str, Path], tmp_path: Path) -> None:
    text = files["readme"].read_text(encoding="utf-8").replace("license: mit", "license: mit-9")
    broken = tmp_path / "broken" / "README.md"
    broken.parent.mkdir()
    broken.write_text(text, encoding="utf-8")

    result = runner.invoke(card_app, ["lint", str(broken), "--format", "json"])
    [issue] = json.loads(result.output)["issues"]

    assert result.exit_code == 1
    assert issue["path"] == "license"
    assert issue["message"].startswith(
        "line 3, field 'license': license: Value error, license 'mit-9'"
    )


def test_lint_refuses_json_that_is_not_json_ld(tmp_path: Path) -> None:
    path = tmp_path / "croissant.json"
    path.write_text('{"name": "x"}', encoding="utf-8")

    result = runner.invoke(card_app, ["lint", str(path), "--format", "json"])

    assert result.exit_code == 1
    [issue] = json.loads(result.output)["issues"]
    assert issue["path"] == "$.@context"
    assert "not JSON-LD" in issue["message"]


def test_lint_of_nothing_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(card_app, ["lint", str(tmp_path / "missing.md")])

    assert result.exit_code == 2
    assert "no such file" in result.output


@pytest.fixture
def stored(card: DatasetCard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The fresh card stored as a version's card in a SQLite exchange database."""
    for name in list(os.environ):
        if name.startswith("AIDX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AIDX_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    dispose_engines()
    import_all_models()
    with session_scope() as session:
        Base.metadata.create_all(session.get_bind())
        session.add(Organization(id="org_1", name="Math Co", roles=["contributor"]))
        session.flush()
        session.add(Dataset(id=card.dataset_id, organization_id="org_1", name="g", license="mit"))
        session.flush()
        session.add(
            DatasetVersion(
                id="dv_1", dataset_id=card.dataset_id, number=1, content_hash="x", num_rows=1,
                num_bytes=1, features=[], files=[], report={},
                card=card.model_copy(update={"version_id": "dv_1"}).model_dump(mode="json"),
                card_key="k", created_at=utcnow(),
            )
        )  # fmt: skip
        session.commit()
    yield card.dataset_id
    dispose_engines()
    get_settings.cache_clear()


def test_lint_a_stored_version_or_dataset_by_id(stored: str) -> None:
    by_version = runner.invoke(card_app, ["lint", "dv_1", "--format", "json"])
    by_dataset = runner.invoke(card_app, ["lint", stored, "--format", "json"])

    assert by_version.exit_code == by_dataset.exit_code == 1
    assert json.loads(by_version.output)["issues"] == json.loads(by_dataset.output)["issues"]
    unknown = runner.invoke(card_app, ["lint", "dv_unknown"])
    assert unknown.exit_code == 2
    assert "not found" in unknown.output


def test_diff_prints_changed_paths_across_kinds(
    files: dict[str, Path], complete_card: DatasetCard, tmp_path: Path
) -> None:
    data = complete_card.model_dump()
    data["biases"] = "None known."
    data["dataset_info"]["splits"][1]["num_examples"] = 1_300
    newer = tmp_path / "newer" / "croissant.json"
    newer.parent.mkdir()
    newer.write_text(render_croissant(DatasetCard.model_validate(data)), encoding="utf-8")

    result = runner.invoke(card_app, ["diff", str(files["readme"]), str(newer)])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "dataset_info.splits[1].num_examples: 1319 → 1300",
        'biases: "Problem settings reflect US everyday life." → "None known."',
    ]
    assert runner.invoke(card_app, ["diff", str(files["readme"]), str(newer),
                                    "--exit-code"]).exit_code == 1  # fmt: skip
    as_json = runner.invoke(card_app, ["diff", str(files["json"]), str(newer), "--format", "json"])
    assert json.loads(as_json.output)[0] == {
        "path": "dataset_info.splits[1].num_examples",
        "old": 1319,
        "new": 1300,
    }


def test_diff_of_the_same_card_in_two_kinds_finds_nothing(files: dict[str, Path]) -> None:
    result = runner.invoke(card_app, ["diff", str(files["readme"]), str(files["croissant"])])

    assert (result.exit_code, result.output) == (0, "no changes\n")


def test_render_converts_between_kinds(
    files: dict[str, Path], complete_card: DatasetCard, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "croissant.json"
    out.parent.mkdir()
    result = runner.invoke(
        card_app, ["render", str(files["readme"]), "--to", "croissant", "--out", str(out)]
    )

    assert result.exit_code == 0, result.output
    assert parse_croissant(out.read_text(encoding="utf-8")) == complete_card
    page = runner.invoke(card_app, ["render", str(files["json"]), "--to", "product-html"])
    assert page.exit_code == 0 and "数据提供方" in page.output


def test_schema_prints_the_json_schema() -> None:
    result = runner.invoke(card_app, ["schema"])

    assert result.exit_code == 0
    assert result.output == render_json_schema()
