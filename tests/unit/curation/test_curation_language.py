"""Language identification with py3langid's packaged model: tags, and a filter by language."""

from __future__ import annotations

import pytest

from curation.errors import CurationError
from curation.steps import LanguageFilter, LanguageTag, Normalize
from curation.steps.language import identify_language, known_languages
from tests.unit.curation.conftest import RunSteps, read_json


def test_real_text_is_identified(
    c4_texts: list[str], lunyu_paragraphs: list[str], wiki_passages: list[str]
) -> None:
    english = [identify_language(text) for text in c4_texts[:100] + wiki_passages[:20]]
    chinese = [identify_language(text) for text in lunyu_paragraphs[:40]]

    assert all(language == "en" for language, _ in english)
    assert sorted(score for _, score in english)[len(english) // 2] > 0.99
    assert sum(language == "zh" for language, _ in chinese) >= 38
    assert identify_language("  ...  ") == ("und", 0.0)
    assert {"en", "zh", "fr", "yue", "wuu"} <= set(known_languages())


def test_tag_adds_language_columns_outside_the_content_hash(
    run_steps: RunSteps, c4_texts: list[str], lunyu_paragraphs: list[str]
) -> None:
    rows = [{"text": text} for text in c4_texts[:5] + lunyu_paragraphs[:5]]
    step = LanguageTag()

    table = run_steps([step], rows, batch_size=3)
    plain = run_steps([], rows)

    assert table.column("_language").to_pylist()[:5] == ["en"] * 5
    assert set(table.column("_language").to_pylist()[5:]) <= {"zh", "wuu", "yue"}
    assert all(0 < score <= 1 for score in table.column("_language_score").to_pylist())
    assert table.column("_content_hash").equals(plain.column("_content_hash"))
    assert step.details["languages"]["en"] == 5


def test_filter_keeps_wanted_languages_and_names_the_rest(
    run_steps: RunSteps, c4_texts: list[str], lunyu_paragraphs: list[str]
) -> None:
    french = "Le chat dort sur le canapé pendant que les enfants jouent dans le jardin."
    rows = [{"text": t} for t in [*c4_texts[:20], lunyu_paragraphs[10], french]]
    step = LanguageFilter(["en"], min_score=0.5)

    table = run_steps([step], rows)

    kept = table.column("text").to_pylist()
    assert lunyu_paragraphs[10] not in kept
    assert french not in kept
    reasons = {record["source_row"]: record["reason"] for record in step.exclusions}
    assert reasons[21].startswith("language_filter: P(en) ")
    assert reasons[21].endswith("< 0.5, likeliest fr 1")
    assert set(step.stats.dropped_by_reason) == {"language_filter: P(en) < 0.5"}
    # C4's low-scoring pages are the junk ones: "Y.M. Molding Industry Mfg. Inc." and the like.
    assert len(reasons) - 2 == sum(1 for text in c4_texts[:20] if identify_language(text)[1] < 0.5)


def test_chinese_variants_count_together_after_simplification(
    run_steps: RunSteps, tang_poems: list[str]
) -> None:
    rows = [{"text": poem} for poem in tang_poems]
    step = LanguageFilter(["zh", "yue", "wuu"], min_score=0.5)

    table = run_steps([Normalize(to_simplified=True), step], rows)

    assert table.num_rows == len(rows)
    assert len(step.details["likeliest_languages"]) > 1  # not all poems look Mandarin alone


def test_alpaca_prompts_in_english_mostly_pass_a_low_bar(run_steps: RunSteps) -> None:
    records = read_json("alpaca_en_demo.json")
    rows = [{"instruction": r["instruction"], "output": r["output"]} for r in records]
    step = LanguageFilter(["en"], min_score=0.2)

    table = run_steps([step], rows)

    assert table.num_rows >= len(rows) - 4


def test_unknown_language_codes_are_refused() -> None:
    with pytest.raises(CurationError, match="unknown language codes english"):
        LanguageFilter(["english"])
