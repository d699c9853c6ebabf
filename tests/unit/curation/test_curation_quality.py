"""Quality filters: datatrove's Gopher, C4 and FineWeb rules and our Chinese set, on real text,
each drop naming the rule, the measured value and the limit."""

from __future__ import annotations

import re

import pytest

from curation.errors import CurationError
from curation.pipeline import Pipeline
from curation.steps import (
    C4Clean,
    C4Filter,
    ChineseQuality,
    FineWebQuality,
    GopherQuality,
    GopherRepetition,
)
from curation.steps.quality import repeated_ngram_share
from curation.steps.text import sentences, word_tokens
from tests.unit.curation.conftest import RunSteps


def words_of(text: str) -> list[str]:
    return [token for token in word_tokens(text) if re.search(r"\w", token)]


def test_word_tokens_split_like_treebank() -> None:
    assert word_tokens("Don't stop: it's 4.05 billion, well-known U.S. firms...") == [
        "Do",
        "n't",
        "stop",
        ":",
        "it",
        "'s",
        "4.05",
        "billion",
        ",",
        "well-known",
        "U.S",
        ".",
        "firms",
        "...",
    ]


def test_sentences_split_after_terminal_punctuation() -> None:
    text = 'He left. "Why?" she asked! It cost $4.05 on Jan. 3rd. Fine'
    # A stand-in for punkt: no abbreviation list, so "Jan." ends a sentence before a digit.
    assert sentences(text) == [
        "He left.",
        '"Why?" she asked!',
        "It cost $4.05 on Jan.",
        "3rd.",
        "Fine",
    ]


def test_gopher_quality_on_c4_names_each_rule(run_steps: RunSteps, c4_texts: list[str]) -> None:
    step = GopherQuality()

    table = run_steps([step], [{"text": text} for text in c4_texts])

    assert step.stats.dropped_by_reason == {
        "gopher_quality: share of words with a letter < 0.8": 33,
        "gopher_quality: words < 50": 29,
        "gopher_quality: ellipsis-to-word ratio > 0.1": 1,
    }
    assert table.num_rows == 237
    short = next(r for r in step.exclusions if r["source_row"] == 26)
    assert short["reason"] == f"gopher_quality: words {len(words_of(c4_texts[26]))} < 50"
    assert short["reason"] == "gopher_quality: words 31 < 50"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # Words glued in fours: the mean word length goes over 10.
        (
            lambda text: re.sub(r"(\w+) (\w+) (\w+) (\w+)", r"\1\2\3\4", text),
            r"gopher_quality: mean word length 1\d\.\d+ > 10",
        ),
        (
            lambda text: " ".join(f"#{word}" for word in text.split()),
            r"gopher_quality: hash-to-word ratio 0\.\d+ > 0\.1",
        ),
        (
            lambda text: "\n".join(f"\u2022 {line}" for line in sentences(text)),
            r"gopher_quality: share of lines starting with a bullet 1 > 0\.9",
        ),
        (
            lambda text: "\n".join(line.rstrip(".") + "..." for line in sentences(text)),
            r"gopher_quality: (ellipsis-to-word ratio|share of lines ending with an ellipsis) ",
        ),
        (
            lambda text: re.sub(r"\b(the|be|to|of|and|that|have|with)\b", "", text),
            r"gopher_quality: stop words 0 < 2",
        ),
        (
            lambda text: " ".join(f"{word} 1999" for word in text.split()),
            r"gopher_quality: share of words with a letter 0\.\d+ < 0\.8",
        ),
    ],
)
def test_gopher_quality_rules(change: object, reason: str, c4_texts: list[str]) -> None:
    text = c4_texts[0]
    assert GopherQuality().check(text) is None

    assert callable(change)
    found = GopherQuality().check(change(text))

    assert found is not None
    assert re.fullmatch(reason + r".*", found), found


def test_a_threshold_set_to_none_turns_its_rule_off(c4_texts: list[str]) -> None:
    short = " ".join(c4_texts[0].split()[:30])

    assert GopherQuality().check(short) == "gopher_quality: words 30 < 50"
    assert GopherQuality(min_doc_words=None).check(short) is None


def test_gopher_repetition_on_c4(run_steps: RunSteps, c4_texts: list[str]) -> None:
    step = GopherRepetition()

    run_steps([step], [{"text": text} for text in c4_texts])

    reasons = {record["source_row"]: record["reason"] for record in step.exclusions}
    assert len(reasons) == 14
    assert reasons[81] == "gopher_repetition: characters in the top 2-gram 0.257 > 0.2"
    assert reasons[10] == "gopher_repetition: characters in repeated 5-grams 0.174 > 0.15"
    # "Access All Records Of 213-484-04.. Now!" twenty times over, numbers aside.
    assert c4_texts[139].count("Access All Records Of") == 20
    assert reasons[139].startswith("gopher_repetition: characters in the top ")


def test_gopher_repetition_sees_repeated_paragraphs_and_lines(
    c4_texts: list[str], wiki_passages: list[str]
) -> None:
    step = GopherRepetition()
    paragraph = c4_texts[3]

    assert all(step.check(passage) is None for passage in wiki_passages)
    assert step.check(paragraph) is None
    assert step.check("\n\n".join([paragraph] * 3)) == (
        "gopher_repetition: repeated paragraphs 0.667 > 0.3"
    )
    lines = paragraph.split("\n")
    doubled = "\n".join(lines + lines[:1] * 3 + lines[1:])
    assert step.check(doubled).startswith("gopher_repetition: ")


