"""Settlement, filed contracts and the audit chain on a running exchange, on both backends.

A purchase moves the price from the buyer to the contributor and the platform's fee account in
the same transaction as the license; retries charge once; concurrent purchases never overdraw;
the ledger always sums to zero; the audit trail's hash chain exposes an altered row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from infra.demo import CARD_FACTS
from tests.conftest import Exchange

PRICE = 10_000
FEE = PRICE * 500 // 10_000  # the default platform fee, 5 %
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def market(
    exchange: Exchange, gsm8k_train: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A listed version at PRICE, a contributor, an auditor, and a way to make funded buyers."""
    scratch = tmp_path_factory.mktemp("market")
    small = scratch / "rows.jsonl"
    small.write_bytes(b"".join(gsm8k_train.read_bytes().splitlines(keepends=True)[:50]))
    with exchange.client() as anonymous:
        operator = anonymous.bootstrap(exchange.bootstrap_token, "Operator")
    facts: dict[str, Any] = {"operator_key": operator["api_key"]["api_key"]}
    with exchange.client(facts["operator_key"]) as client:
        contributor = client.create_organization("Seller", ["contributor"])
        auditor = client.create_organization("Auditor", ["auditor"])
    facts["contributor"], facts["contributor_key"] = (
        contributor["id"],
        contributor["api_key"]["api_key"],
    )
    facts["auditor_key"] = auditor["api_key"]["api_key"]
    with exchange.client(facts["contributor_key"]) as seller:
        dataset = seller.create_dataset(name="priced", license="mit")
        seller.upload(dataset["id"], small)
        run = seller.start_curation(dataset["id"])
        run = seller.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
        seller.update_card(run["version_id"], CARD_FACTS)
        listing = seller.submit_listing(
            version_id=run["version_id"], title="priced rows", price_amount=PRICE, currency="CNY"
        )
    with exchange.client(facts["operator_key"]) as client:
        client.review_listing(listing["id"], "approve")
    facts["listing"] = listing["id"]
    return facts


def new_buyer(exchange: Exchange, market: dict[str, Any], funds: int) -> tuple[str, str]:
    with exchange.client(market["operator_key"]) as operator:
        buyer = operator.create_organization(f"Buyer {uuid.uuid4().hex[:8]}", ["buyer"])
        if funds:
            response = transfer(operator.http, "top-ups", buyer["id"], funds, uuid.uuid4().hex)
            assert response.status_code == 201, response.text
    return buyer["id"], buyer["api_key"]["api_key"]


def transfer(
    client: httpx.Client, kind: str, organization_id: str, amount: int, key: str
) -> httpx.Response:
    return client.post(
        f"/v1/ledger/{kind}",
        json={"organization_id": organization_id, "amount": amount, "currency": "CNY"},
        headers={"Idempotency-Key": key},
    )


def balance(exchange: Exchange, api_key: str, organization_id: str) -> int:
    with exchange.client(api_key) as client:
        statement = client.request("GET", f"/v1/organizations/{organization_id}/statement")
    return sum(int(account["balance"]) for account in statement["accounts"])


def trial_balance(exchange: Exchange, market: dict[str, Any]) -> dict[str, Any]:
    with exchange.client(market["auditor_key"]) as auditor:
        return dict(auditor.request("GET", "/v1/ledger/trial-balance"))


def buy(exchange: Exchange, api_key: str, listing: str, key: str) -> httpx.Response:
    with httpx.Client(
        base_url=exchange.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
    ) as client:
        return client.post(
            "/v1/licenses", json={"listing_id": listing}, headers={"Idempotency-Key": key}
        )


