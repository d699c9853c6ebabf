"""docs/cards.md documents every card field, lint rule and licence class the code has."""

from __future__ import annotations

import re
from pathlib import Path

from dataset_cards.licenses import LICENSES
from dataset_cards.lint import RULES
from dataset_cards.schema import DatasetCard

DOC = (Path(__file__).resolve().parents[3] / "docs" / "cards.md").read_text(encoding="utf-8")


def test_every_field_is_in_the_field_table() -> None:
    table = DOC.split("## What the card holds", 1)[1].split("## Autofill", 1)[0]
    documented = set(re.findall(r"`(\w+)`", table))
    assert set(DatasetCard.model_fields) <= documented


def test_every_lint_rule_is_documented_with_its_severity() -> None:
    for rule, (severity, _) in RULES.items():
        assert f"| `{rule}` | {severity} |" in DOC


def test_every_licence_class_is_documented() -> None:
    for license_id, info in LICENSES.items():
        use = info.license_class.allowed_use
        assert re.search(rf"^\| `{re.escape(license_id)}` \| [^|]+ \| {use} \|", DOC, re.M)
