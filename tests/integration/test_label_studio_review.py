"""Human review of a curated version in a real Label Studio, through the API and the CLI.

A running exchange (``aidx up``, embedded and real backends) curates two GSM8K files into a
version. The operator starts a review round through the API; the test annotates the tasks in
Label Studio's own API as two annotators (users it creates there), collects and decides the
round, and checks the figures against values it computes from the verdicts it submitted. A
second round, run with ``aidx review`` as a person would, has three annotators and is
rejected by its thresholds. The version's quality report, its card and the listing checklist
follow each decision.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from infra.demo import CARD_FACTS
from marketplace.client import ApiError
from tests.conftest import Exchange
from tests.fixtures.labelstudio import LabelStudioServer

with warnings.catch_warnings():  # the SDK's bundled legacy client still uses pydantic 1 validators
    warnings.simplefilter("ignore", DeprecationWarning)
    from label_studio_sdk.client import LabelStudio

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "data"
REPO = Path(__file__).resolve().parents[2]
# Round 1: two annotators over 24 rows. A fails rows 0, 5, 10, 15, 20; B agrees but for 3, 10
# and 17, where it says the opposite.
A_FAILS = {0, 5, 10, 15, 20}
B_FLIPS = {3, 10, 17}


@pytest.fixture(scope="module")
def version(exchange: Exchange, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A curated version of two GSM8K files, its card complete, and a listing already refused."""
    ids: dict[str, Any] = {}
    with exchange.client() as anonymous:
        operator = anonymous.bootstrap(exchange.bootstrap_token, "Operator")
    ids["operator_key"] = operator["api_key"]["api_key"]
    with exchange.client(ids["operator_key"]) as client:
        contributor = client.create_organization("Review Contributor", ["contributor"])
    ids["contributor_key"] = contributor["api_key"]["api_key"]

    scratch = tmp_path_factory.mktemp("review-inputs")
    train, test = scratch / "train.jsonl", scratch / "test.jsonl"
    train.write_bytes(_first_lines(DATA / "gsm8k_train.jsonl", 150))
    test.write_bytes(_first_lines(DATA / "gsm8k_test.jsonl", 50))
    with exchange.client(ids["contributor_key"]) as seller:
        dataset = seller.create_dataset(name="gsm8k-review", license="mit", language=["en"])
        seller.upload(dataset["id"], train)
        seller.upload(dataset["id"], test)
        run = seller.start_curation(dataset["id"])
        run = seller.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
        assert run["status"] == "succeeded", run["error"]
        ids["version"] = run["version_id"]
        seller.update_card(ids["version"], CARD_FACTS)
        rows = {}
        for file in seller.version(ids["version"])["files"]:
            local = scratch / file["path"]
            seller.download(ids["version"], file["path"], local)
            table = pq.read_table(local)
            for index, row in enumerate(table.to_pylist()):
                rows[f"{file['path']}#{index}"] = row
        ids["rows"] = rows
    ids["unreviewed_listing"] = _listing_checklist(exchange, ids, "reject")
    return ids


def _first_lines(path: Path, count: int) -> bytes:
    return b"".join(path.read_bytes().splitlines(keepends=True)[:count])


def _listing_checklist(exchange: Exchange, ids: dict[str, Any], decision: str) -> dict[str, Any]:
    """Submit a listing of the version, have the operator decide it; the checklist's review item."""
    with (
        exchange.client(ids["contributor_key"]) as seller,
        exchange.client(ids["operator_key"]) as operator,
    ):
        listing = seller.submit_listing(
            version_id=ids["version"], title="GSM8K reviewed", summary="math word problems",
            price_amount=10_000, currency="CNY",
        )  # fmt: skip
        reviewed = operator.review_listing(listing["id"], decision)
    (item,) = [i for i in reviewed["checklist"] if i["check"] == "human_review_accepted"]
    return dict(item)


def _studio(server: LabelStudioServer, request: pytest.FixtureRequest) -> LabelStudio:
    """Label Studio's own client, as the annotators' tool would use the server."""
    http = httpx.Client(timeout=60.0)
    request.addfinalizer(http.close)
    return LabelStudio(base_url=server.url, api_key=server.token, httpx_client=http)


