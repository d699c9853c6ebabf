"""card_from_curation fills the card from the Arrow schema, files and steps; missing_fields."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from dataset_cards.autofill import (
    card_from_curation,
    feature_from_arrow,
    missing_fields,
    split_for_path,
)
from dataset_cards.errors import CardError, InvalidCardError
from dataset_cards.schema import DatasetCard, Feature, size_category


def test_features_follow_the_arrow_schema_including_list_and_struct(card: DatasetCard) -> None:
    features = {f.name: f for f in card.dataset_info.features}

    assert list(features) == [
        "question",
        "answer",
        "steps",
        "meta",
        "_contributor",
        "_source_file",
        "_source_row",
        "_content_hash",
    ]
    assert features["question"] == Feature(name="question", dtype="string")
    assert features["steps"] == Feature(name="steps", item=Feature(dtype="string"))
    assert features["meta"] == Feature(
        name="meta",
        struct=[
            Feature(name="final_answer", dtype="string"),
            Feature(name="num_lines", dtype="int32"),
        ],
    )
    assert features["_source_row"].dtype == "int64"


@pytest.mark.parametrize(
    ("arrow_type", "label"),
    [
        (pa.float32(), "float32"),
        (pa.float64(), "float64"),
        (pa.date32(), "date32"),
        (pa.timestamp("us", tz="UTC"), "timestamp[us, tz=UTC]"),
        (pa.dictionary(pa.int32(), pa.string()), "string"),
        (pa.large_list(pa.struct([("k", pa.string())])), "list<struct<k: string>>"),
        (pa.list_(pa.float32(), 3), "list<float32, 3>"),
        (pa.list_(pa.list_(pa.int8())), "list<list<int8>>"),
    ],
)
def test_arrow_types_map_to_hugging_face_dtypes(arrow_type: pa.DataType, label: str) -> None:
    assert feature_from_arrow("x", arrow_type).type_label() == label


def test_an_arrow_type_without_a_hub_feature_type_names_the_column() -> None:
    with pytest.raises(CardError, match=r"column 'attrs'.*map<string, string>"):
        feature_from_arrow("attrs", pa.map_(pa.string(), pa.string()))


def test_provenance_columns_are_features_flagged_as_provenance(card: DatasetCard) -> None:
    provenance = [f.name for f in card.dataset_info.features if f.is_provenance]
    assert provenance == ["_contributor", "_source_file", "_source_row", "_content_hash"]


def test_size_category_of_the_gsm8k_train_split_is_1k_to_10k(
    curation_facts: dict[str, Any],
) -> None:
    train_only = [f for f in curation_facts["files"] if f["path"].startswith("data/train")]
    card = card_from_curation(**{**curation_facts, "files": train_only})

    assert card.num_rows == 7_473
    assert card.size_categories == ["1K<n<10K"]


@pytest.mark.parametrize(
    ("rows", "bucket"),
    [
        (0, "n<1K"),
        (999, "n<1K"),
        (1_000, "1K<n<10K"),
        (9_999, "1K<n<10K"),
        (10_000, "10K<n<100K"),
        (2_500_000, "1M<n<10M"),
        (10**12, "n>1T"),
    ],
)
def test_size_category_uses_the_hub_buckets(rows: int, bucket: str) -> None:
    assert size_category(rows) == bucket


def test_splits_and_configs_come_from_the_files(
    card: DatasetCard, data_files: list[dict[str, Any]]
) -> None:
    train, test = data_files
    splits = {s.name: s for s in card.dataset_info.splits}

    assert [s.name for s in card.dataset_info.splits] == ["train", "test"]
    assert splits["train"].num_examples == 7_473
    assert splits["test"].num_examples == 1_319
    assert splits["train"].num_bytes == train["num_bytes"]
    assert card.dataset_info.download_size == train["num_bytes"] + test["num_bytes"]
    assert card.dataset_info.dataset_size == card.dataset_info.download_size
    assert card.size_categories == ["1K<n<10K"]  # 8,792 rows in all
    [config] = card.configs
    assert config.config_name == "default"
    assert [(d.split, d.path) for d in config.data_files] == [
        ("train", [train["path"]]),
        ("test", [test["path"]]),
    ]
    assert [f.sha256 for f in card.files] == [train["sha256"], test["sha256"]]


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("data/train-00000-of-00002.parquet", "train"),
        ("data/validation-00000-of-00001.parquet", "validation"),
        ("dev.jsonl", "validation"),
        ("data/test/part-0.parquet", "test"),
        ("data/corpus-00000.parquet", "train"),
    ],
)
def test_split_is_inferred_from_the_file_name(path: str, split: str) -> None:
    assert split_for_path(path) == split


def test_an_explicit_split_overrides_the_file_name(curation_facts: dict[str, Any]) -> None:
    files = [
        {**f, "split": "holdout"} if "test" in f["path"] else f for f in curation_facts["files"]
    ]
    card = card_from_curation(**{**curation_facts, "files": files})

    assert [s.name for s in card.dataset_info.splits] == ["train", "holdout"]
    assert "split" not in card.files[1].model_dump()


def test_steps_are_recorded_with_params_and_row_counts(
    card: DatasetCard, curation_steps: list[dict[str, Any]]
) -> None:
    assert [s.model_dump() for s in card.preprocessing] == curation_steps
    assert card.preprocessing[1].params == {"columns": ["question"], "keep": "first"}


def test_missing_fields_lists_what_a_person_must_provide(card: DatasetCard) -> None:
    assert missing_fields(card) == [
        "motivation",
        "annotations_creators",
        "lawful_source_statement",
        "data_collection",
        "scope",
        "update_frequency",
        "personal_sensitive_information",
        "intended_uses",
        "limitations",
        "biases",
        "social_impact",
        "maintenance_plan",
        "usage_restrictions",
        "license_template",
        "price_plans",
    ]


def test_missing_fields_counts_blank_text_and_empty_lists_as_missing(
    curation_facts: dict[str, Any],
) -> None:
    card = card_from_curation(
        **{**curation_facts, "description": "  ", "language": None, "task_categories": []}
    )

    assert missing_fields(card)[:5] == [
        "description",
        "motivation",
        "language",
        "task_categories",
        "annotations_creators",
    ]


def test_missing_fields_is_empty_once_a_person_fills_them_in(
    card: DatasetCard, complete_card: DatasetCard
) -> None:
    assert missing_fields(complete_card) == []
    assert complete_card.num_rows == card.num_rows


def test_an_unknown_license_id_is_rejected_with_a_clear_message(
    curation_facts: dict[str, Any],
) -> None:
    with pytest.raises(InvalidCardError, match=r"license: .*'apache-3\.0' is not a known license"):
        card_from_curation(**{**curation_facts, "license": "apache-3.0"})
    with pytest.raises(ValidationError, match="use 'other' with license_name and license_link"):
        DatasetCard.model_validate({**minimal_card_fields(), "license": "unknown"})


@pytest.mark.parametrize("license_id", ["apache-2.0", "MIT", "cc-by-4.0", "cc-by-sa-4.0", "odc-by"])
def test_known_license_ids_are_accepted_in_hub_spelling(
    curation_facts: dict[str, Any], license_id: str
) -> None:
    card = card_from_curation(**{**curation_facts, "license": license_id})
    assert card.license == license_id.lower()


def test_license_other_needs_a_name_and_a_link(curation_facts: dict[str, Any]) -> None:
    with pytest.raises(InvalidCardError, match="needs both license_name and license_link"):
        card_from_curation(**{**curation_facts, "license": "other"})

    card = card_from_curation(
        **curation_facts
        | {"license": "other", "license_name": "acme-data-1.0", "license_link": "LICENSE.md"}
    )
    assert (card.license, card.license_name, card.license_link) == (
        "other",
        "acme-data-1.0",
        "LICENSE.md",
    )


def test_a_license_name_without_license_other_is_rejected(curation_facts: dict[str, Any]) -> None:
    with pytest.raises(InvalidCardError, match="apply only to license 'other', not 'mit'"):
        card_from_curation(**{**curation_facts, "license_name": "acme-data-1.0"})


def test_a_bad_file_digest_names_the_file_field(curation_facts: dict[str, Any]) -> None:
    files = [{**curation_facts["files"][0], "sha256": "not-a-digest"}]
    with pytest.raises(InvalidCardError, match=r"files\.0\.sha256: .*'not-a-digest'"):
        card_from_curation(**{**curation_facts, "files": files})


def test_an_absolute_file_path_is_rejected(curation_facts: dict[str, Any]) -> None:
    files = [{**curation_facts["files"][0], "path": "/srv/data/train.parquet"}]
    with pytest.raises(InvalidCardError, match=r"files\.0\.path: .*must be relative"):
        card_from_curation(**{**curation_facts, "files": files})


def test_the_card_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="surprise"):
        DatasetCard.model_validate({**minimal_card_fields(), "surprise": 1})


def minimal_card_fields() -> dict[str, Any]:
    """The smallest valid card, as plain values."""
    return {
        "pretty_name": "Tiny",
        "license": "mit",
        "dataset_info": {"features": [{"name": "text", "dtype": "string"}]},
        "dataset_id": "ds",
        "version_id": "v1",
        "content_hash": "sha256:" + "0" * 64,
        "provider": "Acme",
    }
