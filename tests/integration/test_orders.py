"""Offers, orders and two-party contract acceptance on a running exchange, on both backends.

A buyer requests access under an offer with a verification form; the seller (or the offer, when
it approves automatically) approves; both parties accept the contract's SHA-256; the exchange
files it with a filing number and settles it once, however often the filing is retried. Private
offers stay invisible to other buyers, subscriptions expire and renew, sellers revoke, and every
refusal is a JSON 4xx that leaves the stored state as it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from infra.db import dispose_engines, session_scope
from infra.demo import CARD_FACTS
from marketplace.certificates import load_public_key, verify_certificate
from marketplace.models import Contract, FiledContractError
from tests.conftest import Exchange

PRICE = 20_000
FEE_BPS = 500  # the default platform fee, 5 %
VERIFICATION = {
    "company": "Shenzhen Model Works Ltd",
    "use_case": "supervised fine-tuning of a maths tutor model",
    "country": "CN",
}


@pytest.fixture(scope="module")
def market(
    exchange: Exchange, gsm8k_train: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A listed version, its seller, an auditor, and the operator's key to make buyers with."""
    scratch = tmp_path_factory.mktemp("orders")
    rows = scratch / "rows.jsonl"
    rows.write_bytes(b"".join(gsm8k_train.read_bytes().splitlines(keepends=True)[:50]))
    with exchange.client() as anonymous:
        operator = anonymous.bootstrap(exchange.bootstrap_token, "Operator")
    facts: dict[str, Any] = {"operator_key": operator["api_key"]["api_key"]}
    with exchange.client(facts["operator_key"]) as client:
        seller = client.create_organization("Seller", ["contributor"])
        auditor = client.create_organization("Auditor", ["auditor"])
    facts["seller"], facts["seller_key"] = seller["id"], seller["api_key"]["api_key"]
    facts["auditor_key"] = auditor["api_key"]["api_key"]
    with exchange.client(facts["seller_key"]) as client:
        dataset = client.create_dataset(name="ordered", license="mit")
        client.upload(dataset["id"], rows)
        run = client.start_curation(dataset["id"])
        run = client.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
        assert run["status"] == "succeeded", run["error"]
        client.update_card(run["version_id"], CARD_FACTS)
        listing = client.submit_listing(
            version_id=run["version_id"], title="ordered rows", price_amount=PRICE
        )
        facts["files"] = client.version(run["version_id"])["files"]
    with exchange.client(facts["operator_key"]) as client:
        client.review_listing(listing["id"], "approve")
    facts["listing"], facts["version"] = listing["id"], run["version_id"]
    return facts


