"""Personal data: find it in text and replace it with typed placeholders.

Kinds, and what makes a match (a match is never part of a longer run of letters or digits):

- ``EMAIL``: ``local@domain.tld``.
- ``IPV4``: four dot-separated numbers 0-255 (not part of a longer dotted number).
- ``IPV6``: colon-separated hexadecimal groups that Python's ``ipaddress`` accepts, with at least
  one digit (so ``12:30:45`` and a bare ``::`` are not addresses).
- ``CN_ID``: a mainland resident identity number (GB 11643-1999): 18 characters whose first two
  digits are a province code in use, whose digits 7-14 are a real date from 1900 to today, and
  whose last character is the ISO 7064 mod 11-2 check digit (``X`` for 10). Look-alike 18-digit
  numbers are left alone.
- ``BANK_CARD``: 13 to 19 digits, plain or in groups of four (or Amex's 4-6-5), starting with 2-6
  (the card networks' ranges) and passing the Luhn check.
- ``PHONE``: a mainland mobile (``1[3-9]`` and 9 digits, optionally after ``+86`` or ``0086``,
  plain or split 3-4-4 by spaces or dashes); an international number in E.164 style (``+`` or
  ``00``, a country code, then 7 to 14 more digits in groups); or a North American one written
  ``(555) 123-4567``, ``555-123-4567`` or ``555.123.4567``.

Names and street addresses are not detected. No recogniser that ships inside a PyPI package (no
model download at run time) does it well enough to rewrite text with: Presidio needs a spaCy model
(spaCy's own are not on PyPI, only third-party re-uploads); ``pyap`` (rules for US, Canadian and
British addresses) found both US addresses of the identity fixture but 9 of its 10 finds in the
C4 and Wikipedia samples were not addresses ("... the state flower is the camellia. Alabama"),
at about 0.1 MB/s; ``jieba``'s part-of-speech tags for person and place names (``nr``, ``ns``)
mark common words in real Chinese text (太阳, 顾客, 道德) as names or places.

:func:`detect_pii` and :func:`redact` are pure functions, for reuse outside curation (the training
release gate); :class:`RedactPii` is the step. Each kind has its own precompiled pattern, tried
only when a cheap test (an ``@``, a digit, a colon) says the text could hold it.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa

from curation.errors import CurationError
from curation.steps.base import Transform, data_columns

EMAIL = "EMAIL"
IPV4 = "IPV4"
IPV6 = "IPV6"
PHONE = "PHONE"
CN_ID = "CN_ID"
BANK_CARD = "BANK_CARD"
#: Every kind, in the order overlapping matches are resolved: an earlier kind wins.
KINDS = (EMAIL, CN_ID, BANK_CARD, IPV6, IPV4, PHONE)
PLACEHOLDERS = {kind: f"[{kind}]" for kind in KINDS}

_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]++@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![\w-])",
    re.ASCII,
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)", re.ASCII)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?"
    r"(?![\w:])",
    re.ASCII,
)
_CN_ID = re.compile(r"(?<!\w)[1-9]\d{16}[\dXx](?!\w)", re.ASCII)
_BANK_CARD = re.compile(
    r"(?<![\w-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|\d{4}([ -])\d{6}\2\d{5})"
    r"(?!\w|[ -]\d)",
    re.ASCII,
)
_CN_MOBILE = re.compile(
    r"(?<![\w+])(?:\(?(?:\+|00)86\)?[ -]?)?1[3-9]\d(?:\d{8}|([ -])\d{4}\1\d{4})(?!\w)",
    re.ASCII,
)
# "+" and a country code, or "00", a country code and a separator (a bare 00-number is as likely
# an account number), then groups of digits.
_INTERNATIONAL_PHONE = re.compile(
    r"(?<![\w+])(?:\+[1-9]\d{0,2}|00[1-9]\d{0,2}(?=[ (.-]))(?:[ .-]?\(?\d{1,4}\)?){2,6}"
    r"(?!\w|[ .-]?\d)",
    re.ASCII,
)
_NANP_PHONE = re.compile(
    r"(?<![\w(])(?:\(\d{3}\) ?\d{3}-|\d{3}([-.])\d{3}\1)\d{4}(?!\w|[-.]\d)", re.ASCII
)
# Anchors: cheap patterns (starting with a literal or a character class, which Python's regex
# engine scans for quickly) that every match of a kind contains; the exact patterns run only in
# a window around each anchor.
_DIGIT_RUN = re.compile(r"\d[\d .()\-]{5,}\d")
_AT = re.compile(r"@")
_HEX_COLONS = re.compile(r":[0-9A-Fa-f]{0,4}:")
_NOT_DIGIT = re.compile(r"\D")

# Province-level codes of GB/T 2260 used by resident identity numbers.
_CN_REGIONS = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
)
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


@dataclass(frozen=True)
class PiiMatch:
    """One piece of personal data: its kind and where it is (``text[start:end]``)."""

    kind: str
    start: int
    end: int


def is_cn_resident_id(value: str, *, today: date | None = None) -> bool:
    """Whether ``value`` is a valid mainland resident identity number (GB 11643-1999)."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    if int(value[:2]) not in _CN_REGIONS:
        return False
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not date(1900, 1, 1) <= born <= (today or date.today()):
        return False
    total = sum(int(digit) * weight for digit, weight in zip(value, _CN_ID_WEIGHTS, strict=False))
    return value[17].upper() == _CN_ID_CHECK[total % 11]


