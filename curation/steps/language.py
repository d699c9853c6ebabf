"""Language identification with the model packaged in ``py3langid`` (97 languages, no download).

The score is py3langid's calibrated probability of the best language: naive Bayes scores over the
text's byte n-grams, softened by the square root of the text's length in bytes, so that short or
mixed text gets a modest score instead of a near-certain one. It is the confidence the filter
compares with ``min_score``.

- :class:`LanguageTag` adds ``_language`` (an ISO 639-1 code) and ``_language_score`` to every
  row. Like provenance, the leading ``_`` keeps them out of the content hash.
- :class:`LanguageFilter` keeps rows whose probability of being in one of ``languages`` (the sum
  over them, so ``[zh, yue, wuu]`` counts Mandarin, Cantonese and Wu together) is at least
  ``min_score``; without ``languages``, rows whose best language scores at least ``min_score``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

import pyarrow as pa

from curation.errors import CurationError
from curation.steps.base import Filter, Transform
from curation.steps.text import text_of

LANGUAGE_COLUMN = "_language"
LANGUAGE_SCORE_COLUMN = "_language_score"
#: The language given to text without a single letter or digit.
UNDETERMINED = "und"


class _Identifier(Protocol):
    labels: list[str]

    def classify(self, text: str) -> tuple[str, float]: ...

    def rank(self, text: str) -> list[tuple[str, float]]: ...


@cache
def _identifier() -> _Identifier:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier: _Identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return identifier


def known_languages() -> list[str]:
    """The language codes the packaged model knows."""
    return sorted(_identifier().labels)


def identify_language(text: str) -> tuple[str, float]:
    """The most likely language of ``text`` and its probability; ``("und", 0.0)`` for no words."""
    if not any(character.isalnum() for character in text):
        return UNDETERMINED, 0.0
    language, score = _identifier().classify(text)
    return language, round(float(score), 4)


def language_scores(text: str) -> dict[str, float]:
    """The probability of each language for ``text``; empty for text without words."""
    if not any(character.isalnum() for character in text):
        return {}
    return {language: float(score) for language, score in _identifier().rank(text)}


class LanguageTag(Transform):
    """Add ``_language`` and ``_language_score`` columns, identified from the rows' text."""

    name = "language_tag"

    def __init__(self, columns: Sequence[str] | None = None) -> None:
        super().__init__()
        self.columns = list(columns) if columns is not None else None
        self._counts: Counter[str] = Counter()

    @property
    def params(self) -> dict[str, Any]:
        return {"columns": self.columns}

    @property
    def details(self) -> dict[str, Any]:
        return {"languages": dict(self._counts.most_common())}

    def transform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        found = [
            identify_language(text) for text in text_of(batch, self.columns, self.name).to_pylist()
        ]
        self._counts.update(language for language, _ in found)
        languages = pa.array([language for language, _ in found], pa.string())
        scores = pa.array([score for _, score in found], pa.float64())
        for name, values in ((LANGUAGE_COLUMN, languages), (LANGUAGE_SCORE_COLUMN, scores)):
            index = batch.schema.get_field_index(name)
            if index >= 0:
                batch = batch.set_column(index, name, values)
            else:
                batch = batch.append_column(name, values)
        return batch


class LanguageFilter(Filter):
    """Keep rows likely enough to be in ``languages``, or any language when none are given.

    Reasons read ``language_filter: P(en) 0.31 < 0.5, likeliest fr 0.62`` (counted per wanted
    languages and limit), or ``language_filter: no words``.
    """

    name = "language_filter"

    def __init__(
        self,
        languages: Sequence[str] | None = None,
        *,
        min_score: float = 0.5,
        columns: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= min_score <= 1:
            raise CurationError(f"step {self.name}: min_score must be in [0, 1], not {min_score}")
        self.languages = list(languages) if languages is not None else None
        if self.languages is not None:
            unknown = sorted(set(self.languages) - set(known_languages()))
            if unknown or not self.languages:
                raise CurationError(
                    f"step {self.name}: unknown language codes {', '.join(unknown) or '(none)'}; "
                    f"the model knows {', '.join(known_languages())}"
                )
        self.min_score = min_score
        self.columns = list(columns) if columns is not None else None
        self._counts: Counter[str] = Counter()
        self._wanted = "P(" + "|".join(self.languages or ["best"]) + ")"

    @property
    def params(self) -> dict[str, Any]:
        return {"languages": self.languages, "min_score": self.min_score, "columns": self.columns}

    @property
    def details(self) -> dict[str, Any]:
        return {"likeliest_languages": dict(self._counts.most_common())}

    def reason_key(self, reason: str) -> str:
        if reason.startswith(f"{self.name}: P("):
            return f"{self.name}: {self._wanted} < {self.min_score}"
        return reason

    def decide(self, batch: pa.RecordBatch) -> tuple[pa.BooleanArray, list[str | None]]:
        reasons: list[str | None] = []
        for text in text_of(batch, self.columns, self.name).to_pylist():
            scores = language_scores(text)
            if not scores:
                self._counts[UNDETERMINED] += 1
                reasons.append(f"{self.name}: no words")
                continue
            best = max(scores, key=scores.__getitem__)
            self._counts[best] += 1
            if self.languages is None:
                score = scores[best]
            else:
                score = sum(scores.get(language, 0.0) for language in self.languages)
            if score < self.min_score:
                reasons.append(
                    f"{self.name}: {self._wanted} {score:.3g} < {self.min_score}, "
                    f"likeliest {best} {scores[best]:.3g}"
                )
            else:
                reasons.append(None)
        return pa.array([reason is None for reason in reasons], pa.bool_()), reasons
