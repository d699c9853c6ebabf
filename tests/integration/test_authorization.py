"""The authorization matrix: every route by every role, on objects of one organisation.

A running exchange (``aidx up``, embedded backend) holds one trade built through the API: the
seller's dataset, version, listings and card, the licensee's license and training job. Each
route of the application is called by

- one organisation per role (contributor, buyer, researcher, auditor, regulator, and the
  operator), none of which owns the objects the route names,
- the objects' owners (``seller``, ``licensee``),
- no key, a revoked key, an expired key and a disabled user's key (401), and a key holding every
  scope but the route's (403 naming the scope).

``RULES`` says, one line per route, which callers succeed; every other caller must be refused
with a 401/403/404 JSON error. The routes are read from the application itself: a route in no
line fails the test, so a new endpoint cannot slip in unclassified.
"""

from __future__ import annotations

import datetime as dt
import io
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import create_engine, text

from infra.demo import CARD_FACTS
from marketplace.api.deps import required_scope
from marketplace.app import create_app
from marketplace.security import SCOPES
from tests.conftest import Exchange

# The embedded backend is enough: authorization does not depend on the backend.
EMBEDDED = pytest.mark.parametrize("exchange", ["embedded"], indirect=True)

ROLES = ("contributor", "buyer", "researcher", "operator", "auditor", "regulator")
OWNERS = ("seller", "licensee")
EVERYONE = frozenset((*ROLES, *OWNERS))
READERS = frozenset({"operator", "auditor", "regulator"})
PARTIES = frozenset({"licensee", "seller", "operator"})  # a trade's two sides and the exchange
SUPERVISED = frozenset({"licensee", "operator"})  # the owner's, and the operator's to supervise
REFUSED = (401, 403, 404)
TRAINING = {"max_steps": 1, "batch_size": 1, "max_seq_len": 32}

# Routes that answer without an API key, and why.
PUBLIC = {
    ("GET", "/healthz"): "liveness probe",
    ("POST", "/v1/bootstrap"): "guarded by the one-time bootstrap token instead",
    ("GET", "/v1/exchange/signing-key"): "the public key certificates are verified with",
    ("GET", "/.well-known/aidx-certificate-key.pem"): "the same key, at a well-known URL",
    ("GET", "/v1/objects/{key:path}"): "a presigned URL: the signature is the grant",
}


@dataclass
class World:
    """The running exchange, each caller's key, and the ids of the objects routes name."""

    base_url: str
    keys: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    scoped: dict[tuple[str, str], str] = field(default_factory=dict)

    def client(self, caller: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[caller]}"} if caller else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)

    def key_without(self, caller: str, scope: str) -> str:
        """A key of ``caller``'s organisation with every scope but ``scope``."""
        if (caller, scope) not in self.scoped:
            with self.client(caller) as client:
                created = client.post(
                    f"/v1/organizations/{self.ids[caller]}/api-keys",
                    json={"name": f"without {scope}", "scopes": sorted(set(SCOPES) - {scope})},
                )
            assert created.status_code == 201, created.text
            self.scoped[caller, scope] = created.json()["api_key"]
        return self.scoped[caller, scope]


Body = Callable[[World], Any]


@dataclass(frozen=True)
class Rule:
    """Who may call one route: ``allowed`` succeed (2xx/3xx for reads; for writes any answer but
    401/403/404, since a second call may conflict), everyone else is refused."""

    method: str
    path: str
    scope: str | None
    url: str
    allowed: frozenset[str]
    json: Body | None = None
    files: Body | None = None
    headers: Body | None = None
    ok: Callable[[httpx.Response], bool] | None = None

    def request(self, world: World, client: httpx.Client) -> httpx.Response:
        kwargs: dict[str, Any] = {}
        if self.json is not None:
            kwargs["json"] = self.json(world)
        if self.files is not None:
            kwargs["files"] = self.files(world)
        if self.headers is not None:
            kwargs["headers"] = self.headers(world)
        return client.request(self.method, self.url.format(**world.ids), **kwargs)

    def succeeded(self, response: httpx.Response) -> bool:
        if self.ok is not None:
            return self.ok(response)
        if self.method in ("GET", "HEAD"):
            return 200 <= response.status_code < 400
        return response.status_code < 500 and response.status_code not in REFUSED


def rule(
    method: str, path: str, scope: str | None, allowed: frozenset[str] | set[str], **kwargs: Any
) -> Rule:
    url = kwargs.pop("url", path)
    return Rule(method, path, scope, url, frozenset(allowed), **kwargs)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _idempotency(_world: World) -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def _upload(_world: World) -> dict[str, Any]:
    return {"file": ("extra.jsonl", io.BytesIO(b'{"question": "1+1?", "answer": "2"}\n'))}