def luhn_valid(digits: str) -> bool:
    """Whether the digit string passes the Luhn (mod 10) check."""
    total = 0
    for position, character in enumerate(reversed(digits)):
        value = int(character)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _is_bank_card(candidate: str) -> bool:
    digits = _NOT_DIGIT.sub("", candidate)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def _is_ipv6(candidate: str) -> bool:
    if not any(c not in ":." for c in candidate) or candidate.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _is_international_phone(candidate: str) -> bool:
    digits = len(_NOT_DIGIT.sub("", candidate))
    return 8 <= digits <= 15


def _windows(anchors: re.Pattern[str], text: str, before: int, after: int) -> list[range]:
    """Windows around the anchor's matches, merged where they overlap."""
    merged: list[range] = []
    for anchor in anchors.finditer(text):
        low, high = max(0, anchor.start() - before), min(len(text), anchor.end() + after)
        if merged and low <= merged[-1].stop:
            merged[-1] = range(merged[-1].start, max(high, merged[-1].stop))
        else:
            merged.append(range(low, high))
    return merged


_DIGIT_PATTERNS = (
    (CN_ID, _CN_ID, is_cn_resident_id),
    (BANK_CARD, _BANK_CARD, _is_bank_card),
    (IPV4, _IPV4, None),
    (PHONE, _CN_MOBILE, None),
    (PHONE, _INTERNATIONAL_PHONE, _is_international_phone),
    (PHONE, _NANP_PHONE, None),
)


def detect_pii(text: str, kinds: Collection[str] | None = None) -> list[PiiMatch]:
    """The personal data in ``text`` (of ``kinds``, default all), in order, without overlaps.

    Where matches of different kinds overlap, the kind earlier in :data:`KINDS` wins.
    """
    wanted = set(KINDS if kinds is None else kinds)
    found: set[PiiMatch] = set()
    if EMAIL in wanted and "@" in text:
        for window in _windows(_AT, text, 64, 256):
            found.update(
                PiiMatch(EMAIL, m.start(), m.end())
                for m in _EMAIL.finditer(text, window.start, window.stop)
            )
    if wanted & {CN_ID, BANK_CARD, IPV4, PHONE}:
        patterns = [pattern for pattern in _DIGIT_PATTERNS if pattern[0] in wanted]
        # Before a run of digits may stand "+", "(+" or "00" of a phone number; after it, an "X"
        # check digit and the characters the patterns look ahead at.
        for window in _windows(_DIGIT_RUN, text, 6, 3):
            for kind, pattern, check in patterns:
                found.update(
                    PiiMatch(kind, m.start(), m.end())
                    for m in pattern.finditer(text, window.start, window.stop)
                    if check is None or check(m.group())
                )
    if IPV6 in wanted and ":" in text:
        for window in _windows(_HEX_COLONS, text, 45, 45):
            found.update(
                PiiMatch(IPV6, m.start(), m.end())
                for m in _IPV6.finditer(text, window.start, window.stop)
                if _is_ipv6(m.group())
            )
    if len(found) < 2:
        return list(found)
    rank = {kind: index for index, kind in enumerate(KINDS)}
    chosen: list[PiiMatch] = []
    for match in sorted(found, key=lambda m: (rank[m.kind], m.start, -m.end)):
        if all(match.end <= other.start or match.start >= other.end for other in chosen):
            chosen.append(match)
    return sorted(chosen, key=lambda m: m.start)