def _annotators(label_studio: LabelStudio, count: int) -> list[int]:
    users = []
    for _ in range(count):
        name = f"annotator-{uuid.uuid4().hex[:10]}"
        users.append(int(label_studio.users.create(username=name, email=f"{name}@aidx.test").id))
    return users


def _annotate(
    label_studio: LabelStudio, task_id: int, user: int, verdict: str, issues: Sequence[str] = ()
) -> None:
    result = [
        {"from_name": "verdict", "to_name": "text", "type": "choices",
         "value": {"choices": [verdict]}},
    ]  # fmt: skip
    if issues:
        result.append(
            {"from_name": "issues", "to_name": "text", "type": "choices",
             "value": {"choices": list(issues)}}
        )  # fmt: skip
    label_studio.annotations.create(id=task_id, result=result, completed_by=user)


def _project_tasks(label_studio: LabelStudio, project_id: int) -> list[Any]:
    return sorted(label_studio.tasks.list(project=project_id, fields="all"), key=lambda t: t.id)


def _cohen(pairs: list[tuple[str, str]]) -> float:
    """Cohen's kappa from the 2x2 table of the submitted verdicts."""
    n = len(pairs)
    agree = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    chance = sum(first[label] * second[label] for label in ("pass", "fail")) / n**2
    return (agree - chance) / (1 - chance)


def _fleiss(verdicts: list[list[str]]) -> float:
    """Fleiss' kappa of items each rated by the same number of raters."""
    raters = len(verdicts[0])
    per_item = [
        (sum(v.count(label) ** 2 for label in ("pass", "fail")) - raters) / (raters * (raters - 1))
        for v in verdicts
    ]
    shares = [sum(v.count(label) for v in verdicts) / (raters * len(verdicts))
              for label in ("pass", "fail")]  # fmt: skip
    chance = sum(share**2 for share in shares)
    return (sum(per_item) / len(per_item) - chance) / (1 - chance)


def _error(exchange: Exchange, key: str, method: str, path: str, body: Any = None) -> ApiError:
    with exchange.client(key) as client, pytest.raises(ApiError) as caught:
        client.request(method, path, json=body)
    return caught.value


def test_the_api_refuses_non_operators_and_bad_input(
    exchange: Exchange, version: dict[str, Any], label_studio: LabelStudioServer
) -> None:
    body = {
        "version_id": version["version"],
        "label_studio_url": label_studio.url,
        "label_studio_token": label_studio.token,
        "sample_size": 20,
    }
    refused = _error(exchange, version["contributor_key"], "POST", "/v1/review-rounds", body)
    assert refused.status_code == 403 and "operator" in refused.message

    operator = version["operator_key"]
    cases = [
        ({"label_studio_url": "ftp://127.0.0.1/"}, 422, "http:// or https://"),
        ({"sample_size": 0}, 422, "sample_size"),
        ({"strata": ["colour"]}, 422, "strata"),
        ({"strata": ["language"]}, 422, "needs the column _language"),
        ({"annotators_per_task": 1}, 422, "at least 2 annotators"),
        ({"sample_size": 10, "min_per_stratum": 2}, 422, "cannot hold 2 rows"),
        ({"min_annotated_tasks": 21}, 422, "could never be met"),
        ({"label_studio_token": "not-a-token"}, 422, f"Label Studio at {label_studio.url}"),
        ({"version_id": "dv_missing"}, 404, "dv_missing"),
        ({"surprise": 1}, 422, "surprise"),
    ]
    for change, status, words in cases:
        error = _error(exchange, operator, "POST", "/v1/review-rounds", body | change)
        assert (error.status_code, words in error.message) == (status, True), (change, error)
    assert _error(exchange, operator, "GET", "/v1/review-rounds/rvw_missing").status_code == 404
    with exchange.client(operator) as client:
        assert client.request("GET", f"/v1/review-rounds?version_id={version['version']}") == {
            "data": [],
            "count": 0,
        }  # nothing was recorded, and no project was left in Label Studio
    assert version["unreviewed_listing"] == {
        "check": "human_review_accepted",
        "passed": None,
        "detail": "no human review round for this version",
    }


