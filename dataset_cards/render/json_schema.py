"""The card's JSON Schema, generated from the pydantic model, for tools outside aidx.

``dataset_cards/card.schema.json`` is this schema as a file; a test keeps it current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dataset_cards.schema import DatasetCard

SCHEMA_ID = "urn:aidx:dataset-card"
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "card.schema.json"


def card_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a card as :meth:`DatasetCard.model_dump` writes it."""
    schema = DatasetCard.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "aidx dataset card",
        "description": (
            "One dataset version's card: Hugging Face metadata, Croissant RAI and Datasheets"
            " fields, the exchange's product description and what curation measured."
        ),
    }


def render_json_schema() -> str:
    """The schema as indented JSON text ending with a newline."""
    return json.dumps(card_json_schema(), ensure_ascii=False, indent=2) + "\n"


def write_json_schema(path: Path) -> Path:
    """Write the schema to ``path`` (UTF-8) and return it."""
    path.write_text(render_json_schema(), encoding="utf-8")
    return path
