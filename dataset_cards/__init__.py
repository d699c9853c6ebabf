"""Dataset cards: one card model, filled from curation, rendered for the Hub, Croissant and the
exchange's product description, linted, and revised.

The card itself, its renderings and the lint are pure functions over values; only
:mod:`dataset_cards.service` (card revisions) touches the database.
"""

from dataset_cards.autofill import card_from_curation, facts_from_report, missing_fields
from dataset_cards.errors import (
    CardConflictError,
    CardError,
    CardNotFoundError,
    CardParseError,
    InvalidCardError,
    ReadOnlyFieldError,
)
from dataset_cards.licenses import LICENSES, LicenseClass, license_class_of
from dataset_cards.lint import LintIssue, has_errors, lint_card
from dataset_cards.render import (
    parse_croissant,
    parse_readme,
    render_croissant,
    render_product_html,
    render_product_markdown,
    render_readme,
)
from dataset_cards.revisions import FieldChange, card_sha256, diff_cards
from dataset_cards.schema import DatasetCard

__all__ = [
    "LICENSES",
    "CardConflictError",
    "CardError",
    "CardNotFoundError",
    "CardParseError",
    "DatasetCard",
    "FieldChange",
    "InvalidCardError",
    "LicenseClass",
    "LintIssue",
    "ReadOnlyFieldError",
    "card_from_curation",
    "card_sha256",
    "diff_cards",
    "facts_from_report",
    "has_errors",
    "license_class_of",
    "lint_card",
    "missing_fields",
    "parse_croissant",
    "parse_readme",
    "render_croissant",
    "render_product_html",
    "render_product_markdown",
    "render_readme",
]