def test_two_annotators_review_a_round_that_is_accepted(
    exchange: Exchange,
    version: dict[str, Any],
    label_studio: LabelStudioServer,
    request: pytest.FixtureRequest,
) -> None:
    operator_key = version["operator_key"]
    start = {
        "version_id": version["version"],
        "label_studio_url": label_studio.url,
        "label_studio_token": label_studio.token,
        "sample_size": 24,
        "annotators_per_task": 2,
        "strata": ["source", "length"],
        "min_per_stratum": 2,
        "seed": 11,
        "min_pass_rate": 0.7,
        "min_agreement": 0.6,
        "min_annotated_tasks": 24,
    }
    with exchange.client(operator_key) as operator:
        started = operator.request("POST", "/v1/review-rounds", json=start)
    assert started["status"] == "open" and started["sample_size"] == 24
    sampled = started["strata"]["sampled"]
    assert sum(sampled.values()) == 24 and len(sampled) == 6  # 2 files x 3 length buckets
    from_train = sum(n for name, n in sampled.items() if name.startswith("source=train"))
    assert from_train == 18  # 150 of the 200 rows: three quarters
    again = _error(exchange, operator_key, "POST", "/v1/review-rounds", start)
    assert again.status_code == 409 and started["id"] in again.message
    early = _error(exchange, operator_key, "POST", f"/v1/review-rounds/{started['id']}/decide", {})
    assert early.status_code == 409 and "collect" in early.message

    studio = _studio(label_studio, request)
    tasks = _project_tasks(studio, started["project_id"])
    assert len(tasks) == 24
    for task in tasks:  # every task maps back to its row of the version
        row = version["rows"][task.data["row_id"]]
        assert row["_content_hash"] == task.data["content_hash"]
        assert row["question"] in task.data["text"]

    first, second = _annotators(studio, 2)
    pairs = []
    for index, task in enumerate(tasks):
        a = "fail" if index in A_FAILS else "pass"
        b = ({"pass": "fail", "fail": "pass"}[a]) if index in B_FLIPS else a
        _annotate(studio, task.id, first, a, ["low quality"] if a == "fail" else [])
        _annotate(studio, task.id, second, b, ["PII left"] if index == 3 else [])
        pairs.append((a, b))
    passed = sum(pair == ("pass", "pass") for pair in pairs)  # a tie is a fail

    with exchange.client(operator_key) as operator:
        collected = operator.request(
            "POST",
            f"/v1/review-rounds/{started['id']}/collect",
            json={"label_studio_token": label_studio.token},
        )
        assert collected["status"] == "open" and collected["annotated_tasks"] == 24
        assert collected["pass_rate"] == pytest.approx(passed / 24, abs=1e-6)
        assert collected["agreement_metric"] == "cohen_kappa"
        assert collected["agreement"] == pytest.approx(_cohen(pairs), abs=1e-6)
        agree = sum(a == b for a, b in pairs) / 24
        assert collected["results"]["percent_agreement"] == pytest.approx(agree, abs=1e-6)
        assert collected["issue_counts"]["low quality"] == len(A_FAILS)
        assert collected["issue_counts"]["PII left"] == 1

        decided = operator.request(
            "POST", f"/v1/review-rounds/{started['id']}/decide", json={"notes": "sample ok"}
        )
        assert (decided["status"], decided["decision_reasons"]) == ("accepted", [])
        report = operator.version(version["version"])["report"]
        card = json.loads(operator.card(version["version"], format="json"))
        audit = operator.request("GET", "/v1/audit/verify")
    accuracy = round(passed / 24, 4)
    assert report["quality"]["quality_scores"]["accuracy"] == accuracy
    assert report["quality_scores"]["accuracy"] == accuracy
    assert report["quality"]["review"]["round_id"] == started["id"]
    assert "reviewed rows" in report["quality"]["score_notes"]["accuracy"]
    assert card["review"]["pass_rate"] == pytest.approx(passed / 24, abs=1e-6)
    assert card["review"]["agreement_metric"] == "cohen_kappa"
    assert card["quality_scores"]["accuracy"] == accuracy
    assert audit["intact"] is True
    assert _listing_checklist(exchange, version, "approve")["passed"] is True
    again = _error(
        exchange, operator_key, "POST", f"/v1/review-rounds/{started['id']}/collect",
        {"label_studio_token": label_studio.token},
    )  # fmt: skip
    assert again.status_code == 409 and "accepted" in again.message