def _of_a_cancelled_job(response: httpx.Response) -> bool:
    # The job was cancelled before it ran: no validation, weights or model card, and its owner
    # (past every check of who asks) is told that, not "not found".
    return response.status_code == 409 and "is cancelled" in response.text


def _gone_or_removed(response: httpx.Response) -> bool:
    # The lead and the co-owner may both end the co-ownership; whoever comes second finds none.
    return response.status_code == 204 or (
        response.status_code == 404 and "co-owner of dataset" in response.text
    )


def _order(world: World) -> dict[str, Any]:
    verification = {"company": "Probe Co", "use_case": "evaluation", "country": "CN"}
    return {"offer_id": world.ids["offer"], "verification": verification}


# One line per route: method, path (as the app declares it), scope, who succeeds, and the call.
RULES: tuple[Rule, ...] = (
    # Organisations, users, keys.
    rule("POST", "/v1/organizations", "admin", {"operator"},
         json=lambda w: {"name": _unique("org"), "roles": ["buyer"]}),
    rule("GET", "/v1/me", None, EVERYONE),
    rule("GET", "/v1/organizations/{organization_id}", None, {"seller", "operator"},
         url="/v1/organizations/{seller}"),
    rule("POST", "/v1/organizations/{organization_id}/users", "admin", {"seller", "operator"},
         url="/v1/organizations/{seller}/users",
         json=lambda w: {"name": "Ann", "email": f"{_unique('ann')}@example.org"}),
    rule("GET", "/v1/organizations/{organization_id}/users", "admin", {"seller", "operator"},
         url="/v1/organizations/{seller}/users"),
    rule("POST", "/v1/users/{user_id}/disable", "admin", {"seller", "operator"},
         url="/v1/users/{spare_user}/disable"),
    rule("POST", "/v1/organizations/{organization_id}/api-keys", "admin", {"seller", "operator"},
         url="/v1/organizations/{seller}/api-keys", json=lambda w: {"scopes": ["listings:read"]}),
    rule("GET", "/v1/organizations/{organization_id}/api-keys", "admin", {"seller", "operator"},
         url="/v1/organizations/{seller}/api-keys"),
    rule("DELETE", "/v1/api-keys/{key_id}", None, {"seller", "operator"},
         url="/v1/api-keys/{spare_key}"),
    # Datasets, co-owners, uploads, curation, versions, files.
    rule("POST", "/v1/datasets", "datasets:write", {"contributor", "seller"},
         json=lambda w: {"name": _unique("ds"), "license": "mit"}),
    rule("GET", "/v1/datasets", "datasets:read", EVERYONE),
    rule("GET", "/v1/datasets/{dataset_id}", "datasets:read", {"seller", "operator"},
         url="/v1/datasets/{dataset}"),
    rule("GET", "/v1/datasets/{dataset_id}/owners", "datasets:read", {"seller", "operator"},
         url="/v1/datasets/{dataset}/owners"),
    rule("POST", "/v1/datasets/{dataset_id}/owners", "datasets:write", {"seller"},
         url="/v1/datasets/{shared_dataset}/owners",
         json=lambda w: {"organization_id": w.ids["contributor"]}),
    rule("POST", "/v1/datasets/{dataset_id}/owners/{organization_id}/accept", "datasets:write",
         {"contributor"}, url="/v1/datasets/{shared_dataset}/owners/{contributor}/accept"),
    rule("DELETE", "/v1/datasets/{dataset_id}/owners/{organization_id}", "datasets:write",
         {"seller", "contributor"}, url="/v1/datasets/{leaving_dataset}/owners/{contributor}",
         ok=_gone_or_removed),
    rule("POST", "/v1/datasets/{dataset_id}/uploads", "datasets:write", {"seller"},
         url="/v1/datasets/{dataset}/uploads", files=_upload),
    rule("GET", "/v1/datasets/{dataset_id}/uploads", "datasets:read", {"seller", "operator"},
         url="/v1/datasets/{dataset}/uploads"),
    rule("POST", "/v1/datasets/{dataset_id}/curation-runs", "datasets:write", {"seller"},
         url="/v1/datasets/{empty_dataset}/curation-runs", json=lambda w: {}),
    rule("GET", "/v1/curation-runs/{run_id}", "datasets:read", {"seller", "operator"},
         url="/v1/curation-runs/{run}"),
    rule("GET", "/v1/datasets/{dataset_id}/versions", "datasets:read", {"seller", "operator"},
         url="/v1/datasets/{dataset}/versions"),
    rule("GET", "/v1/versions/{version_id}", "datasets:read", EVERYONE,
         url="/v1/versions/{version}"),
    rule("GET", "/v1/versions/{version_id}/download-urls", "datasets:read",
         {"seller", "licensee"}, url="/v1/versions/{version}/download-urls"),
    rule("GET", "/v1/versions/{version_id}/files/{path:path}", "datasets:read",
         {"seller", "licensee"}, url="/v1/versions/{version}/files/{file}"),
    # Dataset cards.
    rule("GET", "/v1/versions/{version_id}/card", "datasets:read", EVERYONE,
         url="/v1/versions/{version}/card"),
    rule("PATCH", "/v1/versions/{version_id}/card", "datasets:write", {"seller", "operator"},
         url="/v1/versions/{version}/card",
         json=lambda w: {"intended_uses": CARD_FACTS["intended_uses"]}),
    rule("GET", "/v1/versions/{version_id}/card/revisions", "datasets:read", EVERYONE,
         url="/v1/versions/{version}/card/revisions"),
    rule("GET", "/v1/versions/{version_id}/card/diff", "datasets:read", EVERYONE,
         url="/v1/versions/{version}/card/diff?from=1&to=2"),
    rule("GET", "/v1/versions/{version_id}/card/lint", "datasets:read", EVERYONE,
         url="/v1/versions/{version}/card/lint"),
    # Listings and the catalog.
    rule("POST", "/v1/listings", "listings:write", {"seller"},
         json=lambda w: {"version_id": w.ids["version"], "title": "again", "price_amount": 1}),
    rule("POST", "/v1/listings/{listing_id}/review", "listings:write", {"operator"},
         url="/v1/listings/{pending_listing}/review", json=lambda w: {"decision": "reject"}),
    rule("POST", "/v1/listings/{listing_id}/delist", "listings:write", {"seller", "operator"},
         url="/v1/listings/{spare_listing}/delist", json=lambda w: {"reason": "withdrawn"}),
    rule("GET", "/v1/listings/{listing_id}", "listings:read", EVERYONE,
         url="/v1/listings/{listing}"),
    rule("GET", "/v1/listings/{listing_id}/preview", "listings:read", EVERYONE,
         url="/v1/listings/{listing}/preview"),
    rule("GET", "/v1/listings/{listing_id}/statistics", "listings:read", EVERYONE,
         url="/v1/listings/{listing}/statistics"),
    rule("GET", "/v1/listings", "listings:read", EVERYONE),
    rule("POST", "/v1/listings/{listing_id}/offers", "listings:write", {"seller"},
         url="/v1/listings/{listing}/offers",
         json=lambda w: {"plan": "one_off", "price_amount": 5}),
    rule("GET", "/v1/listings/{listing_id}/offers", "listings:read", EVERYONE,
         url="/v1/listings/{listing}/offers"),
    rule("GET", "/v1/listings/{listing_id}/offers/{offer_id}", "listings:read", EVERYONE,
         url="/v1/listings/{listing}/offers/{offer}"),
    rule("POST", "/v1/listings/{listing_id}/offers/{offer_id}/withdraw", "listings:write",
         {"seller", "operator"}, url="/v1/listings/{listing}/offers/{spare_offer}/withdraw",
         json=lambda w: {"reason": "replaced"}),
    rule("GET", "/v1/catalog", "listings:read", EVERYONE),
    # Licenses, contracts, certificates, entitlements.
    rule("POST", "/v1/licenses", "licenses:write", {"buyer", "licensee"},
         json=lambda w: {"listing_id": w.ids["listing"]}, headers=_idempotency),
    rule("GET", "/v1/licenses/{license_id}", "licenses:read",
         {"licensee", "seller", *READERS}, url="/v1/licenses/{license}"),
    rule("GET", "/v1/licenses/{license_id}/certificate", "licenses:read",
         {"licensee", "seller", *READERS}, url="/v1/licenses/{license}/certificate"),
    rule("GET", "/v1/licenses/{license_id}/contract", "licenses:read",
         {"licensee", "seller", *READERS}, url="/v1/licenses/{license}/contract"),
    rule("POST", "/v1/certificates/verify", "licenses:read", EVERYONE,
         json=lambda w: {"payload": {}, "signature": "", "key_id": ""}),
    rule("GET", "/v1/entitlements", "licenses:read", EVERYONE),
    rule("POST", "/v1/entitlements/{entitlement_id}/revoke", "licenses:write",
         {"seller", "operator"}, url="/v1/entitlements/{spare_entitlement}/revoke",
         json=lambda w: {"reason": "breach"}),
    rule("POST", "/v1/licenses/{license_id}/renewals", "licenses:write", {"licensee"},
         url="/v1/licenses/{license}/renewals", headers=_idempotency),
    # Orders: verification, the seller's decision, both parties' acceptance, filing.
    rule("POST", "/v1/orders", "licenses:write", {"buyer", "licensee"}, json=_order,
         headers=_idempotency),
    rule("GET", "/v1/orders", "licenses:read", EVERYONE),
    rule("GET", "/v1/orders/{order_id}", "licenses:read", {"licensee", "seller", "operator"},
         url="/v1/orders/{order}"),
    rule("POST", "/v1/orders/{order_id}/decision", "licenses:write", {"seller", "operator"},
         url="/v1/orders/{pending_order}/decision",
         json=lambda w: {"decision": "reject", "reason": "incomplete"}),
    rule("GET", "/v1/orders/{order_id}/contract", "licenses:read",
         {"licensee", "seller", "operator"}, url="/v1/orders/{order}/contract"),
    rule("POST", "/v1/orders/{order_id}/acceptances", "licenses:write", {"licensee", "seller"},
         url="/v1/orders/{order}/acceptances",
         json=lambda w: {"contract_sha256": w.ids["order_contract_sha256"]}),
    rule("POST", "/v1/orders/{order_id}/filing", "licenses:write", PARTIES,
         url="/v1/orders/{order}/filing", headers=_idempotency),
    # Settlement and the audit trail.
    rule("POST", "/v1/ledger/top-ups", "ledger:write", {"operator"}, headers=_idempotency,
         json=lambda w: {"organization_id": w.ids["licensee"], "amount": 1}),
    rule("POST", "/v1/ledger/payouts", "ledger:write", {"operator"}, headers=_idempotency,
         json=lambda w: {"organization_id": w.ids["seller"], "amount": 1}),
    rule("GET", "/v1/organizations/{organization_id}/statement", "ledger:read",
         {"licensee"} | READERS, url="/v1/organizations/{licensee}/statement"),
    rule("GET", "/v1/ledger/trial-balance", "ledger:read", READERS),
    rule("GET", "/v1/audit/verify", "audit:read", READERS),
    rule("GET", "/v1/audit/events", "audit:read", READERS),
    # Human review rounds need Label Studio (tests/integration/test_label_studio_review.py covers
    # them); here the operator's call is refused by nothing but the missing Label Studio.
    rule("POST", "/v1/review-rounds", "listings:write", {"operator"},
         json=lambda w: {"version_id": w.ids["version"], "label_studio_url": "http://127.0.0.1:9",
                         "label_studio_token": "unused", "sample_size": 5}),
    rule("GET", "/v1/review-rounds", "listings:read", {"operator"}),
    rule("GET", "/v1/review-rounds/{round_id}", "listings:read", set(),
         url="/v1/review-rounds/rr_none"),
    rule("POST", "/v1/review-rounds/{round_id}/collect", "listings:write", set(),
         url="/v1/review-rounds/rr_none/collect", json=lambda w: {"label_studio_token": "x"}),
    rule("POST", "/v1/review-rounds/{round_id}/decide", "listings:write", set(),
         url="/v1/review-rounds/rr_none/decide", json=lambda w: {}),
    # Governed training, in the exchange's shape and in OpenAI's.
    rule("POST", "/v1/training-jobs", "training:write", {"licensee"},
         json=lambda w: {"version_id": w.ids["version"], "params": TRAINING}),
    rule("GET", "/v1/training-jobs/{job_id}", "training:read", SUPERVISED,
         url="/v1/training-jobs/{job}"),
    rule("GET", "/v1/training-jobs/{job_id}/events", "training:read", SUPERVISED,
         url="/v1/training-jobs/{job}/events"),
    rule("GET", "/v1/training-jobs/{job_id}/artifacts/{path:path}", "training:read",
         {"licensee"}, url="/v1/training-jobs/{job}/artifacts/model/model.safetensors",
         ok=_of_a_cancelled_job),
    rule("POST", "/v1/training-jobs/{job_id}/cancel", "training:write", SUPERVISED,
         url="/v1/training-jobs/{job}/cancel"),
    rule("POST", "/v1/fine_tuning/jobs", "training:write", {"licensee"},
         json=lambda w: {"model": "aidx-tiny", "training_file": w.ids["version"]}),
    rule("POST", "/v1/training-jobs/{job_id}/pause", "training:write", SUPERVISED,
         url="/v1/training-jobs/{job}/pause"),
    rule("POST", "/v1/training-jobs/{job_id}/resume", "training:write", SUPERVISED,
         url="/v1/training-jobs/{job}/resume"),
    rule("GET", "/v1/training-jobs/{job_id}/checkpoints", "training:read", SUPERVISED,
         url="/v1/training-jobs/{job}/checkpoints"),
    rule("GET", "/v1/training-jobs/{job_id}/validation", "training:read", SUPERVISED,
         url="/v1/training-jobs/{job}/validation", ok=_of_a_cancelled_job),
    rule("GET", "/v1/training-jobs/{job_id}/model-card", "training:read", SUPERVISED,
         url="/v1/training-jobs/{job}/model-card", ok=_of_a_cancelled_job),
    rule("POST", "/v1/model-cards/verify", "training:read", EVERYONE,
         json=lambda w: {"payload": {}, "signature": "", "key_id": ""}),
    rule("GET", "/v1/fine_tuning/jobs", "training:read", EVERYONE),
    rule("POST", "/v1/fine_tuning/jobs/{job_id}/pause", "training:write", SUPERVISED,
         url="/v1/fine_tuning/jobs/{job}/pause"),
    rule("POST", "/v1/fine_tuning/jobs/{job_id}/resume", "training:write", SUPERVISED,
         url="/v1/fine_tuning/jobs/{job}/resume"),
    rule("GET", "/v1/fine_tuning/jobs/{job_id}", "training:read", SUPERVISED,
         url="/v1/fine_tuning/jobs/{job}"),
    rule("POST", "/v1/fine_tuning/jobs/{job_id}/cancel", "training:write", SUPERVISED,
         url="/v1/fine_tuning/jobs/{job}/cancel"),
    rule("GET", "/v1/fine_tuning/jobs/{job_id}/events", "training:read", SUPERVISED,
         url="/v1/fine_tuning/jobs/{job}/events"),
    rule("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints", "training:read", SUPERVISED,
         url="/v1/fine_tuning/jobs/{job}/checkpoints"),
    # The Hugging Face Hub protocol (its own error shape: {"error": message} and headers).
    rule("GET", "/api/datasets/{namespace}/{name}", "datasets:read", EVERYONE,
         url="/api/datasets/{repo}"),
    rule("GET", "/api/datasets/{namespace}/{name}/revision/{revision:path}", "datasets:read",
         EVERYONE, url="/api/datasets/{repo}/revision/main"),
    rule("GET", "/api/datasets/{namespace}/{name}/tree/{revision}", "datasets:read", EVERYONE,
         url="/api/datasets/{repo}/tree/main"),
    rule("GET", "/api/datasets/{namespace}/{name}/tree/{revision}/{path:path}",
         "datasets:read", EVERYONE, url="/api/datasets/{repo}/tree/main/data"),
    rule("POST", "/api/datasets/{namespace}/{name}/paths-info/{revision}", "datasets:read",
         EVERYONE, url="/api/datasets/{repo}/paths-info/main", json=None),
    rule("GET", "/datasets/{namespace}/{name}/resolve/{revision}/{path:path}", "datasets:read",
         {"seller", "licensee"}, url="/datasets/{repo}/resolve/main/{file}"),
    rule("HEAD", "/datasets/{namespace}/{name}/resolve/{revision}/{path:path}", "datasets:read",
         {"seller", "licensee"}, url="/datasets/{repo}/resolve/main/{file}"),
    # Anything else under the Hub's prefixes is an unknown repository, for everyone.
    rule("GET", "/datasets/{rest:path}", "datasets:read", set(), url="/datasets/x"),
    rule("HEAD", "/datasets/{rest:path}", "datasets:read", set(), url="/datasets/x"),
    rule("GET", "/api/datasets/{rest:path}", "datasets:read", set(), url="/api/datasets/x"),
    rule("HEAD", "/api/datasets/{rest:path}", "datasets:read", set(), url="/api/datasets/x"),
    rule("POST", "/api/datasets/{rest:path}", "datasets:read", set(), url="/api/datasets/x"),
)  # fmt: skip


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the application serves, including routers nested in routers."""

    def walk(routes: list[Any]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):  # an included router
                yield from walk(route.original_router.routes)

    return sorted(
        {(method, route.path) for route in walk(app.routes) for method in route.methods}
        - {("OPTIONS", route.path) for route in walk(app.routes)}
    )


# The table ------------------------------------------------------------------------------------


def test_every_route_of_the_application_is_classified_once() -> None:
    served = app_routes(create_app())
    classified = [(line.method, line.path) for line in RULES]
    assert len(classified) == len(set(classified)), "a route has two lines"
    unclassified = sorted(set(served) - set(classified) - set(PUBLIC))
    assert unclassified == [], f"add a line to RULES for each of {unclassified}"
    assert sorted((set(classified) | set(PUBLIC)) - set(served)) == []  # no stale lines
    assert len(served) > 60


@pytest.mark.parametrize("line", RULES, ids=lambda line: f"{line.method} {line.path}")
def test_the_route_table_and_the_scope_table_agree(line: Rule) -> None:
    assert required_scope(line.method, line.path) == line.scope
    assert line.scope is None or line.scope in SCOPES


def test_auditors_and_regulators_write_nothing() -> None:
    for line in RULES:
        if line.method not in ("GET", "HEAD") and not (line.scope or "").endswith(":read"):
            assert not line.allowed & {"auditor", "regulator"}, (line.method, line.path)


# The world the matrix runs in -----------------------------------------------------------------


def _ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200, 201, 202)), response.text
    return response.json()


@pytest.fixture(scope="module")
def world(exchange: Exchange, gsm8k_train: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Every caller and object the matrix needs, made through the API of the running exchange."""
    world = World(exchange.base_url)
    with httpx.Client(base_url=exchange.base_url, timeout=60) as anonymous:
        operator = _ok(
            anonymous.post(
                "/v1/bootstrap",
                json={"organization_name": "Operator"},
                headers={"X-Bootstrap-Token": exchange.bootstrap_token},
            )
        )
    world.keys["operator"], world.ids["operator"] = operator["api_key"]["api_key"], operator["id"]
    organizations = {"seller": ["contributor"], "licensee": ["buyer", "researcher"]}
    organizations |= {role: [role] for role in ROLES if role != "operator"}
    with world.client("operator") as client:
        for caller, roles in organizations.items():
            created = _ok(client.post("/v1/organizations", json={"name": caller, "roles": roles}))
            world.keys[caller], world.ids[caller] = created["api_key"]["api_key"], created["id"]

    sample = tmp_path_factory.mktemp("authz") / "gsm8k_sample.jsonl"
    sample.write_bytes(b"".join(gsm8k_train.read_bytes().splitlines(keepends=True)[:60]))
    with world.client("seller") as seller, world.client("operator") as operator_client:
        _build_seller_objects(world, seller, operator_client, sample)
    with world.client("licensee") as licensee:
        _build_licensee_objects(world, licensee)
    _build_refused_keys(world)
    return world