def redact(text: str, kinds: Collection[str] | None = None) -> tuple[str, dict[str, int]]:
    """``text`` with each piece of personal data replaced by its placeholder, and counts by kind."""
    matches = detect_pii(text, kinds)
    if not matches:
        return text, {}
    parts = []
    position = 0
    for match in matches:
        parts += [text[position : match.start], PLACEHOLDERS[match.kind]]
        position = match.end
    parts.append(text[position:])
    return "".join(parts), dict(Counter(match.kind for match in matches))


class RedactPii(Transform):
    """Replace personal data in ``columns`` (default: every text column) with placeholders.

    Strings nested in lists and structs (chat ``messages``) are redacted too. ``kinds`` limits the
    kinds looked for (default: all of :data:`KINDS`). The details count matches per kind and the
    rows that had any.
    """

    name = "pii_redact"
    changes_content = True

    def __init__(
        self, columns: Sequence[str] | None = None, *, kinds: Sequence[str] | None = None
    ) -> None:
        super().__init__()
        if kinds is not None:
            unknown = sorted(set(kinds) - set(KINDS))
            if unknown:
                raise CurationError(
                    f"step {self.name}: unknown PII kinds {', '.join(unknown)}; known: "
                    f"{', '.join(KINDS)}"
                )
        self.columns = list(columns) if columns is not None else None
        self.kinds = list(kinds) if kinds is not None else None
        self.counts: Counter[str] = Counter()
        self.rows_with_pii = 0

    @property
    def params(self) -> dict[str, Any]:
        return {"columns": self.columns, "kinds": self.kinds}

    @property
    def details(self) -> dict[str, Any]:
        return {
            "matches_by_kind": {kind: self.counts[kind] for kind in KINDS if self.counts[kind]},
            "rows_with_pii": self.rows_with_pii,
        }

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        names = self.columns if self.columns is not None else data_columns(batch.schema)
        missing = [name for name in names if name not in batch.schema.names]
        if missing:
            raise CurationError(f"step {self.name}: no columns named {', '.join(missing)}")
        touched = [False] * batch.num_rows
        arrays = list(batch.columns)
        for name in names:
            index = batch.schema.get_field_index(name)
            arrays[index] = self._redact_array(arrays[index], touched)
        self.rows_with_pii += sum(touched)
        return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)

    def _redact_array(self, array: pa.Array, touched: list[bool]) -> pa.Array:
        kind = array.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            values = array.to_pylist()
            for row, value in enumerate(values):
                if value:
                    redacted, counts = redact(value, self.kinds)
                    if counts:
                        values[row] = redacted
                        touched[row] = True
                        self.counts.update(counts)
            return pa.array(values, kind)
        if pa.types.is_struct(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
            if not _has_strings(kind):
                return array
            values = array.to_pylist()
            for row, value in enumerate(values):
                values[row] = self._redact_value(value, row, touched)
            return pa.array(values, kind)
        return array

    def _redact_value(self, value: Any, row: int, touched: list[bool]) -> Any:
        if isinstance(value, str):
            redacted, counts = redact(value, self.kinds)
            if counts:
                touched[row] = True
                self.counts.update(counts)
            return redacted
        if isinstance(value, list):
            return [self._redact_value(item, row, touched) for item in value]
        if isinstance(value, dict):
            return {key: self._redact_value(item, row, touched) for key, item in value.items()}
        return value


def _has_strings(kind: pa.DataType) -> bool:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_has_strings(field.type) for field in kind)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_strings(kind.value_type)
    return False


__all__ = [
    "BANK_CARD",
    "CN_ID",
    "EMAIL",
    "IPV4",
    "IPV6",
    "KINDS",
    "PHONE",
    "PLACEHOLDERS",
    "PiiMatch",
    "RedactPii",
    "detect_pii",
    "is_cn_resident_id",
    "luhn_valid",
    "redact",
]
