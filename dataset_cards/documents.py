"""Cards as files: tell a README from a Croissant file from card JSON, read and write each.

The three kinds carry the same card: ``README.md`` (Hugging Face), ``croissant.json``
(Croissant JSON-LD) and card JSON (:meth:`DatasetCard.model_dump` as JSON). The product page
and the JSON Schema are renderings only.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dataset_cards.errors import CardParseError
from dataset_cards.render.croissant import croissant_fields, parse_croissant, render_croissant
from dataset_cards.render.hf_readme import parse_readme, readme_fields, render_readme
from dataset_cards.render.product_page import render_product_html, render_product_markdown
from dataset_cards.schema import DatasetCard


class CardKind(StrEnum):
    """A file kind that holds a whole card and can be read back."""

    README = "readme"
    CROISSANT = "croissant"
    CARD_JSON = "json"


class RenderFormat(StrEnum):
    """What a card can be rendered as."""

    README = "readme"
    CROISSANT = "croissant"
    CARD_JSON = "json"
    PRODUCT_MARKDOWN = "product-md"
    PRODUCT_HTML = "product-html"


def detect_kind(name: str, text: str) -> CardKind:
    """The kind of a card file, from its name and, for ``.json`` files, its content: a JSON
    object with an ``@context`` (or a file named ``*croissant.json`` / ``*.jsonld``) is
    Croissant; other JSON is card JSON; anything else is a README."""
    lowered = name.lower()
    if lowered.endswith(("croissant.json", ".jsonld")):
        return CardKind.CROISSANT
    if lowered.endswith(".json") or text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return CardKind.CARD_JSON  # its parser reports where the JSON breaks
        if isinstance(value, dict) and "@context" in value:
            return CardKind.CROISSANT
        return CardKind.CARD_JSON
    return CardKind.README


def parse_card_json(text: str) -> DatasetCard:
    """A card from card JSON; :class:`CardParseError` names the line or field that is wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardParseError(f"not valid JSON: {exc.msg}", line=exc.lineno) from exc
    if not isinstance(value, dict):
        raise CardParseError("card JSON must be a JSON object", line=1)
    try:
        return DatasetCard.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors()
        detail = "; ".join(
            (".".join(map(str, e["loc"])) + ": " if e["loc"] else "") + e["msg"] for e in errors
        )
        first = ".".join(map(str, errors[0]["loc"])) or None
        raise CardParseError(detail, field=first) from exc


def parse_card(text: str, kind: CardKind) -> DatasetCard:
    """A card from the text of a file of ``kind``."""
    if kind is CardKind.README:
        return parse_readme(text)
    if kind is CardKind.CROISSANT:
        return parse_croissant(text)
    return parse_card_json(text)


def card_fields(text: str, kind: CardKind) -> dict[str, Any]:
    """The card fields a file states, unvalidated: for bringing a card another tool wrote."""
    if kind is CardKind.README:
        return readme_fields(text)
    if kind is CardKind.CROISSANT:
        return croissant_fields(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardParseError(f"not valid JSON: {exc.msg}", line=exc.lineno) from exc
    if not isinstance(value, dict):
        raise CardParseError("card JSON must be a JSON object", line=1)
    return value


def read_card_file(path: Path) -> DatasetCard:
    """The card in a README.md, croissant.json or card JSON file."""
    text = path.read_text(encoding="utf-8")
    return parse_card(text, detect_kind(path.name, text))


def render_card(card: DatasetCard, output: RenderFormat) -> str:
    """The card rendered as ``output``."""
    if output is RenderFormat.README:
        return render_readme(card)
    if output is RenderFormat.CROISSANT:
        return render_croissant(card)
    if output is RenderFormat.PRODUCT_MARKDOWN:
        return render_product_markdown(card)
    if output is RenderFormat.PRODUCT_HTML:
        return render_product_html(card)
    return json.dumps(card.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n"
