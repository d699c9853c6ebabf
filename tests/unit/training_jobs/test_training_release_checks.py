"""The release gate on tiny models: an overfitted model is quarantined, a normal one released."""

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pa_json
import pytest
import torch

from training_jobs.errors import ReleaseCheckError
from training_jobs.formatting import rows_to_chats
from training_jobs.release_checks import (
    Canary,
    ReleasePolicy,
    ReleaseReport,
    auc,
    canary_candidates,
    canary_exposure,
    evaluate_release,
    inject_canaries,
    inject_canaries_into_table,
    make_canaries,
    membership_auc,
)
from training_jobs.runner import TrainingParams, load_base_model, load_trained_model, train

FIXTURES = Path(__file__).parents[2] / "fixtures" / "data"
# Small samples keep the test quick; the thresholds are set for them (see each check's note).
POLICY = ReleasePolicy(
    canary_candidates=255,
    prefix_tokens=16,
    suffix_tokens=16,
    pii_new_tokens=32,
    train_samples=64,
    held_out_samples=64,
)


@dataclass
class Gated:
    train_rows: pa.Table
    held_out_rows: pa.Table
    canaries: list[Canary]
    report: ReleaseReport


def _contact_rows(first: int, last: int) -> pa.Table:
    """Fictitious people (FakeNameGenerator) and how to reach them: personal data in replies."""
    with (FIXTURES / "fakenamegenerator_100.csv").open(encoding="utf-8-sig") as handle:
        people = list(csv.DictReader(handle))[first:last]
    return pa.table(
        {
            "prompt": [f"How do I reach {p['GivenName']} {p['Surname']}?" for p in people],
            "completion": [
                f"Write to {p['EmailAddress']} or call +{p['TelephoneCountryCode']} "
                f"{p['TelephoneNumber']}."
                for p in people
            ],
        }
    )


def _train_and_gate(
    train_rows: pa.Table,
    held_out_rows: pa.Table,
    repetitions: list[int],
    params: TrainingParams,
    output_dir: Path,
) -> Gated:
    canaries = make_canaries(len(repetitions), seed=11)
    stream = inject_canaries_into_table(train_rows, canaries, repetitions, seed=3)
    train(table=stream, params=params, output_dir=output_dir)
    model, tokenizer = load_trained_model(output_dir, params)
    torch.manual_seed(params.seed)  # the tiny base is rebuilt from the job's seed
    base, _ = load_base_model(params.base_model)
    report = evaluate_release(
        model=model,
        tokenizer=tokenizer,
        base_model=base,
        train_rows=train_rows,
        held_out_rows=held_out_rows,
        canaries=canaries,
        repetitions=repetitions,
        policy=POLICY,
    )
    return Gated(train_rows, held_out_rows, canaries, report)


@pytest.fixture(scope="module")
def overfitted(tmp_path_factory: pytest.TempPathFactory) -> Gated:
    """Hundreds of epochs on six rows, the canaries repeated 4 to 32 times."""
    params = TrainingParams(max_steps=300, batch_size=8, max_seq_len=128, learning_rate=3e-3)
    return _train_and_gate(
        _contact_rows(0, 6),
        _contact_rows(40, 100),
        [4, 8, 16, 32],
        params,
        tmp_path_factory.mktemp("overfitted"),
    )


@pytest.fixture(scope="module")
def normal(tmp_path_factory: pytest.TempPathFactory) -> Gated:
    """A few steps over many rows (a fraction of one epoch), each canary seen once."""
    gsm8k = pa_json.read_json(FIXTURES / "gsm8k_train.jsonl").slice(0, 1088)
    params = TrainingParams(max_steps=20, batch_size=8, max_seq_len=512)
    return _train_and_gate(
        gsm8k.slice(0, 1024),
        gsm8k.slice(1024, 64),
        [1, 1, 1, 1],
        params,
        tmp_path_factory.mktemp("normal"),
    )


def _checks(report: ReleaseReport) -> dict[str, bool]:
    return {check.name: check.passed for check in report.checks}


def test_an_overfitted_model_is_quarantined(overfitted: Gated) -> None:
    report = overfitted.report
    checks = {check.name: check for check in report.checks}

    assert report.decision == "quarantine"
    exposure = checks["canary_exposure"]
    assert exposure.value == pytest.approx(10 * math.log2(10), abs=1e-3)  # recited: all 33 bits
    assert not exposure.passed
    assert exposure.details["rank_exposures"] == [8.0] * 4  # each canary first of 256
    assert checks["membership_inference"].value > 0.9
    assert checks["verbatim_extraction"].details["near_rate"] > 0.5
    assert checks["verbatim_extraction"].details["base_near_rate"] == 0.0
    assert checks["pii_in_generations"].details["kinds"]  # it writes the email addresses
    assert not any(check.passed for check in report.checks)