def _aidx(exchange: Exchange, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIDX_", "LABEL_STUDIO_"))}
    env |= {"AIDX_HOME": str(exchange.home), **exchange.env}
    return subprocess.run(
        [str(Path(sys.executable).parent / "aidx"), "review", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_three_annotators_review_a_round_the_cli_rejects(
    exchange: Exchange,
    version: dict[str, Any],
    label_studio: LabelStudioServer,
    request: pytest.FixtureRequest,
) -> None:
    missing = _aidx(exchange, "start", "dv_missing", "--label-studio-url", label_studio.url,
                    "--token", label_studio.token)  # fmt: skip
    assert missing.returncode == 2 and "dv_missing" in missing.stderr

    started = _aidx(
        exchange, "start", version["version"], "--label-studio-url", label_studio.url,
        "--token", label_studio.token, "--sample", "12", "--annotators", "3",
        "--strata", "source", "--seed", "5", "--min-pass-rate", "0.95",
        "--min-agreement", "0.2", "--min-annotated", "12", "--format", "json",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "importing 12 tasks" in started.stderr  # progress, stage by stage
    review = json.loads(started.stdout)
    assert review["sample_size"] == 12 and review["annotators_per_task"] == 3

    studio = _studio(label_studio, request)
    tasks = _project_tasks(studio, review["project_id"])
    users = _annotators(studio, 3)
    rated = []
    for index, task in enumerate(tasks[:11]):  # the last task stays unreviewed
        verdicts = [
            "fail" if index % 3 == 0 else "pass",
            "fail" if index % 4 == 0 else "pass",
            "fail" if index in (0, 1) else "pass",
        ]
        for user, verdict in zip(users, verdicts, strict=True):
            _annotate(studio, task.id, user, verdict)
        rated.append(verdicts)
    skipped = tasks[11].id  # a skip is no verdict
    studio.annotations.create(id=skipped, result=[], completed_by=users[2], was_cancelled=True)
    passed = sum(v.count("pass") >= 2 for v in rated)

    collected = _aidx(exchange, "collect", review["id"], "--token", label_studio.token,
                      "--format", "json")  # fmt: skip
    assert collected.returncode == 0, collected.stderr
    figures = json.loads(collected.stdout)
    assert figures["annotated_tasks"] == 11
    assert figures["pass_rate"] == pytest.approx(passed / 11, abs=1e-6)
    assert figures["agreement_metric"] == "fleiss_kappa"
    assert figures["agreement"] == pytest.approx(_fleiss(rated), abs=1e-6)

    decided = _aidx(exchange, "decide", review["id"], "--notes", "too many failures")
    assert decided.returncode == 1, decided.stderr  # rejected
    assert "rejected" in decided.stdout
    shown = json.loads(_aidx(exchange, "show", review["id"], "--format", "json").stdout)
    assert shown["status"] == "rejected"
    assert shown["decision_reasons"] == [
        "11 tasks are annotated; at least 12 are required",
        f"pass rate {passed / 11:.4f} is below the minimum 0.95",
        f"fleiss_kappa {_fleiss(rated):.4f} is below the minimum 0.2",
    ]
    with exchange.client(version["operator_key"]) as operator:
        report = operator.version(version["version"])["report"]
    assert report["quality_scores"]["accuracy"] == round(passed / 11, 4)
    assert report["quality"]["review"]["round_id"] == review["id"]
    assert report["quality"]["review"]["decision"] == "rejected"
    item = _listing_checklist(exchange, version, "reject")
    assert item["passed"] is False and "pass rate" in item["detail"]
