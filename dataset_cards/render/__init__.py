"""Renderings of a dataset card: Hugging Face README, Croissant JSON-LD, JSON Schema, and the
bilingual product description."""

from dataset_cards.render.croissant import (
    croissant_document,
    croissant_fields,
    parse_croissant,
    render_croissant,
)
from dataset_cards.render.hf_readme import (
    EXCHANGE_RECORD_MARKER,
    front_matter,
    parse_readme,
    readme_fields,
    render_readme,
)
from dataset_cards.render.json_schema import card_json_schema, render_json_schema
from dataset_cards.render.product_page import (
    product_items,
    render_product_html,
    render_product_markdown,
)

__all__ = [
    "EXCHANGE_RECORD_MARKER",
    "card_json_schema",
    "croissant_document",
    "croissant_fields",
    "front_matter",
    "parse_croissant",
    "parse_readme",
    "product_items",
    "readme_fields",
    "render_croissant",
    "render_json_schema",
    "render_product_html",
    "render_product_markdown",
    "render_readme",
]