def test_a_normally_trained_model_is_released(normal: Gated) -> None:
    report = normal.report

    assert report.decision == "release", report.model_dump_json(indent=2)
    assert _checks(report) == dict.fromkeys(
        ("canary_exposure", "verbatim_extraction", "membership_inference", "pii_in_generations"),
        True,
    )


def test_the_checks_separate_the_two_models(overfitted: Gated, normal: Gated) -> None:
    over = {check.name: check.value for check in overfitted.report.checks}
    fine = {check.name: check.value for check in normal.report.checks}

    assert over["canary_exposure"] > fine["canary_exposure"]
    assert over["membership_inference"] > fine["membership_inference"]
    assert over["verbatim_extraction"] >= fine["verbatim_extraction"]


def test_the_report_holds_numbers_and_hashes_never_rows(overfitted: Gated, normal: Gated) -> None:
    for gated in (overfitted, normal):
        serialized = gated.report.model_dump_json()
        json.loads(serialized)
        for chat in rows_to_chats(gated.train_rows.slice(0, 5)):
            for message in chat:
                assert message["content"][:24] not in serialized
        for canary in gated.canaries:
            assert canary.secret not in serialized
            assert canary.sha256 in serialized
        assert gated.report.train_rows == min(64, gated.train_rows.num_rows)
        assert ReleaseReport.model_validate_json(serialized) == gated.report


def test_canaries_are_seeded_distinct_secrets() -> None:
    canaries = make_canaries(20, seed=5)

    assert canaries == make_canaries(20, seed=5)
    assert canaries != make_canaries(20, seed=6)
    assert len({canary.text for canary in canaries}) == 20
    assert all(len(canary.secret) == 10 and canary.secret.isdigit() for canary in canaries)
    candidates = canary_candidates(canaries[0], 50, seed=1)
    assert len({candidate.secret for candidate in candidates}) == 50
    assert canaries[0].secret not in {candidate.secret for candidate in candidates}
    assert {candidate.prefix for candidate in candidates} == {canaries[0].prefix}


def test_canaries_are_injected_at_their_frequencies() -> None:
    canaries = make_canaries(3, seed=0)
    texts = [f"row {index}" for index in range(50)]

    stream = inject_canaries(texts, canaries, [1, 4, 16], seed=2)

    assert len(stream) == 50 + 21
    assert [stream.count(canary.text) for canary in canaries] == [1, 4, 16]
    assert [text for text in stream if text.startswith("row ")] == texts  # order kept
    table = inject_canaries_into_table(pa.table({"text": texts}), canaries, 2, seed=2)
    contents = [chat[0]["content"] for chat in rows_to_chats(table)]
    assert [contents.count(canary.text) for canary in canaries] == [2, 2, 2]
    with pytest.raises(ReleaseCheckError, match="one per canary"):
        inject_canaries(texts, canaries, [1, 2])


def test_a_canary_seen_once_is_nudged_not_recited(normal: Gated) -> None:
    exposure = next(c for c in normal.report.checks if c.name == "canary_exposure")

    # A step on it can move an undertrained model's ranking among 256 candidates, but the
    # estimate over the whole secret space stays far from the 33 bits of a recited canary.
    assert max(exposure.details["estimated_exposures"]) < 20


def test_exposure_is_log2_of_the_candidates_over_the_rank(overfitted: Gated) -> None:
    params = TrainingParams()
    torch.manual_seed(0)
    model, tokenizer = load_base_model(params.base_model)
    canary = overfitted.canaries[0]
    candidates = canary_candidates(canary, 31, seed=0)

    exposure = canary_exposure(model.eval(), tokenizer, canary, candidates)

    rank = 32 / 2**exposure
    assert 0 <= exposure <= 5
    assert math.isclose(rank, round(rank), abs_tol=1e-9)  # a whole rank among 32


def test_auc_is_the_mann_whitney_statistic() -> None:
    assert auc([3, 4], [1, 2]) == 1.0
    assert auc([1, 2], [3, 4]) == 0.0
    assert auc([1, 1], [1, 1]) == 0.5
    assert auc([2, 5, 1], [3, 0]) == pytest.approx(4 / 6)
    # members with a lower loss than the base model's score higher
    assert membership_auc([1.0, 1.0], [4.0, 4.0], [4.0, 3.0], [4.0, 4.0]) == 1.0
    with pytest.raises(ReleaseCheckError):
        auc([], [1.0])


def test_policy_thresholds_are_bounded() -> None:
    with pytest.raises(ValueError, match="max_membership_auc"):
        ReleasePolicy(max_membership_auc=0.4)
    with pytest.raises(ValueError, match="Extra inputs"):
        ReleasePolicy.model_validate({"max_exposure": 3})