def test_a_purchase_pays_the_contributor_and_the_fee_once_however_often_it_is_retried(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    seller_before = balance(exchange, market["contributor_key"], market["contributor"])
    buyer_id, buyer_key = new_buyer(exchange, market, funds=3 * PRICE)
    key = uuid.uuid4().hex
    first = buy(exchange, buyer_key, market["listing"], key)
    assert first.status_code == 201
    for _ in range(3):
        again = buy(exchange, buyer_key, market["listing"], key)
        assert again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
    assert balance(exchange, buyer_key, buyer_id) == 2 * PRICE
    assert balance(exchange, market["contributor_key"], market["contributor"]) == (
        seller_before + PRICE - FEE
    )
    settlement = first.json()
    with exchange.client(buyer_key) as client:
        certificate = client.certificate(settlement["id"])
    assert certificate["payload"]["settlement"]["ledger_transaction_id"].startswith("ltx_")
    assert trial_balance(exchange, market)["balanced"] is True


def test_without_funds_the_purchase_is_refused_and_nothing_changes(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    buyer_id, buyer_key = new_buyer(exchange, market, funds=PRICE - 1)
    response = buy(exchange, buyer_key, market["listing"], uuid.uuid4().hex)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "insufficient_funds"
    assert str(PRICE) in error["message"] and str(PRICE - 1) in error["message"]
    with exchange.client(buyer_key) as client:
        assert client.request("GET", "/v1/entitlements") == []
    assert balance(exchange, buyer_key, buyer_id) == PRICE - 1


def test_concurrent_purchases_never_overdraw_and_the_ledger_stays_balanced(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    buyer_id, buyer_key = new_buyer(exchange, market, funds=3 * PRICE)
    keys = [uuid.uuid4().hex for _ in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(
            response.status_code
            for response in pool.map(
                lambda key: buy(exchange, buyer_key, market["listing"], key), keys
            )
        )
    assert statuses == [201] * 3 + [409] * 5
    assert balance(exchange, buyer_key, buyer_id) == 0
    trial = trial_balance(exchange, market)
    assert trial["balanced"] is True and trial["sum_of_all_entries"] == 0


def test_top_ups_and_payouts_are_idempotent_operator_only_and_bounded(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    buyer_id, buyer_key = new_buyer(exchange, market, funds=0)
    with httpx.Client(
        base_url=exchange.base_url,
        headers={"Authorization": f"Bearer {market['operator_key']}"},
        timeout=60,
    ) as operator:
        key = uuid.uuid4().hex
        assert transfer(operator, "top-ups", buyer_id, 700, key).status_code == 201
        assert transfer(operator, "top-ups", buyer_id, 700, key).status_code == 200
        conflict = transfer(operator, "top-ups", buyer_id, 701, key)
        assert conflict.status_code == 409
        assert balance(exchange, buyer_key, buyer_id) == 700
        too_much = transfer(operator, "payouts", buyer_id, 701, uuid.uuid4().hex)
        assert too_much.status_code == 409
        assert transfer(operator, "payouts", buyer_id, 200, uuid.uuid4().hex).status_code == 201
        negative = transfer(operator, "top-ups", buyer_id, -5, uuid.uuid4().hex)
        assert negative.status_code == 422
        assert "amount" in negative.json()["error"]["message"]
    assert balance(exchange, buyer_key, buyer_id) == 500
    with httpx.Client(
        base_url=exchange.base_url, headers={"Authorization": f"Bearer {buyer_key}"}, timeout=60
    ) as buyer:
        assert transfer(buyer, "top-ups", buyer_id, 10**6, uuid.uuid4().hex).status_code == 403
        others = buyer.get(f"/v1/organizations/{market['contributor']}/statement")
        assert others.status_code == 403
        assert buyer.get("/v1/ledger/trial-balance").status_code == 403
        assert buyer.get("/v1/audit/verify").status_code == 403
    # Auditors read any statement.
    assert balance(exchange, market["auditor_key"], buyer_id) == 500


def test_the_audit_chain_verifies_and_names_the_first_altered_event(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    with exchange.client(market["auditor_key"]) as auditor:
        report = auditor.request("GET", "/v1/audit/verify")
    assert report["intact"] is True and report["events"] > 5
    engine = create_engine(exchange.settings.resolved_database_url)
    try:
        with engine.begin() as connection:
            original = connection.execute(
                text("SELECT details FROM audit_events WHERE seq = 4")
            ).scalar_one()
            connection.execute(
                text("UPDATE audit_events SET details = :d WHERE seq = 4"),
                {"d": '{"forged": true}'},
            )
        with exchange.client(market["auditor_key"]) as auditor:
            broken = auditor.request("GET", "/v1/audit/verify")
        assert broken["intact"] is False and broken["first_broken_seq"] == 4
        cli = subprocess.run(
            [sys.executable, "-m", "infra.cli", "audit", "verify"],
            cwd=REPO, env=_cli_env(exchange), capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert cli.returncode == 1
        assert "BROKEN at event 4" in cli.stderr
    finally:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE audit_events SET details = :d WHERE seq = 4"),
                {"d": original if isinstance(original, str) else _json(original)},
            )
        engine.dispose()
    with exchange.client(market["auditor_key"]) as auditor:
        assert auditor.request("GET", "/v1/audit/verify")["intact"] is True


def test_auditors_read_the_trail_and_every_filed_contract(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    buyer_id, buyer_key = new_buyer(exchange, market, funds=10_000)
    response = buy(exchange, buyer_key, market["listing"], uuid.uuid4().hex)
    assert response.status_code == 201, response.text
    license_id = response.json()["id"]
    with exchange.client(market["auditor_key"]) as auditor:
        # A third party that is neither buyer nor seller reads the deal's documents.
        contract = auditor.request("GET", f"/v1/licenses/{license_id}/contract")
        certificate = auditor.request("GET", f"/v1/licenses/{license_id}/certificate")
        # The whole trail, page by page: each event links to the one before it.
        events: list[dict[str, Any]] = []
        while True:
            after = events[-1]["seq"] if events else 0
            page = auditor.request("GET", f"/v1/audit/events?after_seq={after}&limit=7")
            if not page:
                break
            events += page
        chain = auditor.request("GET", "/v1/audit/verify")
        mine = auditor.request(
            "GET", f"/v1/audit/events?object_type=license&object_id={license_id}"
        )
    assert contract["sha256"] == certificate["payload"]["contract"]["sha256"]
    assert [event["seq"] for event in events] == list(range(1, chain["events"] + 1))
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(events))
    assert events[-1]["hash"] == chain["head_hash"]
    assert [event["action"] for event in mine] == ["license.concluded"]
    assert mine[0]["actor_organization_id"] == buyer_id
    with httpx.Client(
        base_url=exchange.base_url, headers={"Authorization": f"Bearer {buyer_key}"}, timeout=60
    ) as buyer:
        refused = buyer.get("/v1/audit/events")
        assert refused.status_code == 403 and "auditors" in refused.json()["error"]["message"]
        assert buyer.get("/v1/audit/events?limit=0").status_code in (403, 422)


def _json(value: Any) -> str:
    return json.dumps(value)


def _cli_env(exchange: Exchange) -> dict[str, str]:
    return {**os.environ, **exchange.env, "AIDX_HOME": str(exchange.home)}


def test_a_license_files_a_bilingual_contract_that_the_certificate_names(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    buyer_id, buyer_key = new_buyer(exchange, market, funds=2 * PRICE)
    first = buy(exchange, buyer_key, market["listing"], uuid.uuid4().hex).json()
    second = buy(exchange, buyer_key, market["listing"], uuid.uuid4().hex).json()
    with exchange.client(buyer_key) as client:
        contract = client.request("GET", f"/v1/licenses/{first['id']}/contract")
        certificate = client.certificate(first["id"])
        later = client.request("GET", f"/v1/licenses/{second['id']}/contract")
    number = contract["filing_number"]
    assert number == first["contract_filing_number"]
    prefix, sequence = number.rsplit("-", 1)
    assert later["filing_number"] == f"{prefix}-{int(sequence) + 1:06d}"  # sequential, unique
    # The parties accept the text before the number exists; the certificate binds the two.
    assert number not in contract["text_en"] and number not in contract["text_zh"]
    assert "assigns this contract's filing number when it files it" in contract["text_en"]
    assert "合同备案号由交易所" in contract["text_zh"]
    acceptances = {item["party"]: item for item in contract["acceptances"]}
    assert acceptances["buyer"]["basis"] == "purchase"
    assert acceptances["seller"]["basis"] == "standing_offer"
    assert {item["contract_sha256"] for item in acceptances.values()} == {contract["sha256"]}
    assert buyer_id in contract["text_en"] and buyer_id in contract["text_zh"]
    assert "research, commercial, training, evaluation" in contract["text_en"]
    document = {key: contract[key] for key in ("template", "template_sha256", "parameters")}
    document |= {"text_en": contract["text_en"], "text_zh": contract["text_zh"]}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == contract["sha256"]
    assert certificate["payload"]["contract"] == {
        "contract_id": contract["id"],
        "template": "aidx-ai-training-v2",
        "sha256": contract["sha256"],
        "filing_number": number,
    }
    with exchange.client(market["contributor_key"]) as seller:  # the other party reads it too
        assert (
            seller.request("GET", f"/v1/licenses/{first['id']}/contract")["sha256"]
            == (contract["sha256"])
        )


def test_a_term_makes_the_entitlement_expire_and_expired_access_stops(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    with exchange.client(market["contributor_key"]) as seller:
        version_id = seller.request("GET", f"/v1/listings/{market['listing']}")["version_id"]
        listing = seller.submit_listing(
            version_id=version_id, title="one day", price_amount=0, currency="CNY",
            contract_parameters={"term_days": 1, "territory": ["CN"], "share_alike": True},
        )  # fmt: skip
    with exchange.client(market["operator_key"]) as operator:
        operator.review_listing(listing["id"], "approve")
    _, buyer_key = new_buyer(exchange, market, funds=0)
    license_ = buy(exchange, buyer_key, listing["id"], uuid.uuid4().hex).json()
    entitlement = license_["entitlement"]
    expires = dt.datetime.fromisoformat(entitlement["expires_at"])
    created = dt.datetime.fromisoformat(license_["created_at"])
    assert dt.timedelta(hours=23) < expires - created < dt.timedelta(hours=25)
    with exchange.client(buyer_key) as client:
        contract = client.request("GET", f"/v1/licenses/{license_['id']}/contract")
        assert "1 days from filing" in contract["text_en"] and "CN" in contract["text_en"]
        files = client.version(version_id)["files"]
        path = f"/v1/versions/{version_id}/files/{files[0]['path']}"
        assert client.http.get(path).status_code == 200
    engine = create_engine(exchange.settings.resolved_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE entitlements SET expires_at = :past WHERE id = :id"),
                {"past": dt.datetime(2020, 1, 1, tzinfo=dt.UTC), "id": entitlement["id"]},
            )
    finally:
        engine.dispose()
    with exchange.client(buyer_key) as client:
        assert client.http.get(path).status_code == 403
        refused = client.http.post(
            "/v1/training-jobs", json={"version_id": version_id, "params": {}}
        )
        assert refused.status_code == 403


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"exclusive": True}, "contract_parameters.exclusive"),
        ({"territory": ["china"]}, "contract_parameters.territory"),
        ({"permitted_uses": ["resale"]}, "contract_parameters.permitted_uses"),
        ({"term_days": 0}, "contract_parameters.term_days"),
    ],
)
def test_unknown_or_invalid_contract_parameters_are_refused(
    exchange: Exchange, market: dict[str, Any], parameters: dict[str, Any], named: str
) -> None:
    with exchange.client(market["contributor_key"]) as seller:
        version_id = seller.request("GET", f"/v1/listings/{market['listing']}")["version_id"]
        response = seller.http.post(
            "/v1/listings",
            json={"version_id": version_id, "title": "t", "price_amount": 1,
                  "contract_parameters": parameters},
        )  # fmt: skip
    assert response.status_code == 422
    assert named in response.json()["error"]["message"]


def test_review_records_the_checklist_and_delisting_stops_new_sales_only(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    with exchange.client(market["contributor_key"]) as seller:
        version_id = seller.request("GET", f"/v1/listings/{market['listing']}")["version_id"]
        listing = seller.submit_listing(version_id=version_id, title="to delist", price_amount=0)
    with exchange.client(market["operator_key"]) as operator:
        reviewed = operator.review_listing(listing["id"], "approve")
    checks = {check["check"]: check["passed"] for check in reviewed["checklist"]}
    expected = {
        "card_lint_clean": True,
        "lawful_source_statement": True,
        "pii_redacted": None,  # the default recipe has no PII scan: recorded, not invented
        "quality_score": None,
    }
    assert {name: checks.get(name, "missing") for name in expected} == expected
    _, buyer_key = new_buyer(exchange, market, funds=0)
    bought = buy(exchange, buyer_key, listing["id"], uuid.uuid4().hex)
    assert bought.status_code == 201
    with httpx.Client(
        base_url=exchange.base_url, headers={"Authorization": f"Bearer {buyer_key}"}, timeout=60
    ) as buyer:
        refused = buyer.post(f"/v1/listings/{listing['id']}/delist", json={"reason": "mine"})
        assert refused.status_code == 404  # not the buyer's to delist
        catalog_ids = [entry["id"] for entry in buyer.get("/v1/catalog?q=delist").json()["data"]]
        assert listing["id"] in catalog_ids  # and the page is now in the catalog's cache
    with exchange.client(market["contributor_key"]) as seller:
        delisted = seller.request(
            "POST", f"/v1/listings/{listing['id']}/delist", json={"reason": "superseded"}
        )
        assert delisted["status"] == "delisted"
        again = seller.http.post(f"/v1/listings/{listing['id']}/delist", json={"reason": "x"})
        assert again.status_code == 409
    late = buy(exchange, buyer_key, listing["id"], uuid.uuid4().hex)
    assert late.status_code == 404  # no new sales
    with exchange.client(buyer_key) as client:  # the cached page went with the change
        after = client.request("GET", "/v1/catalog?q=delist")
        assert listing["id"] not in [entry["id"] for entry in after["data"]]
    with exchange.client(buyer_key) as client:  # the license already concluded still works
        files = client.version(version_id)["files"]
        assert (
            client.http.get(f"/v1/versions/{version_id}/files/{files[0]['path']}").status_code
            == 200
        )


TRAINING = {"max_steps": 3, "batch_size": 2, "max_seq_len": 512}
PER_MILLION = 5_000_000  # minor units per million trained tokens


def test_metered_training_holds_the_most_it_can_cost_and_charges_the_tokens_trained(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    with exchange.client(market["contributor_key"]) as seller:
        version_id = seller.request("GET", f"/v1/listings/{market['listing']}")["version_id"]
        listing = seller.submit_listing(
            version_id=version_id, title="metered", price_amount=0,
            training_price_per_million_tokens=PER_MILLION,
        )  # fmt: skip
    with exchange.client(market["operator_key"]) as operator:
        operator.review_listing(listing["id"], "approve")
    most = -(-3 * 2 * 512 * PER_MILLION // 1_000_000)
    buyer_id, buyer_key = new_buyer(exchange, market, funds=most + 7)
    assert buy(exchange, buyer_key, listing["id"], uuid.uuid4().hex).status_code == 201
    seller_before = balance(exchange, market["contributor_key"], market["contributor"])
    with exchange.client(buyer_key) as client:
        job = client.submit_training_job(version_id, TRAINING)
        assert job["held_amount"] == most
        job = client.wait_for(
            f"/v1/training-jobs/{job['id']}",
            done=("succeeded", "quarantined", "failed"),
            timeout=300,
        )
    assert job["status"] == "succeeded", job["error"]
    charge = -(-job["trained_tokens"] * PER_MILLION // 1_000_000)
    assert 0 < job["charged_amount"] == charge <= most
    assert balance(exchange, buyer_key, buyer_id) == most + 7 - charge
    fee = charge * 500 // 10_000
    assert balance(exchange, market["contributor_key"], market["contributor"]) == (
        seller_before + charge - fee
    )
    assert trial_balance(exchange, market)["balanced"] is True
    # A second job that could cost more than what is left is refused before it is queued.
    with httpx.Client(
        base_url=exchange.base_url, headers={"Authorization": f"Bearer {buyer_key}"}, timeout=60
    ) as client:
        refused = client.post(
            "/v1/training-jobs", json={"version_id": version_id, "params": TRAINING}
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "insufficient_funds"
