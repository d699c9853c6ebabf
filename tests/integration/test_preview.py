"""Bounded, PII-redacted previews and column statistics of listings, on both backends.

The version is built from the fictitious identities of ``fakenamegenerator_100.csv`` (e-mail
addresses and phone numbers planted in a free-text column) and GSM8K problems as long text. One
version is listed free and paid, and submitted a third time without review.
"""

from __future__ import annotations

import csv
import json
import statistics as stats
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.demo import CARD_FACTS
from marketplace.services.preview import PAID_PREVIEW_ROWS, PREVIEW_ROWS, TEXT_LIMIT
from tests.conftest import FIXTURES, Exchange

PRICE = 50_000


def http(exchange: Exchange, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=exchange.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    )


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def _refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return str(body["error"]["message"])


def _identity_rows(gsm8k_train: Path) -> list[dict[str, Any]]:
    with (FIXTURES / "fakenamegenerator_100.csv").open(encoding="utf-8-sig") as handle:
        identities = list(csv.DictReader(handle))
    problems = [json.loads(line) for line in gsm8k_train.read_text().splitlines()[:100]]
    return [
        {
            "name": f"{person['GivenName']} {person['Surname']}",
            "contact": f"Write to {person['EmailAddress']} or call "
            f"+{person['TelephoneCountryCode']} {person['TelephoneNumber']}.",
            "note": f"{problem['question']} {problem['answer']}",
            "age": int(person["Age"]),
            "kilograms": float(person["Kilograms"]),
            "blood_type": person["BloodType"],
            "nickname": person["Username"] if int(person["Number"]) % 3 else None,
        }
        for person, problem in zip(identities, problems, strict=True)
    ]


