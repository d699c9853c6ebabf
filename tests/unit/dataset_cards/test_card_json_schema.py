"""The card's JSON Schema: generated from the model, kept as a file, and true to card JSON."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from dataset_cards.render.json_schema import (
    SCHEMA_FILE,
    card_json_schema,
    render_json_schema,
    write_json_schema,
)
from dataset_cards.schema import DatasetCard


def test_the_schema_file_is_current() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == render_json_schema(), (
        "regenerate it: aidx card schema --out dataset_cards/card.schema.json"
    )


def test_write_json_schema_writes_the_schema(tmp_path: Path) -> None:
    path = write_json_schema(tmp_path / "card.schema.json")
    assert json.loads(path.read_text(encoding="utf-8")) == card_json_schema()


def test_the_schema_is_valid_draft_2020_12() -> None:
    schema = card_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"pretty_name", "dataset_info", "lawful_source_statement", "license_class"} <= set(
        schema["properties"]
    )


def test_card_json_validates_against_the_schema(complete_card: DatasetCard) -> None:
    jsonschema.validate(complete_card.model_dump(mode="json"), card_json_schema())


@pytest.mark.parametrize(
    ("field", "value"),
    [("update_frequency", "hourly"), ("files", [{"path": "x"}]), ("surprise", 1)],
)
def test_the_schema_refuses_what_the_model_refuses(
    complete_card: DatasetCard, field: str, value: object
) -> None:
    data = {**complete_card.model_dump(mode="json"), field: value}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, card_json_schema())
