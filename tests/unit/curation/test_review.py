"""Human review's pure parts: stratified sampling, pass rate, agreement, thresholds.

The agreement statistics are checked against textbook worked examples, the sampling against a
real curated version (two GSM8K files from two contributors).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.errors import CurationError
from curation.report import apply_review
from curation.review import (
    ISSUE_TAGS,
    Judgement,
    RowRef,
    Thresholds,
    allocate,
    cohen_kappa,
    draw_stratified,
    fleiss_kappa,
    judgements_of,
    labeling_config,
    percent_agreement,
    review_statistics,
    sample_tasks,
    stratify_shards,
    wilson_interval,
)
from curation.runner import CurationResult, InputFile, run_local

FIXTURES = Path(__file__).parents[2] / "fixtures" / "data"

# Fleiss (1971) as worked in Wikipedia's "Fleiss' kappa": 10 subjects, 14 raters, 5 categories.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


# Agreement statistics -----------------------------------------------------------------------


def test_cohen_kappa_matches_the_textbook_two_rater_example() -> None:
    # 50 proposals: both yes 20, A yes B no 5, A no B yes 10, both no 15 -> p_o 0.7, p_e 0.5.
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10
    pairs += [("no", "no")] * 15

    assert cohen_kappa(pairs) == pytest.approx(0.4)


def test_cohen_kappa_is_one_for_perfect_and_negative_for_systematic_disagreement() -> None:
    assert cohen_kappa([("pass", "pass"), ("fail", "fail")] * 5) == pytest.approx(1.0)
    assert cohen_kappa([("pass", "fail"), ("fail", "pass")] * 5) == pytest.approx(-1.0)


def test_kappa_is_undefined_when_every_verdict_is_the_same() -> None:
    assert cohen_kappa([("pass", "pass")] * 8) is None
    assert fleiss_kappa([{"pass": 3}] * 8) is None
    assert percent_agreement([{"pass": 3}] * 8) == 1.0
    assert cohen_kappa([]) is None and fleiss_kappa([]) is None


def test_fleiss_kappa_matches_the_textbook_example() -> None:
    items = [{str(j): n for j, n in enumerate(row) if n} for row in FLEISS_TABLE]

    assert fleiss_kappa(items) == pytest.approx(0.20993, abs=1e-5)
    assert percent_agreement(items) == pytest.approx(0.37802, abs=1e-5)  # P-bar


def test_fleiss_kappa_of_two_raters_is_scotts_pi() -> None:
    # With two raters per item Fleiss' kappa reduces to Scott's pi: pooled label shares.
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10
    pairs += [("no", "no")] * 15
    items = [dict(Counter(pair)) for pair in pairs]
    yes = (20 * 2 + 5 + 10) / 100
    expected = yes**2 + (1 - yes) ** 2
    scott = (0.7 - expected) / (1 - expected)

    assert fleiss_kappa(items) == pytest.approx(scott)


def test_wilson_interval_matches_newcombes_worked_examples() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857, method 3 (score interval, no correction).
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)


# Review statistics and thresholds ------------------------------------------------------------


def _verdicts(table: dict[int, dict[str, str]]) -> list[Judgement]:
    return [
        Judgement(task, annotator, verdict)
        for task, verdicts in table.items()
        for annotator, verdict in verdicts.items()
    ]


def test_two_annotators_give_a_majority_pass_rate_and_cohens_kappa() -> None:
    table = {
        1: {"ann": "pass", "bob": "pass"},
        2: {"ann": "pass", "bob": "pass"},
        3: {"ann": "pass", "bob": "fail"},  # a tie is a fail
        4: {"ann": "fail", "bob": "fail"},
        5: {"ann": "pass"},  # annotated once: counts for the pass rate, not for agreement
    }
    stats = review_statistics(_verdicts(table))

    assert (stats.annotated_tasks, stats.passed_tasks) == (5, 3)
    assert stats.pass_rate == pytest.approx(3 / 5)
    assert stats.pass_rate_interval == pytest.approx(wilson_interval(3, 5))
    assert stats.multiply_annotated_tasks == 4
    assert stats.agreement_metric == "cohen_kappa"
    pairs = [("pass", "pass"), ("pass", "pass"), ("pass", "fail"), ("fail", "fail")]
    assert stats.agreement == pytest.approx(cohen_kappa(pairs))
    assert stats.percent_agreement == pytest.approx(3 / 4)


def test_three_annotators_give_fleiss_kappa_and_issue_counts_per_task() -> None:
    judgements = [
        Judgement(1, "a", "pass"),
        Judgement(1, "b", "pass"),
        Judgement(1, "c", "fail", ("PII left",)),
        Judgement(2, "a", "fail", ("PII left", "harmful")),
        Judgement(2, "b", "fail", ("PII left",)),
        Judgement(2, "c", "fail"),
        Judgement(3, "a", "pass"),
        Judgement(3, "b", "pass"),
        Judgement(3, "c", "pass"),
    ]
    stats = review_statistics(judgements)

    assert stats.passed_tasks == 2 and stats.annotators == 3
    assert stats.agreement_metric == "fleiss_kappa"
    expected = fleiss_kappa([{"pass": 2, "fail": 1}, {"fail": 3}, {"pass": 3}])
    assert stats.agreement == pytest.approx(expected)
    assert stats.issue_counts == {"PII left": 2, "low quality": 0, "wrong language": 0,
                                  "harmful": 1}  # fmt: skip


def test_an_annotators_later_verdict_replaces_the_earlier_one() -> None:
    stats = review_statistics([Judgement(1, "a", "fail"), Judgement(1, "a", "pass")])

    assert (stats.annotations, stats.passed_tasks) == (1, 1)


def test_thresholds_accept_and_name_every_unmet_requirement() -> None:
    table = {i: {"a": "pass", "b": "pass"} for i in range(9)} | {9: {"a": "fail", "b": "fail"}}
    stats = review_statistics(_verdicts(table))  # pass rate 0.9, kappa 1

    assert Thresholds(min_pass_rate=0.9, min_agreement=0.8, min_annotated_tasks=10).judge(
        stats
    ) == (True, [])
    accepted, reasons = Thresholds(
        min_pass_rate=0.95, min_agreement=0.8, min_annotated_tasks=20
    ).judge(stats)
    assert not accepted
    assert reasons == [
        "10 tasks are annotated; at least 20 are required",
        "pass rate 0.9000 is below the minimum 0.95",
    ]


def test_agreement_threshold_needs_two_annotators_and_uses_raw_agreement_without_variation() -> (
    None
):
    single = review_statistics([Judgement(i, "a", "pass") for i in range(5)])
    accepted, reasons = Thresholds(min_pass_rate=0.5, min_agreement=0.5).judge(single)
    assert not accepted and "agreement is not measured" in reasons[0]
    assert Thresholds(min_pass_rate=0.5, min_agreement=None).judge(single) == (True, [])

    unanimous = review_statistics(_verdicts({i: {"a": "pass", "b": "pass"} for i in range(5)}))
    assert unanimous.agreement is None and unanimous.percent_agreement == 1.0
    assert Thresholds(min_pass_rate=0.9, min_agreement=0.6).judge(unanimous) == (True, [])


def test_thresholds_refuse_values_out_of_range() -> None:
    with pytest.raises(CurationError, match="min_pass_rate"):
        Thresholds(min_pass_rate=1.5)
    with pytest.raises(CurationError, match="min_annotated_tasks"):
        Thresholds(min_annotated_tasks=0)


def test_judgements_are_read_from_label_studio_annotations() -> None:
    annotations = [
        {
            "id": 7,
            "completed_by": 3,
            "was_cancelled": False,
            "result": [
                {"from_name": "verdict", "type": "choices", "value": {"choices": ["fail"]}},
                {
                    "from_name": "issues",
                    "type": "choices",
                    "value": {"choices": ["low quality", "harmful"]},
                },
            ],
        },
        {"id": 8, "completed_by": {"id": 4}, "was_cancelled": True, "result": []},
        {"id": 9, "completed_by": 5, "result": []},  # no verdict
    ]

    assert judgements_of(11, annotations) == [
        Judgement(11, "3", "fail", ("harmful", "low quality"))
    ]


def test_the_labeling_config_offers_the_verdict_and_every_issue_tag() -> None:
    config = labeling_config()

    assert '<Choices name="verdict"' in config and 'required="true"' in config
    assert all(f'<Choice value="{tag}"/>' in config for tag in ISSUE_TAGS)


# Sampling ------------------------------------------------------------------------------------


def test_allocation_is_proportional_with_a_minimum_per_stratum() -> None:
    sizes = {"big": 900, "mid": 90, "small": 10}

    counts = allocate(sizes, 100, minimum=5)
    assert sum(counts.values()) == 100
    assert counts["small"] >= 5 and counts["mid"] >= 9
    assert counts["big"] == 100 - counts["mid"] - counts["small"]
    assert allocate(sizes, 100, minimum=0) == {"big": 90, "mid": 9, "small": 1}
    assert allocate({"a": 3, "b": 2}, 10, minimum=2) == {"a": 3, "b": 2}  # the whole version
    assert allocate({"a": 3, "b": 100}, 10, minimum=5) == {"a": 3, "b": 7}


def test_allocation_refuses_more_minimums_than_the_sample_holds() -> None:
    with pytest.raises(CurationError, match="cannot hold 2 rows from each of 6 strata"):
        allocate({str(i): 50 for i in range(6)}, 10, minimum=2)


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CurationResult]:
    folder = tmp_path_factory.mktemp("review")
    train = folder / "train.jsonl"
    test = folder / "test.jsonl"
    lines = (FIXTURES / "gsm8k_train.jsonl").read_bytes().splitlines(keepends=True)
    train.write_bytes(b"".join(lines[:600]))
    lines = (FIXTURES / "gsm8k_test.jsonl").read_bytes().splitlines(keepends=True)
    test.write_bytes(b"".join(lines[:200]))
    inputs = [
        InputFile(train, "jsonl", "train.jsonl", "OpenAI"),
        InputFile(test, "jsonl", "test.jsonl", "Math Co-op"),
    ]
    out = folder / "version"
    return out, run_local(inputs, out, recipe="default", rows_per_shard=300)


def _shards(curated: tuple[Path, CurationResult]) -> dict[str, Path]:
    out, result = curated
    return {shard.path: out / shard.path for shard in result.shards}


def test_strata_count_every_row_by_source_and_length(
    curated: tuple[Path, CurationResult],
) -> None:
    _, result = curated
    rows = stratify_shards(_shards(curated), ["source", "length"], seed=0, keep=10)

    assert sum(rows.sizes.values()) == result.num_rows == 800
    assert len(rows.sizes) == 6  # 2 files x 3 length terciles
    by_source: Counter[str] = Counter()
    for name, size in rows.sizes.items():
        by_source[name.split("|")[0]] += size
    assert by_source == {"source=train.jsonl": 600, "source=test.jsonl": 200}
    assert rows.length_edges is not None and rows.length_edges[0] < rows.length_edges[1]
    assert all(len(refs) == 10 for refs in rows.candidates.values())  # only the lowest ranks


def test_the_sample_is_stratified_and_deterministic_under_its_seed(
    curated: tuple[Path, CurationResult],
) -> None:
    shards = _shards(curated)

    def draw(seed: int, keep: int) -> dict[str, list[RowRef]]:
        rows = stratify_shards(shards, ["source", "length"], seed=seed, keep=keep)
        return draw_stratified(rows.candidates, 40, seed=seed, minimum=3, sizes=rows.sizes)

    drawn = draw(7, keep=40)
    assert drawn == draw(7, keep=800)  # keeping every row draws the same sample
    assert drawn != draw(8, keep=40)
    everything = stratify_shards(shards, ["source", "length"], seed=7, keep=800)
    reversed_strata = dict(reversed(list(everything.candidates.items())))
    assert draw_stratified(reversed_strata, 40, seed=7, minimum=3) == drawn
    counts = {name: len(refs) for name, refs in drawn.items()}
    assert sum(counts.values()) == 40 and min(counts.values()) >= 3
    train = sum(n for name, n in counts.items() if name.startswith("source=train"))
    assert train == 30  # 600 of 800 rows: three quarters
    for name, refs in drawn.items():
        assert set(refs) <= set(everything.candidates[name])


def test_sampled_tasks_carry_the_rows_text_and_hash(
    curated: tuple[Path, CurationResult],
) -> None:
    shards = _shards(curated)
    rows = stratify_shards(shards, ["contributor"], seed=1, keep=10)
    drawn = draw_stratified(rows.candidates, 10, seed=1, minimum=2, sizes=rows.sizes)
    tasks = sample_tasks(shards, drawn)

    assert len(tasks) == 10
    # quotas 7.5 and 2.5: the tied remainder goes to the earlier name
    assert {name: len(refs) for name, refs in drawn.items()} == {
        "contributor=OpenAI": 7,
        "contributor=Math Co-op": 3,
    }
    for task in tasks:
        table = pq.read_table(shards[task["shard"]])
        row = table.slice(task["row"], 1).to_pylist()[0]
        assert row["_content_hash"] == task["content_hash"]
        assert f"[question]\n{row['question']}" in task["text"]
        assert task["row_id"] == RowRef(task["shard"], task["row"], "").row_id
        assert task["stratum"] == f"contributor={row['_contributor']}"


def test_a_missing_strata_column_is_named(curated: tuple[Path, CurationResult]) -> None:
    with pytest.raises(CurationError, match="needs the column _language"):
        stratify_shards(_shards(curated), ["language"], seed=0, keep=1)
    with pytest.raises(CurationError, match="must be some of"):
        stratify_shards(_shards(curated), ["colour"], seed=0, keep=1)


# The quality report ------------------------------------------------------------------------


def test_a_review_sets_the_stored_reports_accuracy_and_leaves_other_scores() -> None:
    stored = {
        "steps": [],
        "quality": {
            "quality_scores": {"completeness": 1.0, "accuracy": None, "timeliness": None},
            "score_notes": {"accuracy": "no human review yet"},
            "review": None,
        },
        "quality_scores": {"completeness": 1.0},
    }
    review = {
        "round_id": "rvw_1",
        "decision": "accepted",
        "sample_size": 40,
        "annotated_tasks": 38,
        "reviewers": 2,
        "pass_rate": 0.947368,
        "pass_rate_interval": [0.8271, 0.9854],
        "agreement": 0.81,
        "agreement_metric": "cohen_kappa",
    }
    updated = apply_review(stored, review)

    assert updated["quality_scores"] == {"completeness": 1.0, "accuracy": 0.9474}
    assert updated["quality"]["quality_scores"]["accuracy"] == 0.9474
    assert "pass rate 0.947" in updated["quality"]["score_notes"]["accuracy"]
    assert "rvw_1 accepted" in updated["quality"]["score_notes"]["accuracy"]
    assert updated["review"] == {
        "tool": "Label Studio",
        "sample_size": 40,
        "reviewers": 2,
        "pass_rate": 0.947368,
        "agreement": 0.81,
        "agreement_metric": "cohen_kappa",
    }
    assert stored["quality"]["quality_scores"]["accuracy"] is None  # the input is kept
    with pytest.raises(ValueError, match="no quality report"):
        apply_review({"steps": []}, review)