def test_c4_filter_drops_lorem_ipsum_brackets_and_short_pages(c4_texts: list[str]) -> None:
    step = C4Filter()
    page = c4_texts[1]
    lorem = "Lorem ipsum dolor sit amet, consectetur adipiscing elit."

    assert step.check(page) is None
    assert step.check(page + "\n" + lorem) == "c4_filter: contains lorem ipsum"
    assert step.check(page + "\nUse the {name} field in the form.") == (
        "c4_filter: contains a curly bracket"
    )
    # A line the line rules drop first does not count: no terminal punctuation, or javascript.
    assert step.check(page + "\nfunction () { return 1 }") is None
    assert step.check(page + "\nThis page needs JavaScript { enabled }.") is None
    assert step.check(" ".join(sentences(page)[:4])) == "c4_filter: sentences 4 < 5"


def test_c4_filter_counts_on_c4(run_steps: RunSteps, c4_texts: list[str]) -> None:
    step = C4Filter()

    table = run_steps([step], [{"text": text} for text in c4_texts])

    assert step.stats.dropped_by_reason == {"c4_filter: sentences < 5": 45}
    assert table.num_rows == 255


def test_c4_clean_keeps_c4_lines_and_drops_boilerplate(
    run_steps: RunSteps, c4_texts: list[str]
) -> None:
    page = c4_texts[2]
    noisy = "\n".join(
        [
            "Home | About | Contact",
            page,
            "We use cookies to improve your experience on our site.",
            "Please enable JavaScript to view the comments powered by Disqus.",
            "The disaster killed 21 people.[1][citation needed]",
            "Read more...",
        ]
    )
    step = C4Clean()

    table = run_steps([step], [{"text": noisy, "id": 7}, *({"text": t, "id": 0} for t in c4_texts)])

    cleaned = table.column("text").to_pylist()
    assert cleaned[0] == page + "\nThe disaster killed 21 people."
    assert cleaned[1:] == [text.strip() for text in c4_texts]  # C4 already passes its own rules
    assert table.column("id").to_pylist()[0] == 7
    assert step.details["lines_in"] - step.details["lines_kept"] == 4


def test_fineweb_quality_keeps_c4_and_drops_list_like_text(
    run_steps: RunSteps, c4_texts: list[str]
) -> None:
    step = FineWebQuality()

    table = run_steps([step], [{"text": text} for text in c4_texts])

    assert table.num_rows == len(c4_texts)
    page = c4_texts[4]
    unpunctuated = "\n".join(line.rstrip(".!?'\"") for line in sentences(page))
    assert step.check(unpunctuated).startswith(
        "fineweb_quality: share of lines ending in punctuation 0 <= 0.12"
    )
    assert step.check("\n".join(f"{word}." for word in page.split())).startswith(
        "fineweb_quality: share of lines of at most 30 characters 1 >= 0.67"
    )
    lines = page.split("\n") + page.split("\n")[:1]
    assert step.check("\n".join(lines)).startswith(
        "fineweb_quality: share of characters in repeated lines "
    )


def test_chinese_quality_keeps_the_analects_and_names_what_fails(
    run_steps: RunSteps, lunyu_paragraphs: list[str], c4_texts: list[str], tang_poems: list[str]
) -> None:
    step = ChineseQuality()
    chapters = ["\n".join(lunyu_paragraphs[i : i + 20]) for i in range(0, 500, 20)]
    spam = "\n".join([lunyu_paragraphs[0]] * 6)
    analects = "".join(lunyu_paragraphs)
    menu = "\n".join(analects[i : i + 4] for i in range(0, 80, 4))
    rows = [{"text": text} for text in [*chapters, c4_texts[0], tang_poems[1], spam, menu]]

    table = run_steps([step], rows)

    assert table.num_rows == len(chapters)
    reasons = [record["reason"] for record in step.exclusions]
    assert reasons[0] == "chinese_quality: share of CJK characters 0 < 0.4"
    assert re.fullmatch(r"chinese_quality: characters \d\d < 50", reasons[1])
    assert re.fullmatch(
        r"chinese_quality: share of characters in repeated 13-grams 1 > 0.2", reasons[2]
    )
    assert reasons[3] == "chinese_quality: mean line length 4 < 10"


def test_repeated_ngram_share_covers_every_character_of_a_repeat() -> None:
    assert repeated_ngram_share("abcdefghijklmnopq", 13) == 0.0
    assert repeated_ngram_share("abcdefghijklm" * 2, 13) == 1.0
    assert repeated_ngram_share("abcdefghijklm" + "zzzzzzzzzzzzz" + "abcdefghijklm", 13) == 26 / 39


def test_quality_steps_come_from_recipes_with_their_thresholds() -> None:
    pipeline = Pipeline.from_recipe(
        {
            "steps": [
                {"step": "gopher_quality", "min_doc_words": 20, "stop_words": ["the"]},
                {"step": "gopher_repetition", "dup_ngrams": {"5": 0.2}},
                {"step": "chinese_quality", "min_cjk_share": 0.6},
            ]
        }
    )

    quality, repetition, chinese = pipeline.steps
    assert quality.params["min_doc_words"] == 20
    assert quality.params["stop_words"] == ["the"]
    assert repetition.params["dup_ngrams"] == {"5": 0.2}
    assert chinese.params["min_cjk_share"] == 0.6
    with pytest.raises(CurationError, match="n-gram limits"):
        GopherRepetition(top_ngrams={"two": "high"})  # type: ignore[dict-item]