@pytest.fixture(scope="module")
def market(
    exchange: Exchange, gsm8k_train: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    ids: dict[str, Any] = {"rows": _identity_rows(gsm8k_train)}
    path = tmp_path_factory.mktemp("preview") / "identities.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ids["rows"]))
    with exchange.client() as anonymous:
        operator = anonymous.bootstrap(exchange.bootstrap_token, "Operator")
    ids["operator_key"] = operator["api_key"]["api_key"]
    with exchange.client(ids["operator_key"]) as client:
        for name, roles in (
            ("seller", ["contributor"]),
            ("buyer", ["buyer"]),
            ("other", ["buyer"]),
        ):
            org = client.create_organization(f"Preview {name}", roles)
            ids[name], ids[f"{name}_key"] = org["id"], org["api_key"]["api_key"]
    with exchange.client(ids["seller_key"]) as seller:
        dataset = seller.create_dataset(name="identities", license="cc-by-4.0", language=["en"])
        seller.upload(dataset["id"], path)
        run = seller.start_curation(dataset["id"])
        run = seller.wait_for(f"/v1/curation-runs/{run['id']}", done=("succeeded", "failed"))
        assert run["status"] == "succeeded", run["error"]
        ids["dataset"], ids["version"] = dataset["id"], run["version_id"]
        seller.update_card(run["version_id"], CARD_FACTS)
        for name, price in (("free", 0), ("paid", PRICE), ("unlisted", PRICE)):
            listing = seller.submit_listing(
                version_id=run["version_id"], title=f"Identities ({name})", price_amount=price
            )
            ids[name] = listing["id"]
    with exchange.client(ids["operator_key"]) as operator_client:
        for name in ("free", "paid"):
            operator_client.review_listing(ids[name], "approve")
    return ids


def test_preview_rows_are_bounded_and_fewer_for_paid_listings(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    with http(exchange, market["other_key"]) as other:
        free = _ok(other.get(f"/v1/listings/{market['free']}/preview", params={"rows": 20}))
        assert (len(free["rows"]), free["limit"], free["limited"]) == (PREVIEW_ROWS, 20, False)
        assert free["columns"] == list(market["rows"][0])  # data columns only, no provenance
        assert all(not name.startswith("_") for row in free["rows"] for name in row)
        assert len(_ok(other.get(f"/v1/listings/{market['free']}/preview"))["rows"]) == 10
        paid = _ok(other.get(f"/v1/listings/{market['paid']}/preview", params={"rows": 20}))
        assert (len(paid["rows"]), paid["limit"], paid["limited"]) == (PAID_PREVIEW_ROWS, 5, True)
        assert paid["rows"] == free["rows"][:PAID_PREVIEW_ROWS]
        for rows in (0, PREVIEW_ROWS + 1, "many"):
            message = _refused(
                other.get(f"/v1/listings/{market['free']}/preview", params={"rows": rows}), 422
            )
            assert "rows" in message
    with http(exchange, market["seller_key"]) as seller:
        own = _ok(seller.get(f"/v1/listings/{market['paid']}/preview", params={"rows": 20}))
        assert (len(own["rows"]), own["limited"]) == (PREVIEW_ROWS, False)


def test_a_license_lifts_the_paid_limits(exchange: Exchange, market: dict[str, Any]) -> None:
    with exchange.client(market["operator_key"]) as operator:
        operator.request(
            "POST",
            "/v1/ledger/top-ups",
            json={"organization_id": market["buyer"], "amount": PRICE, "currency": "CNY"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    with exchange.client(market["buyer_key"]) as buyer:
        buyer.license(market["paid"], idempotency_key=uuid.uuid4().hex)
    with http(exchange, market["buyer_key"]) as buyer_http:
        rows = _ok(buyer_http.get(f"/v1/listings/{market['paid']}/preview", params={"rows": 20}))
        assert (len(rows["rows"]), rows["limited"]) == (PREVIEW_ROWS, False)
        numbers = _ok(buyer_http.get(f"/v1/listings/{market['paid']}/statistics"))
        assert not numbers["limited"]
        age = next(column for column in numbers["columns"] if column["name"] == "age")
        assert age["min"] is not None


def test_preview_redacts_planted_emails_and_phones_and_cuts_long_text(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    with http(exchange, market["other_key"]) as other:
        preview = _ok(other.get(f"/v1/listings/{market['free']}/preview", params={"rows": 20}))
    shown = market["rows"][:PREVIEW_ROWS]
    body = json.dumps(preview, ensure_ascii=False)
    for row in shown:
        email = row["contact"].split()[2]
        phone = row["contact"].split(" or call ")[1].rstrip(".")
        assert "@" in email and phone.startswith("+")
        assert email not in body and phone not in body
    assert all(row["contact"] == "Write to [EMAIL] or call [PHONE]." for row in preview["rows"]), (
        preview["rows"][:2]
    )
    assert preview["redactions"]["EMAIL"] == len(shown)
    assert preview["redactions"]["PHONE"] >= len(shown)
    # Names are not personal data the detectors know; they pass unchanged.
    assert [row["name"] for row in preview["rows"]] == [row["name"] for row in shown]
    cut = [row["note"] for row in preview["rows"] if row["note"].endswith("…")]
    assert cut and all(len(note) == TEXT_LIMIT + 1 for note in cut)
    assert preview["truncated_values"] == len(cut)
    assert len(cut) == sum(len(row["note"]) > TEXT_LIMIT for row in shown)


def test_statistics_describe_every_column_and_are_cached(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    rows = market["rows"]
    with http(exchange, market["other_key"]) as other:
        result = _ok(other.get(f"/v1/listings/{market['free']}/statistics"))
        again = _ok(other.get(f"/v1/listings/{market['free']}/statistics"))
    assert again == result
    key = f"datasets/{market['dataset']}/versions/{market['version']}/statistics-v1.json"
    assert exchange.store.exists(key)
    assert (result["num_rows"], result["limited"]) == (len(rows), False)
    columns = {column["name"]: column for column in result["columns"]}
    assert list(columns) == list(rows[0])

    ages = [row["age"] for row in rows]
    age = columns["age"]
    assert (age["kind"], age["min"], age["max"]) == ("number", min(ages), max(ages))
    assert age["mean"] == pytest.approx(stats.mean(ages))
    assert age["distinct_estimate"] == len(set(ages))
    kilograms = [row["kilograms"] for row in rows]
    assert (columns["kilograms"]["min"], columns["kilograms"]["max"]) == (
        min(kilograms),
        max(kilograms),
    )

    blood = columns["blood_type"]
    expected = Counter(row["blood_type"] for row in rows)
    assert blood["kind"] == "text"
    assert {entry["value"]: entry["count"] for entry in blood["top_values"]} == dict(
        expected.most_common(10)
    )
    assert columns["name"]["distinct_estimate"] == len({row["name"] for row in rows})
    assert columns["name"]["top_values"] is None  # too many distinct values to list
    nulls = sum(row["nickname"] is None for row in rows)
    assert columns["nickname"]["null_fraction"] == pytest.approx(nulls / len(rows))
    histogram = columns["note"]["length_histogram"]
    assert sum(bin_["count"] for bin_ in histogram) == len(rows)
    longest = max(len(row["note"]) for row in rows)
    assert any(
        bin_["count"] and bin_["min_length"] <= longest <= (bin_["max_length"] or longest)
        for bin_ in histogram
    )


def test_paid_statistics_withhold_extremes_and_values(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    with http(exchange, market["other_key"]) as other:
        paid = _ok(other.get(f"/v1/listings/{market['paid']}/statistics"))
        free = _ok(other.get(f"/v1/listings/{market['free']}/statistics"))
    assert paid["limited"] and not free["limited"]
    for limited, full in zip(paid["columns"], free["columns"], strict=True):
        assert limited["name"] == full["name"]
        assert (limited["min"], limited["max"], limited["top_values"]) == (None, None, None)
        assert limited["null_fraction"] == full["null_fraction"]
        assert limited["distinct_estimate"] == full["distinct_estimate"]
        if full["mean"] is not None:
            assert limited["mean"] == pytest.approx(full["mean"], rel=5e-3)


def test_unlisted_listings_preview_only_for_owner_and_operator(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    unlisted = market["unlisted"]
    with http(exchange, market["other_key"]) as other:
        for path in ("preview", "statistics"):
            _refused(other.get(f"/v1/listings/{unlisted}/{path}"), 404)
            _refused(other.get(f"/v1/listings/lst_missing/{path}"), 404)
    for key in ("seller_key", "operator_key"):
        with http(exchange, market[key]) as insider:
            assert _ok(insider.get(f"/v1/listings/{unlisted}/preview"))["rows"]
            assert _ok(insider.get(f"/v1/listings/{unlisted}/statistics"))["columns"]
    with httpx.Client(base_url=exchange.base_url, timeout=60) as anonymous:
        _refused(anonymous.get(f"/v1/listings/{market['free']}/preview"), 401)


def test_listings_search_uses_the_catalog_full_text_index(
    exchange: Exchange, market: dict[str, Any]
) -> None:
    with http(exchange, market["seller_key"]) as seller:
        # The card's text matches (not only the title), and unlisted own listings too.
        found = _ok(seller.get("/v1/listings", params={"q": "step-by-step math reasoning"}))
        assert {entry["id"] for entry in found["data"]} == {
            market["free"],
            market["paid"],
            market["unlisted"],
        }
        assert found["count"] == 3
        assert _ok(seller.get("/v1/listings", params={"q": "quantum chromodynamics"}))["count"] == 0
    with http(exchange, market["other_key"]) as other:
        found = _ok(other.get("/v1/listings", params={"q": "Identities", "status": "listed"}))
        assert {entry["id"] for entry in found["data"]} == {market["free"], market["paid"]}
        catalog = _ok(other.get("/v1/catalog", params={"q": "Identities"}))
        assert {entry["id"] for entry in catalog["data"]} == {market["free"], market["paid"]}
