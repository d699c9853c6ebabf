"""lint_card passes a complete card and catches each defect, naming the field path."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from dataset_cards.lint import RULES, LintIssue, field_path, has_errors, lint_card
from dataset_cards.schema import DatasetCard


def _with(card: DatasetCard, **changes: Any) -> DatasetCard:
    return DatasetCard.model_validate({**card.model_dump(), **changes})


def _found(issues: list[LintIssue]) -> set[tuple[str, str, str]]:
    return {(issue.severity, issue.rule, issue.path) for issue in issues}


@pytest.fixture
def paths(complete_card: DatasetCard, dataset_root: Path) -> list[Path]:
    return [dataset_root / data_file.path for data_file in complete_card.files]


def test_a_complete_card_true_to_its_data_and_plans_has_no_issues(
    complete_card: DatasetCard, paths: list[Path], price_plans: list[dict[str, Any]]
) -> None:
    assert lint_card(complete_card, data_files=paths, price_plans=price_plans) == []


def test_a_fresh_card_from_curation_lists_what_a_person_must_add(card: DatasetCard) -> None:
    issues = lint_card(card)

    assert has_errors(issues)
    assert ("error", "lawful-source-missing", "lawful_source_statement") in _found(issues)
    warned = {i.path for i in issues if i.rule == "human-field-missing"}
    assert {"motivation", "biases", "intended_uses", "scope", "update_frequency"} <= warned
    assert all(i.severity == "warning" for i in issues if i.rule == "human-field-missing")
    assert ("warning", "no-pii-scan", "pii_counts") in _found(issues)
    assert ("warning", "not-assessed", "compliance_assessment") in _found(issues)


def test_a_missing_license_is_an_error(complete_card: DatasetCard) -> None:
    issues = lint_card(_with(complete_card, license=None, license_class=None))
    assert _found(issues) == {("error", "license-missing", "license")}


def test_an_unknown_license_id_in_plain_values_is_an_error(complete_card: DatasetCard) -> None:
    data = {**complete_card.model_dump(mode="json"), "license": "mit-0.9", "license_class": None}

    [issue] = lint_card(data)
    assert (issue.severity, issue.path) == ("error", "license")
    assert "'mit-0.9' is not a known license id" in issue.message


def test_plain_values_with_a_bad_nested_value_name_its_path(complete_card: DatasetCard) -> None:
    data = complete_card.model_dump(mode="json")
    data["dataset_info"]["splits"][0]["num_examples"] = -1

    [issue] = lint_card(data)
    assert issue.path == "dataset_info.splits[0].num_examples"


def test_license_other_without_a_class_is_an_error(complete_card: DatasetCard) -> None:
    card = _with(
        complete_card,
        license="other",
        license_name="acme-1.0",
        license_link="https://example.org/acme",
        license_class=None,
    )
    assert _found(lint_card(card)) == {("error", "license-class-missing", "license_class")}


def test_a_missing_lawful_source_statement_is_an_error(complete_card: DatasetCard) -> None:
    issues = lint_card(_with(complete_card, lawful_source_statement="  "))
    assert _found(issues) == {("error", "lawful-source-missing", "lawful_source_statement")}


def test_missing_human_fields_are_warnings(complete_card: DatasetCard) -> None:
    issues = lint_card(_with(complete_card, biases=None, motivation="", annotations_creators=[]))

    assert _found(issues) == {
        ("warning", "human-field-missing", "motivation"),
        ("warning", "human-field-missing", "annotations_creators"),
        ("warning", "human-field-missing", "biases"),
    }
    assert not has_errors(issues)


def test_pii_found_without_a_statement_is_an_error(complete_card: DatasetCard) -> None:
    card = _with(
        complete_card,
        pii_counts={"email": 3, "phone": 0, "cn_id_number": 1},
        personal_sensitive_information=None,
    )
    issues = [i for i in lint_card(card) if i.severity == "error"]

    assert _found(issues) == {("error", "pii-without-statement", "personal_sensitive_information")}
    assert "email 3, cn_id_number 1" in issues[0].message


def test_pii_found_with_a_statement_is_fine(complete_card: DatasetCard) -> None:
    card = _with(complete_card, pii_counts={"email": 3})
    assert lint_card(card) == []


def test_a_non_commercial_license_on_a_commercial_price_plan_is_an_error(
    complete_card: DatasetCard, price_plans: list[dict[str, Any]]
) -> None:
    card = _with(complete_card, license="cc-by-nc-4.0", license_class=None)
    [issue] = lint_card(card, price_plans=price_plans)

    assert (issue.severity, issue.rule, issue.path) == (
        "error",
        "license-vs-price-plan",
        "price_plans[1]",
    )
    assert "'plan-commercial' permits commercial use" in issue.message
    assert "non-commercial use only" in issue.message
    assert lint_card(card, price_plans=price_plans[:1]) == [
        LintIssue("error", "price_plans[1]", "no price plan with id 'plan-commercial'",
                  "unknown-price-plan")
    ]  # fmt: skip


def test_a_commercial_plan_on_an_unspecified_license_is_a_warning(
    complete_card: DatasetCard,
) -> None:
    card = _with(complete_card, license="cc", license_class=None)
    plans = [{"id": "plan-research"}, {"id": "plan-commercial", "commercial": True}]

    assert _found(lint_card(card, price_plans=plans)) == {
        ("warning", "license-unspecified-vs-price-plan", "price_plans[1]")
    }


def test_a_split_with_no_files_is_an_error(complete_card: DatasetCard) -> None:
    configs = complete_card.model_dump()["configs"]
    configs[0]["data_files"] = configs[0]["data_files"][:1]
    issues = lint_card(_with(complete_card, configs=configs))

    assert _found(issues) == {
        ("error", "split-without-files", "dataset_info.splits[1]"),
        ("warning", "file-in-no-split", "files[1]"),
    }


def test_a_split_glob_that_matches_no_file_is_an_error(complete_card: DatasetCard) -> None:
    configs = complete_card.model_dump()["configs"]
    configs[0]["data_files"][1]["path"] = ["data/test-*.jsonl"]
    issues = lint_card(_with(complete_card, configs=configs))

    assert ("error", "split-files-unmatched", "configs[0].data_files[1].path[0]") in _found(issues)


def test_row_counts_and_sizes_that_disagree_with_the_files_are_errors(
    complete_card: DatasetCard,
) -> None:
    info = complete_card.model_dump()["dataset_info"]
    info["splits"][0]["num_examples"] += 1
    info["splits"][1]["num_bytes"] -= 1
    info["download_size"] += 10
    issues = lint_card(_with(complete_card, dataset_info=info))

    assert _found(issues) == {
        ("error", "split-rows", "dataset_info.splits[0].num_examples"),
        ("error", "split-bytes", "dataset_info.splits[1].num_bytes"),
        ("error", "dataset-sizes", "dataset_info.download_size"),
        ("error", "dataset-sizes", "dataset_info.dataset_size"),
    }
    rows = next(i for i in issues if i.rule == "split-rows")
    assert rows.message == "split 'train' says 7,474 examples but its files hold 7,473 rows"


def test_a_wrong_size_category_is_an_error(complete_card: DatasetCard) -> None:
    issues = lint_card(_with(complete_card, size_categories=["10K<n<100K"]))
    assert _found(issues) == {("error", "size-category", "size_categories")}


def test_sizes_and_rows_that_disagree_with_the_data_files_are_errors(
    complete_card: DatasetCard, paths: list[Path]
) -> None:
    files = complete_card.model_dump()["files"]
    files[0]["num_rows"] = 7_000
    files[1]["num_bytes"] += 5
    issues = lint_card(_with(complete_card, files=files), data_files=paths)
    data_issues = {i for i in _found(issues) if i[1].startswith("file-")}

    assert data_issues == {
        ("error", "file-rows", "files[0].num_rows"),
        ("error", "file-bytes", "files[1].num_bytes"),
    }
    message = next(i.message for i in issues if i.rule == "file-rows")
    assert message == "'data/train-00000-of-00001.parquet' holds 7,473 rows, the card says 7,000"


def test_a_sha256_mismatch_is_an_error(
    complete_card: DatasetCard, paths: list[Path], tmp_path: Path
) -> None:
    tampered = tmp_path / complete_card.files[1].path
    tampered.parent.mkdir(parents=True)
    shutil.copyfile(paths[1], tampered)
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, Parquet footer intact
    tampered.write_bytes(bytes(data))

    issues = lint_card(complete_card, data_files=[paths[0], tampered])
    assert _found(issues) == {("error", "file-sha256", "files[1].sha256")}


def test_missing_and_unlisted_data_files(
    complete_card: DatasetCard, paths: list[Path], tmp_path: Path
) -> None:
    stray = tmp_path / "data" / "extra.parquet"
    stray.parent.mkdir()
    shutil.copyfile(paths[0], stray)

    issues = lint_card(complete_card, data_files=[paths[0], stray])
    assert _found(issues) == {
        ("error", "file-missing", "files[1].path"),
        ("warning", "file-not-listed", "files"),
    }


def test_columns_that_differ_from_the_features_are_an_error(
    complete_card: DatasetCard, paths: list[Path]
) -> None:
    info = complete_card.model_dump()["dataset_info"]
    info["features"][0]["dtype"] = "large_string"
    issues = lint_card(_with(complete_card, dataset_info=info), data_files=paths)

    assert _found(issues) == {("error", "file-columns", "dataset_info.features")}


def test_an_unreadable_parquet_file_is_an_error(
    complete_card: DatasetCard, paths: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / complete_card.files[0].path
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not parquet")
    issues = lint_card(complete_card, data_files=[broken, paths[1]])

    assert ("error", "file-unreadable", "files[0].path") in _found(issues)


def test_a_failed_compliance_assessment_is_an_error(complete_card: DatasetCard) -> None:
    assessment = {**complete_card.model_dump()["compliance_assessment"], "result": "failed"}
    issues = lint_card(_with(complete_card, compliance_assessment=assessment))
    assert _found(issues) == {("error", "compliance-failed", "compliance_assessment.result")}


def test_a_card_without_files_is_an_error(complete_card: DatasetCard) -> None:
    card = _with(complete_card, files=[])
    assert ("error", "no-files", "files") in _found(lint_card(card))


def test_every_rule_has_a_severity_and_a_description() -> None:
    assert all(sev in ("error", "warning") and text for sev, text in RULES.values())


def test_field_paths_use_brackets_for_indices() -> None:
    assert field_path(("dataset_info", "splits", 0, "num_examples")) == (
        "dataset_info.splits[0].num_examples"
    )
    assert field_path(()) == ""
