"""diff_cards names each changed value by its field path; card_sha256 is canonical."""

from __future__ import annotations

from typing import Any

from dataset_cards.revisions import FieldChange, canonical_card_json, card_sha256, diff_cards
from dataset_cards.schema import DatasetCard


def _with(card: DatasetCard, **changes: Any) -> DatasetCard:
    return DatasetCard.model_validate({**card.model_dump(), **changes})


def test_equal_cards_have_no_changes_and_the_same_digest(card: DatasetCard) -> None:
    same = DatasetCard.model_validate(card.model_dump(mode="json"))

    assert diff_cards(card, same) == []
    assert card_sha256(card) == card_sha256(same)
    assert len(card_sha256(card)) == 64
    assert canonical_card_json(card).startswith('{"annotation_protocol":null,')


def test_changed_fields_are_named_by_path_with_old_and_new(card: DatasetCard) -> None:
    info = card.model_dump()["dataset_info"]
    info["splits"][0]["num_examples"] = 7_000
    new = _with(card, dataset_info=info, biases="US-centric.", tags=["math"])

    assert diff_cards(card, new) == [
        FieldChange("tags", [], ["math"]),
        FieldChange("dataset_info.splits[0].num_examples", 7_473, 7_000),
        FieldChange("biases", None, "US-centric."),
    ]
    assert card_sha256(card) != card_sha256(new)


def test_added_and_removed_items_and_keys(card: DatasetCard) -> None:
    new = _with(card, files=card.model_dump()["files"][:1], pii_counts={"email": 2})
    changes = {change.path: change for change in diff_cards(card, new)}

    assert changes["files[1]"].new is None
    assert changes["files[1]"].old["path"] == "data/test-00000-of-00001.parquet"
    assert changes["pii_counts"] == FieldChange("pii_counts", None, {"email": 2})
    back = {change.path for change in diff_cards(new, card)}
    assert "files[1]" in back


def test_nested_mappings_are_compared_by_key(complete_card: DatasetCard) -> None:
    new = _with(complete_card, quality_scores={"completeness": 1.0, "accuracy": 0.5, "x": 1.0})

    assert diff_cards(complete_card, new) == [
        FieldChange("quality_scores.accuracy", 0.99, 0.5),
        FieldChange("quality_scores.x", None, 1.0),
    ]
    assert FieldChange("a", 1, 2).as_dict() == {"path": "a", "old": 1, "new": 2}