def _build_seller_objects(
    world: World, seller: httpx.Client, operator: httpx.Client, sample: Path
) -> None:
    ids = world.ids
    dataset = _ok(seller.post("/v1/datasets", json={"name": "gsm8k-sample", "license": "mit"}))
    ids["dataset"], ids["repo"] = dataset["id"], "seller/gsm8k-sample"
    with sample.open("rb") as handle:
        _ok(seller.post(f"/v1/datasets/{dataset['id']}/uploads", files={"file": handle}))
    run = _ok(seller.post(f"/v1/datasets/{dataset['id']}/curation-runs", json={}))
    deadline = time.monotonic() + 300
    while run["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
        run = _ok(seller.get(f"/v1/curation-runs/{run['id']}"))
    assert run["status"] == "succeeded", run
    ids["run"], ids["version"] = run["id"], run["version_id"]
    version = _ok(seller.get(f"/v1/versions/{run['version_id']}"))
    ids["file"] = version["files"][0]["path"]
    _ok(seller.patch(f"/v1/versions/{ids['version']}/card", json=CARD_FACTS))

    listing = {"version_id": ids["version"], "title": "GSM8K sample", "price_amount": 100}
    for name in ("listing", "spare_listing", "pending_listing"):
        ids[name] = _ok(seller.post("/v1/listings", json=listing))["id"]
    for name in ("listing", "spare_listing"):
        _ok(operator.post(f"/v1/listings/{ids[name]}/review", json={"decision": "approve"}))

    # Datasets the contributor probe is invited to co-own (one to accept, one to leave), and one
    # with no uploads, whose curation run the matrix starts (and which fails at once).
    for name in ("shared_dataset", "leaving_dataset", "empty_dataset"):
        ids[name] = _ok(seller.post("/v1/datasets", json={"name": name, "license": "mit"}))["id"]
    for name in ("shared_dataset", "leaving_dataset"):
        invite = {"organization_id": ids["contributor"]}
        _ok(seller.post(f"/v1/datasets/{ids[name]}/owners", json=invite))
    with world.client("contributor") as contributor:
        _ok(
            contributor.post(
                f"/v1/datasets/{ids['leaving_dataset']}/owners/{ids['contributor']}/accept"
            )
        )

    user = {"name": "Spare", "email": "spare@example.org", "roles": ["contributor"]}
    ids["spare_user"] = _ok(seller.post(f"/v1/organizations/{ids['seller']}/users", json=user))[
        "id"
    ]
    key = _ok(seller.post(f"/v1/organizations/{ids['seller']}/api-keys", json={"name": "spare"}))
    ids["spare_key"] = key["id"]


def _build_licensee_objects(world: World, licensee: httpx.Client) -> None:
    ids = world.ids
    with world.client("operator") as operator:
        _ok(
            operator.post(
                "/v1/ledger/top-ups",
                json={"organization_id": ids["licensee"], "amount": 1_000_000},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
        )
    license_ = _ok(
        licensee.post(
            "/v1/licenses",
            json={"listing_id": ids["listing"]},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
    )
    ids["license"] = license_["id"]
    spare = licensee.post(
        "/v1/licenses",
        json={"listing_id": ids["spare_listing"]},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    ids["spare_entitlement"] = _ok(spare)["entitlement"]["id"]
    offers = _ok(licensee.get(f"/v1/listings/{ids['listing']}/offers"))["data"]
    ids["offer"] = offers[0]["id"]  # the default offer: orders under it await acceptance at once
    with world.client("seller") as seller:
        for name, approval in (("spare_offer", "automatic"), ("manual_offer", "manual")):
            offer = {"plan": "one_off", "price_amount": 7, "approval": approval}
            created = seller.post(f"/v1/listings/{ids['listing']}/offers", json=offer)
            ids[name] = _ok(created)["id"]
    for name, offer in (("order", ids["offer"]), ("pending_order", ids["manual_offer"])):
        body = _order(world) | {"offer_id": offer}
        ids[name] = _ok(licensee.post("/v1/orders", json=body, headers=_idempotency(world)))["id"]
    contract = _ok(licensee.get(f"/v1/orders/{ids['order']}/contract"))
    ids["order_contract_sha256"] = contract["sha256"]
    job = _ok(
        licensee.post("/v1/training-jobs", json={"version_id": ids["version"], "params": TRAINING})
    )
    ids["job"] = job["id"]
    _ok(licensee.post(f"/v1/training-jobs/{job['id']}/cancel"))  # the matrix needs no weights


def _build_refused_keys(world: World) -> None:
    """Keys of the seller that must be refused: revoked, expired, of a disabled user."""
    seller = world.ids["seller"]
    with world.client("seller") as client:
        revoked = _ok(client.post(f"/v1/organizations/{seller}/api-keys", json={"name": "old"}))
        _ok(client.delete(f"/v1/api-keys/{revoked['id']}"))
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
        expiring = {"name": "brief", "expires_at": soon.isoformat()}
        expired = _ok(client.post(f"/v1/organizations/{seller}/api-keys", json=expiring))
        user = {"name": "Gone", "email": "gone@example.org", "roles": ["contributor"]}
        gone = _ok(client.post(f"/v1/organizations/{seller}/users", json=user))
        gone_key = _ok(
            client.post(
                f"/v1/organizations/{seller}/api-keys",
                json={"name": "gone", "user_id": gone["id"], "scopes": ["datasets:read"]},
            )
        )
        _ok(client.post(f"/v1/users/{gone['id']}/disable"))
    world.keys |= {
        "revoked": revoked["api_key"],
        "expired": expired["api_key"],
        "disabled": gone_key["api_key"],
    }
    time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds() + 0.1))


# The matrix -----------------------------------------------------------------------------------


def _is_json_error(response: httpx.Response) -> bool:
    if response.request.method == "HEAD":  # no body: the Hub's error header says why
        return bool(response.headers.get("X-Error-Message"))
    try:
        return "error" in response.json()
    except ValueError:
        return False


def _describe(caller: str, response: httpx.Response) -> str:
    return f"{caller}: {response.status_code} {response.text[:160]}"


@EMBEDDED
@pytest.mark.parametrize("line", RULES, ids=lambda line: f"{line.method} {line.path}")
def test_each_role_gets_exactly_the_access_the_table_gives(world: World, line: Rule) -> None:
    wrong = []
    for caller in (*ROLES, *OWNERS):
        with world.client(caller) as client:
            response = line.request(world, client)
        if caller in line.allowed:
            if not line.succeeded(response):
                wrong.append("should succeed, " + _describe(caller, response))
        elif response.status_code not in REFUSED or not _is_json_error(response):
            wrong.append("should be refused, " + _describe(caller, response))
    assert wrong == [], f"{line.method} {line.path}\n" + "\n".join(wrong)


@EMBEDDED
@pytest.mark.parametrize("line", RULES, ids=lambda line: f"{line.method} {line.path}")
def test_no_revoked_expired_or_disabled_key_gets_in(world: World, line: Rule) -> None:
    wrong = []
    for caller in (None, "revoked", "expired", "disabled"):
        with world.client(caller) as client:
            response = line.request(world, client)
        if response.status_code != 401 or not _is_json_error(response):
            wrong.append(_describe(str(caller), response))
        elif caller is not None and line.method != "HEAD" and line.path.startswith("/v1/"):
            assert response.json()["error"]["code"] == "unauthenticated"
    assert wrong == [], f"{line.method} {line.path} must answer 401\n" + "\n".join(wrong)


@EMBEDDED
@pytest.mark.parametrize(
    "line", [line for line in RULES if line.scope], ids=lambda line: f"{line.method} {line.path}"
)
def test_a_key_without_the_routes_scope_gets_403_naming_it(world: World, line: Rule) -> None:
    assert line.scope is not None
    caller = min(line.allowed & set(OWNERS), default=None) or min(line.allowed, default="seller")
    with httpx.Client(
        base_url=world.base_url,
        headers={"Authorization": f"Bearer {world.key_without(caller, line.scope)}"},
        timeout=60,
    ) as client:
        response = line.request(world, client)
    assert response.status_code == 403, response.text
    if line.method != "HEAD":
        assert line.scope in response.text


def test_unknown_routes_need_a_key_with_every_scope() -> None:
    assert required_scope("POST", "/v1/not-yet-classified") == "*"


# Users and keys ---------------------------------------------------------------------------------


@EMBEDDED
def test_a_users_key_acts_with_the_users_roles_and_the_keys_scopes_only(world: World) -> None:
    licensee = world.ids["licensee"]
    with world.client("licensee") as admin:
        user = {"name": "Rae", "email": "rae@example.org", "roles": ["researcher"]}
        rae = _ok(admin.post(f"/v1/organizations/{licensee}/users", json=user))
        wide = {"user_id": rae["id"], "scopes": ["training:read", "admin"]}
        refused = admin.post(f"/v1/organizations/{licensee}/api-keys", json=wide)
        assert refused.status_code == 422 and "admin" in refused.json()["error"]["message"]
        narrow = {"user_id": rae["id"], "scopes": ["licenses:write", "training:read"]}
        key = _ok(admin.post(f"/v1/organizations/{licensee}/api-keys", json=narrow))
    with httpx.Client(
        base_url=world.base_url, headers={"Authorization": f"Bearer {key['api_key']}"}
    ) as rae_client:
        me = _ok(rae_client.get("/v1/me"))
        assert (me["user_id"], me["roles"], me["is_admin"]) == (rae["id"], ["researcher"], False)
        assert me["scopes"] == ["licenses:write", "training:read"]
        # The organisation is a buyer, but this user is not: the license is refused by role.
        bought = rae_client.post(
            "/v1/licenses",
            json={"listing_id": world.ids["listing"]},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert bought.status_code == 403 and "buyer" in bought.json()["error"]["message"]
        # A key never issues a key wider than itself, nor may a non-admin issue keys at all.
        issued = rae_client.post(
            f"/v1/organizations/{licensee}/api-keys", json={"scopes": ["ledger:read"]}
        )
        assert issued.status_code == 403 and "admin" in issued.json()["error"]["message"]


@EMBEDDED
def test_listed_keys_show_prefix_scopes_and_last_use_but_never_the_secret(world: World) -> None:
    seller = world.ids["seller"]
    with world.client("seller") as client:
        created = _ok(
            client.post(
                f"/v1/organizations/{seller}/api-keys",
                json={"name": "reader", "scopes": ["datasets:read"]},
            )
        )
        assert created["last_used_at"] is None
        with httpx.Client(
            base_url=world.base_url, headers={"Authorization": f"Bearer {created['api_key']}"}
        ) as reader:
            _ok(reader.get("/v1/datasets"))
        listing = client.get(f"/v1/organizations/{seller}/api-keys")
    keys = {key["id"]: key for key in _ok(listing)}
    shown = keys[created["id"]]
    assert shown["prefix"] == created["prefix"] and shown["scopes"] == ["datasets:read"]
    assert shown["last_used_at"] is not None
    assert "api_key" not in shown and created["api_key"] not in listing.text
    assert all(key["revoked_at"] is not None for key in keys.values() if key["name"] == "old")


@EMBEDDED
def test_user_and_key_changes_are_in_the_audit_trail(world: World, exchange: Exchange) -> None:
    engine = create_engine(exchange.settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            actions = set(
                connection.execute(text("SELECT action FROM audit_events")).scalars().all()
            )
    finally:
        engine.dispose()
    assert {"user.created", "user.disabled", "api_key.created", "api_key.revoked"} <= actions
    with world.client("auditor") as auditor:
        assert _ok(auditor.get("/v1/audit/verify"))["intact"] is True
