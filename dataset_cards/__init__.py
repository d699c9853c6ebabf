"""Dataset cards: one card model, filled from curation and rendered for the Hub and for people.

Pure functions over values; no database or storage access happens here.
"""

from dataset_cards.autofill import card_from_curation, missing_fields
from dataset_cards.errors import CardError, CardParseError, InvalidCardError
from dataset_cards.render import parse_readme, render_readme
from dataset_cards.schema import DatasetCard

__all__ = [
    "CardError",
    "CardParseError",
    "DatasetCard",
    "InvalidCardError",
    "card_from_curation",
    "missing_fields",
    "parse_readme",
    "render_readme",
]