def new_buyer(exchange: Exchange, market: dict[str, Any], funds: int) -> tuple[str, str]:
    with exchange.client(market["operator_key"]) as operator:
        buyer = operator.create_organization(f"Buyer {uuid.uuid4().hex[:8]}", ["buyer"])
        if funds:
            operator.request(
                "POST",
                "/v1/ledger/top-ups",
                json={"organization_id": buyer["id"], "amount": funds, "currency": "CNY"},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
    return buyer["id"], buyer["api_key"]["api_key"]


def http(exchange: Exchange, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=exchange.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The JSON error body of a refusal with that status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return dict(body["error"])


def balance(exchange: Exchange, key: str, organization_id: str) -> int:
    with exchange.client(key) as client:
        statement = client.request("GET", f"/v1/organizations/{organization_id}/statement")
    return sum(int(account["balance"]) for account in statement["accounts"])


def offer(exchange: Exchange, market: dict[str, Any], **fields: Any) -> dict[str, Any]:
    with exchange.client(market["seller_key"]) as seller:
        return seller.create_offer(market["listing"], **fields)


def order_to_accepted(
    exchange: Exchange, market: dict[str, Any], buyer_key: str, offer_id: str
) -> dict[str, Any]:
    """An order under an automatically approved offer, accepted by both parties."""
    with exchange.client(buyer_key) as buyer:
        order = buyer.place_order(offer_id, VERIFICATION)
        assert order["status"] == "awaiting_acceptance"
        buyer.accept_contract(order["id"], order["contract_sha256"])
    with exchange.client(market["seller_key"]) as seller:
        return seller.accept_contract(order["id"], order["contract_sha256"])


def can_download(exchange: Exchange, key: str, market: dict[str, Any]) -> bool:
    path = f"/v1/versions/{market['version']}/files/{market['files'][0]['path']}"
    with http(exchange, key) as client:
        status = client.get(path).status_code
    assert status in (200, 403), status
    return status == 200


def move_expiry_to_the_past(exchange: Exchange, entitlement_id: str) -> None:
    """Time passing for one entitlement: its expiry, set an hour ago."""
    engine = create_engine(exchange.settings.resolved_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE entitlements SET expires_at = :past WHERE id = :id"),
                {"past": dt.datetime.now(dt.UTC) - dt.timedelta(hours=1), "id": entitlement_id},
            )
    finally:
        engine.dispose()


def trial_balance(exchange: Exchange, market: dict[str, Any]) -> dict[str, Any]:
    with exchange.client(market["auditor_key"]) as auditor:
        return dict(auditor.request("GET", "/v1/ledger/trial-balance"))


def test_a_manually_approved_order_is_accepted_by_both_parties_then_filed_and_certified(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    plan = offer(exchange, market, plan="one_off", price_amount=PRICE, approval="manual")
    buyer_id, buyer_key = new_buyer(exchange, market, funds=3 * PRICE)
    with exchange.client(buyer_key) as buyer:
        assert plan["id"] in [row["id"] for row in buyer.offers(market["listing"])]
        order = buyer.place_order(plan["id"], VERIFICATION, idempotency_key="request-1")
        assert buyer.place_order(plan["id"], VERIFICATION, idempotency_key="request-1") == order
    assert order["status"] == "requested" and order["contract_sha256"] is None
    assert order["verification"] == VERIFICATION
    with http(exchange, buyer_key) as buyer:
        error_of(buyer.get(f"/v1/orders/{order['id']}/contract"), 404)
        early = buyer.post(
            f"/v1/orders/{order['id']}/acceptances", json={"contract_sha256": "0" * 64}
        )
        assert "generated when it is approved" in error_of(early, 409)["message"]
        own = buyer.post(
            f"/v1/orders/{order['id']}/decision", json={"decision": "approve", "reason": "me"}
        )
        error_of(own, 403)
        unfiled = buyer.post(f"/v1/orders/{order['id']}/filing", headers={"Idempotency-Key": "f"})
        assert "requested" in error_of(unfiled, 409)["message"]

    with exchange.client(market["seller_key"]) as seller:
        approved = seller.decide_order(order["id"], "approve", "verified the company register")
        contract = seller.order_contract(order["id"])
    assert (
        approved["status"] == "awaiting_acceptance" and approved["decided_by"] == market["seller"]
    )
    assert approved["contract_sha256"] == contract["sha256"] and contract["filing_number"] is None
    for value in VERIFICATION.values():
        assert value in contract["text_en"] and value in contract["text_zh"]
    document = {key: contract[key] for key in ("template", "template_sha256", "parameters")}
    document |= {"text_en": contract["text_en"], "text_zh": contract["text_zh"]}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == contract["sha256"]

    with http(exchange, buyer_key) as buyer:
        path = f"/v1/orders/{order['id']}/acceptances"
        wrong = buyer.post(path, json={"contract_sha256": "f" * 64})
        assert contract["sha256"] in error_of(wrong, 409)["message"]
        assert buyer.get(f"/v1/orders/{order['id']}").json()["acceptances"] == []
        assert buyer.post(path, json={"contract_sha256": contract["sha256"]}).status_code == 201
        twice = buyer.post(path, json={"contract_sha256": contract["sha256"]})
        assert "already accepted" in error_of(twice, 409)["message"]
        half = buyer.post(f"/v1/orders/{order['id']}/filing", headers={"Idempotency-Key": "f"})
        assert "not accepted by the seller" in error_of(half, 409)["message"]
    assert balance(exchange, buyer_key, buyer_id) == 3 * PRICE  # nothing charged yet

    with exchange.client(market["seller_key"]) as seller:
        accepted = seller.accept_contract(order["id"], contract["sha256"])
    assert accepted["status"] == "accepted"
    with http(exchange, buyer_key) as buyer:
        filing = f"/v1/orders/{order['id']}/filing"
        first = buyer.post(filing, headers={"Idempotency-Key": "file-1"})
        assert first.status_code == 201, first.text
        for _ in range(2):
            again = buyer.post(filing, headers={"Idempotency-Key": "file-1"})
            assert again.status_code == 200 and again.json() == first.json()
        other = buyer.post(filing, headers={"Idempotency-Key": "file-2"})
        assert "already filed" in error_of(other, 409)["message"]
        late = buyer.post(
            f"/v1/orders/{order['id']}/acceptances", json={"contract_sha256": contract["sha256"]}
        )
        error_of(late, 409)
    filed = first.json()
    assert filed["status"] == "filed" and filed["filing_number"].startswith("AIDX-")
    assert balance(exchange, buyer_key, buyer_id) == 2 * PRICE  # charged once

    with exchange.client(buyer_key) as buyer:
        certificate = buyer.certificate(filed["license_id"])
        license_ = buyer.request("GET", f"/v1/licenses/{filed['license_id']}")
        stored = buyer.request("GET", f"/v1/licenses/{filed['license_id']}/contract")
        public_key = load_public_key(buyer.signing_key()["public_key_pem"])
    payload = verify_certificate(certificate, public_key)
    assert payload["contract"]["sha256"] == contract["sha256"] == stored["sha256"]
    assert payload["contract"]["filing_number"] == filed["filing_number"]
    assert (
        stored["filing_number"] == filed["filing_number"]
        and stored["text_en"] == (contract["text_en"])
    )
    assert payload["order_id"] == order["id"] and payload["offer"]["plan"] == "one_off"
    parties = {item["party"]: item for item in payload["acceptances"]}
    assert parties["buyer"]["organization_id"] == buyer_id
    assert parties["seller"]["organization_id"] == market["seller"]
    assert {item["basis"] for item in parties.values()} == {"explicit"}
    assert all(item["api_key_id"].startswith("key_") for item in parties.values())
    assert license_["order_id"] == order["id"] and license_["plan"] == "one_off"
    assert sorted(license_["entitlement"]["uses"]) == ["download", "training"]
    assert can_download(exchange, buyer_key, market)
    assert trial_balance(exchange, market)["balanced"] is True
    # A filed contract never changes, not even through the models.
    try:
        with session_scope(exchange.settings) as session:
            filed_contract = session.get(Contract, stored["id"])
            assert filed_contract is not None
            filed_contract.text_en += " (amended)"
            with pytest.raises(FiledContractError, match=filed["filing_number"]):
                session.commit()
    finally:
        dispose_engines()
    with exchange.client(buyer_key) as buyer:
        again = buyer.request("GET", f"/v1/licenses/{filed['license_id']}/contract")
    assert again["text_en"] == contract["text_en"]


def test_a_rejected_order_gets_no_contract_and_cannot_be_decided_again(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    plan = offer(exchange, market, plan="one_off", price_amount=PRICE, approval="manual")
    _, buyer_key = new_buyer(exchange, market, funds=0)
    with exchange.client(buyer_key) as buyer:
        order = buyer.place_order(plan["id"], VERIFICATION)
    with exchange.client(market["operator_key"]) as operator:  # the operator may decide too
        rejected = operator.decide_order(order["id"], "reject", "sanctioned use case")
    assert rejected["status"] == "rejected" and rejected["decision_reason"] == "sanctioned use case"
    with http(exchange, market["seller_key"]) as seller:
        again = seller.post(
            f"/v1/orders/{order['id']}/decision", json={"decision": "approve", "reason": "x"}
        )
        assert "rejected" in error_of(again, 409)["message"]
        error_of(seller.get(f"/v1/orders/{order['id']}/contract"), 404)


def test_an_automatically_approved_training_only_offer_is_usable_but_not_visible(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    plan = offer(exchange, market, plan="free", delivery_mode="training_only")
    assert plan["uses"] == ["training"] and plan["approval"] == "automatic"
    _, buyer_key = new_buyer(exchange, market, funds=0)
    accepted = order_to_accepted(exchange, market, buyer_key, plan["id"])
    assert accepted["status"] == "accepted" and accepted["decided_by"] is None
    with exchange.client(buyer_key) as buyer:
        contract = buyer.order_contract(accepted["id"])
        filed = buyer.file_order(accepted["id"])
        license_ = buyer.request("GET", f"/v1/licenses/{filed['license_id']}")
        certificate = buyer.certificate(filed["license_id"])
    assert "usable but not visible" in contract["text_en"] and "可用不可见" in contract["text_zh"]
    assert license_["entitlement"]["uses"] == ["training"] and license_["plan"] == "free"
    assert certificate["payload"]["settlement"]["ledger_transaction_id"] is None
    assert certificate["payload"]["offer"]["delivery_mode"] == "training_only"
    assert not can_download(exchange, buyer_key, market)
    # The same public, automatic offer also sells in one step.
    _, other_key = new_buyer(exchange, market, funds=0)
    with exchange.client(other_key) as other:
        one_step = other.license(market["listing"], offer_id=plan["id"])
    assert one_step["offer_id"] == plan["id"] and one_step["entitlement"]["uses"] == ["training"]


def test_a_private_offer_is_invisible_to_every_other_buyer(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    chosen_id, chosen_key = new_buyer(exchange, market, funds=PRICE)
    _, other_key = new_buyer(exchange, market, funds=PRICE)
    private = offer(
        exchange, market, plan="one_off", price_amount=PRICE // 2, buyer_organization_id=chosen_id
    )
    with exchange.client(chosen_key) as chosen:
        assert private["id"] in [row["id"] for row in chosen.offers(market["listing"])]
    with http(exchange, other_key) as other:
        listed = other.get(f"/v1/listings/{market['listing']}/offers").json()["data"]
        assert private["id"] not in [row["id"] for row in listed]
        assert listed  # the public offers, the listing's own among them
        error_of(other.get(f"/v1/listings/{market['listing']}/offers/{private['id']}"), 404)
        ordered = other.post(
            "/v1/orders",
            json={"offer_id": private["id"], "verification": VERIFICATION},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert private["id"] in error_of(ordered, 404)["message"]
        bought = other.post(
            "/v1/licenses",
            json={"listing_id": market["listing"], "offer_id": private["id"]},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        error_of(bought, 404)
    with exchange.client(chosen_key) as chosen:
        license_ = chosen.license(market["listing"], offer_id=private["id"])
    assert license_["price_amount"] == PRICE // 2
    withdraw = f"/v1/listings/{market['listing']}/offers/{private['id']}/withdraw"
    with http(exchange, chosen_key) as chosen:  # only its seller (or the operator) withdraws it
        error_of(chosen.post(withdraw, json={"reason": "mine"}), 403)
    with http(exchange, market["seller_key"]) as seller:
        withdrawn = seller.post(withdraw, json={"reason": "price changed"})
        assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
        error_of(seller.post(withdraw, json={"reason": "again"}), 409)
    with http(exchange, chosen_key) as chosen:
        late = chosen.post(
            "/v1/orders",
            json={"offer_id": private["id"], "verification": VERIFICATION},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert "withdrawn" in error_of(late, 409)["message"]
        listed = chosen.get(f"/v1/listings/{market['listing']}/offers").json()["data"]
        assert private["id"] not in [row["id"] for row in listed]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"plan": "one_off", "price_amount": -1}, "price_amount"),
        ({"plan": "one_off", "price_amount": "lots"}, "price_amount"),
        ({"plan": "barter"}, "plan"),
        ({"plan": "one_off", "price_amount": 0}, "price_amount"),
        ({"plan": "free", "price_amount": 5}, "price_amount"),
        ({"plan": "subscription", "price_amount": 5}, "period_unit"),
        ({"plan": "one_off", "price_amount": 5, "period_length": 3}, "period_length"),
        ({"plan": "metered", "training_price_per_million_tokens": 0}, "training_price"),
        ({"plan": "free", "delivery_mode": "training_only", "uses": ["download"]}, "uses"),
        ({"plan": "free", "contract_parameters": {"exclusive": True}}, "exclusive"),
        ({"plan": "free", "contract_parameters": {"territory": ["China"]}}, "territory"),
        ({"plan": "free", "buyer_organization_id": "org_nope"}, "buyer_organization_id"),
        ({"plan": "free", "discount": 10}, "discount"),
        (
            {"plan": "subscription", "price_amount": 5, "period_unit": "day", "period_length": 1,
             "contract_parameters": {"term_days": 30}},
            "term_days",
        ),
    ],
)  # fmt: skip
def test_invalid_offers_are_refused_naming_the_problem_and_nothing_is_stored(
    exchange: Exchange, market: dict[str, Any], body: dict[str, Any], named: str
) -> None:
    with http(exchange, market["seller_key"]) as seller:
        path = f"/v1/listings/{market['listing']}/offers"
        before = seller.get(path).json()["count"]
        response = seller.post(path, json=body)
        assert named in error_of(response, 422)["message"]
        malformed = seller.post(
            path, content=b'{"plan": "free",', headers={"Content-Type": "application/json"}
        )
        error_of(malformed, 422)
        assert seller.get(path).json()["count"] == before


@pytest.mark.parametrize(
    ("verification", "named"),
    [
        ({**VERIFICATION, "country": "XX"}, "verification.country"),
        ({**VERIFICATION, "country": "China"}, "verification.country"),
        ({**VERIFICATION, "country": "cn"}, "verification.country"),
        ({**VERIFICATION, "company": "   "}, "verification.company"),
        ({**VERIFICATION, "use_case": "x" * 2_001}, "verification.use_case"),
        ({"company": "A", "country": "CN"}, "verification.use_case"),
        ({**VERIFICATION, "phone": "123"}, "verification.phone"),
    ],
)
def test_an_invalid_verification_form_is_refused_and_no_order_is_stored(
    exchange: Exchange, market: dict[str, Any], verification: dict[str, Any], named: str
) -> None:
    _, buyer_key = new_buyer(exchange, market, funds=0)
    with http(exchange, buyer_key) as buyer:
        listing_offers = buyer.get(f"/v1/listings/{market['listing']}/offers").json()["data"]
        response = buyer.post(
            "/v1/orders",
            json={"offer_id": listing_offers[0]["id"], "verification": verification},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert named in error_of(response, 422)["message"]
        assert buyer.get("/v1/orders").json()["count"] == 0


def test_a_subscription_expires_with_its_period_and_a_renewal_charges_once_per_key(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    plan = offer(
        exchange, market, plan="subscription", price_amount=PRICE, period_unit="day",
        period_length=1, renews=True,
    )  # fmt: skip
    buyer_id, buyer_key = new_buyer(exchange, market, funds=3 * PRICE)
    with exchange.client(buyer_key) as buyer:
        license_ = buyer.license(market["listing"], offer_id=plan["id"])
        contract = buyer.request("GET", f"/v1/licenses/{license_['id']}/contract")
    assert license_["plan"] == "subscription" and "per period of 1 day" in contract["text_en"]
    entitlement = license_["entitlement"]
    expires = dt.datetime.fromisoformat(entitlement["expires_at"])
    created = dt.datetime.fromisoformat(license_["created_at"])
    assert expires - created == dt.timedelta(days=1)
    assert balance(exchange, buyer_key, buyer_id) == 2 * PRICE
    assert can_download(exchange, buyer_key, market)

    move_expiry_to_the_past(exchange, entitlement["id"])
    assert not can_download(exchange, buyer_key, market)  # expired: stops at the next access
    with http(exchange, buyer_key) as buyer:
        training = buyer.post(
            "/v1/training-jobs", json={"version_id": market["version"], "params": {}}
        )
        error_of(training, 403)
        renewals = f"/v1/licenses/{license_['id']}/renewals"
        first = buyer.post(renewals, headers={"Idempotency-Key": "period-2"})
        assert first.status_code == 201, first.text
        again = buyer.post(renewals, headers={"Idempotency-Key": "period-2"})
        assert again.status_code == 200
        assert again.json()["entitlement"] == first.json()["entitlement"]
    renewed = dt.datetime.fromisoformat(first.json()["entitlement"]["expires_at"])
    now = dt.datetime.now(dt.UTC)
    assert now + dt.timedelta(hours=23) < renewed <= now + dt.timedelta(days=1)
    assert balance(exchange, buyer_key, buyer_id) == PRICE  # the period charged once
    assert can_download(exchange, buyer_key, market)

    fixed = offer(
        exchange, market, plan="subscription", price_amount=PRICE, period_unit="month",
        period_length=1, renews=False,
    )  # fmt: skip
    with exchange.client(buyer_key) as buyer:
        fixed_license = buyer.license(market["listing"], offer_id=fixed["id"])
    with http(exchange, buyer_key) as buyer:
        refused = buyer.post(
            f"/v1/licenses/{fixed_license['id']}/renewals", headers={"Idempotency-Key": "k"}
        )
        assert "fixed-term" in error_of(refused, 409)["message"]
        broke = buyer.post(renewals, headers={"Idempotency-Key": "period-3"})
        assert error_of(broke, 409)["code"] == "insufficient_funds"
    assert balance(exchange, buyer_key, buyer_id) == 0
    assert trial_balance(exchange, market)["balanced"] is True


def test_a_metered_offer_charges_nothing_upfront_and_fixes_the_token_price(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    plan = offer(
        exchange, market, plan="metered", training_price_per_million_tokens=7_000,
        delivery_mode="training_only",
    )  # fmt: skip
    buyer_id, buyer_key = new_buyer(exchange, market, funds=PRICE)
    with exchange.client(buyer_key) as buyer:
        license_ = buyer.license(market["listing"], offer_id=plan["id"])
        contract = buyer.request("GET", f"/v1/licenses/{license_['id']}/contract")
    assert license_["plan"] == "metered" and license_["training_price_per_million_tokens"] == 7_000
    assert "7000 CNY (minor units) per million trained tokens" in contract["text_en"]
    assert balance(exchange, buyer_key, buyer_id) == PRICE


def test_the_seller_revokes_an_entitlement_with_a_reason_and_access_stops(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    _, buyer_key = new_buyer(exchange, market, funds=PRICE)
    _, stranger_key = new_buyer(exchange, market, funds=0)
    with exchange.client(buyer_key) as buyer:
        entitlement = buyer.license(market["listing"])["entitlement"]
    assert can_download(exchange, buyer_key, market)
    path = f"/v1/entitlements/{entitlement['id']}/revoke"
    with http(exchange, buyer_key) as buyer:
        error_of(buyer.post(path, json={"reason": "no"}), 403)
    with http(exchange, stranger_key) as stranger:
        error_of(stranger.post(path, json={"reason": "no"}), 404)
    with http(exchange, market["seller_key"]) as seller:
        error_of(seller.post(path, json={}), 422)
        revoked = seller.post(path, json={"reason": "redistributed the files"})
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        assert (
            "already revoked" in error_of(seller.post(path, json={"reason": "x"}), 409)["message"]
        )
    assert not can_download(exchange, buyer_key, market)
    engine = create_engine(exchange.settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            details = connection.execute(
                text("SELECT details FROM audit_events WHERE action = 'entitlement.revoked' "
                     "AND object_id = :id"),
                {"id": entitlement["id"]},
            ).scalar_one()  # fmt: skip
    finally:
        engine.dispose()
    details = json.loads(details) if isinstance(details, str) else details
    assert details["reason"] == "redistributed the files"


def test_concurrent_filings_never_overdraw_and_keep_the_trial_balance_at_zero(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    plan = offer(exchange, market, plan="one_off", price_amount=PRICE)
    buyer_id, buyer_key = new_buyer(exchange, market, funds=3 * PRICE)
    accepted = [order_to_accepted(exchange, market, buyer_key, plan["id"]) for _ in range(6)]

    def file(order_id: str, key: str) -> httpx.Response:
        with http(exchange, buyer_key) as client:
            return client.post(f"/v1/orders/{order_id}/filing", headers={"Idempotency-Key": key})

    # The same filing retried at once by four threads: one filing, one charge.
    with ThreadPoolExecutor(max_workers=4) as pool:
        retried = list(pool.map(lambda _: file(accepted[0]["id"], "same-key"), range(4)))
    assert sorted(response.status_code for response in retried) == [200, 200, 200, 201]
    assert len({response.json()["license_id"] for response in retried}) == 1
    assert balance(exchange, buyer_key, buyer_id) == 2 * PRICE
    # Five different orders at once with funds for two.
    with ThreadPoolExecutor(max_workers=5) as pool:
        responses = list(pool.map(lambda order: file(order["id"], uuid.uuid4().hex), accepted[1:]))
    assert sorted(response.status_code for response in responses) == [201] * 2 + [409] * 3
    assert {
        response.json()["error"]["code"] for response in responses if response.status_code == 409
    } == {"insufficient_funds"}
    assert balance(exchange, buyer_key, buyer_id) == 0
    numbers = [r.json()["filing_number"] for r in [retried[0], *responses] if r.status_code < 300]
    assert len(set(numbers)) == len(numbers) == 3
    with exchange.client(buyer_key) as buyer:
        statuses = sorted(buyer.request("GET", f"/v1/orders/{o['id']}")["status"] for o in accepted)
    assert statuses == ["accepted"] * 3 + ["filed"] * 3  # refused filings left no trace
    trial = trial_balance(exchange, market)
    assert trial["balanced"] is True and trial["sum_of_all_entries"] == 0
