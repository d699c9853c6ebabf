"""What changed between two cards, and the canonical form a card revision is hashed in.

Pure functions: :mod:`dataset_cards.service` stores revisions, the CLI diffs files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from dataset_cards.schema import DatasetCard


@dataclass(frozen=True)
class FieldChange:
    """One changed value. ``old`` or ``new`` is ``None`` where the value is absent on that side
    (a list item or mapping key that only the other card has)."""

    path: str
    old: Any
    new: Any

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "old": self.old, "new": self.new}


def card_json(card: DatasetCard) -> dict[str, Any]:
    """The card as plain JSON values."""
    return card.model_dump(mode="json")


def canonical_card_json(card: DatasetCard) -> str:
    """The card as canonical JSON: sorted keys, no insignificant whitespace, UTF-8 text."""
    return json.dumps(card_json(card), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def card_sha256(card: DatasetCard) -> str:
    """The sha256 (hex) of :func:`canonical_card_json`; equal cards have equal digests."""
    return hashlib.sha256(canonical_card_json(card).encode()).hexdigest()


def diff_cards(old: DatasetCard, new: DatasetCard) -> list[FieldChange]:
    """Every changed value, by field path (``dataset_info.splits[0].num_examples``), in the
    card's field order. Lists of objects are compared item by item; lists of plain values as
    a whole."""
    changes: list[FieldChange] = []
    _diff("", card_json(old), card_json(new), changes)
    return changes


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _diff(path: str, old: Any, new: Any, out: list[FieldChange]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            _diff(_join(path, key), old.get(key), new.get(key), out)
        return
    if (
        isinstance(old, list)
        and isinstance(new, list)
        and any(isinstance(item, dict) for item in [*old, *new])
    ):
        for index in range(max(len(old), len(new))):
            before = old[index] if index < len(old) else None
            after = new[index] if index < len(new) else None
            _diff(_join(path, index), before, after, out)
        return
    out.append(FieldChange(path, old, new))
