"""A small HTTP client of the exchange's API, used by the demo and the end-to-end tests."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import httpx


class ApiError(Exception):
    """A 4xx or 5xx answer; ``code`` and ``message`` come from the JSON error body."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message


class AidxClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AidxClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            error = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", response.text
        raise ApiError(response.status_code, code, message)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        self._raise_for(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    # Organisations -----------------------------------------------------------------------

    def bootstrap(self, token: str, organization_name: str) -> dict[str, Any]:
        return dict(
            self.request(
                "POST",
                "/v1/bootstrap",
                json={"organization_name": organization_name},
                headers={"X-Bootstrap-Token": token},
            )
        )

    def create_organization(self, name: str, roles: list[str]) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/organizations", json={"name": name, "roles": roles}))

    def create_user(
        self,
        organization_id: str,
        *,
        name: str,
        email: str,
        roles: list[str],
        is_admin: bool = False,
    ) -> dict[str, Any]:
        body = {"name": name, "email": email, "roles": roles, "is_admin": is_admin}
        return dict(self.request("POST", f"/v1/organizations/{organization_id}/users", json=body))

    def create_api_key(
        self,
        organization_id: str,
        *,
        name: str = "default",
        scopes: list[str] | None = None,
        user_id: str | None = None,
        expires_at: str | None = None,
    ) -> dict[str, Any]:
        """Issue a key (scoped, optionally for a user, optionally expiring); ``api_key`` is the
        secret, shown only in this answer."""
        body: dict[str, Any] = {"name": name}
        for field, value in (("scopes", scopes), ("user_id", user_id), ("expires_at", expires_at)):
            if value is not None:
                body[field] = value
        path = f"/v1/organizations/{organization_id}/api-keys"
        return dict(self.request("POST", path, json=body))

    def revoke_api_key(self, key_id: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/v1/api-keys/{key_id}"))

    # Datasets ------------------------------------------------------------------------------

    def create_dataset(self, **fields: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/datasets", json=fields))

    def upload(self, dataset_id: str, path: Path, filename: str | None = None) -> dict[str, Any]:
        with path.open("rb") as handle:
            return dict(
                self.request(
                    "POST",
                    f"/v1/datasets/{dataset_id}/uploads",
                    files={"file": (filename or path.name, handle)},
                )
            )

    def start_curation(self, dataset_id: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/datasets/{dataset_id}/curation-runs", json=fields))

    def wait_for(
        self, path: str, *, done: tuple[str, ...], timeout: float = 300.0, interval: float = 0.2
    ) -> dict[str, Any]:
        """Poll ``path`` until its ``status`` is one of ``done``."""
        deadline = time.monotonic() + timeout
        while True:
            body = dict(self.request("GET", path))
            if body["status"] in done:
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} still {body['status']} after {timeout:.0f} s")
            time.sleep(interval)

    def version(self, version_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/versions/{version_id}"))

    def card(self, version_id: str, format: str = "readme") -> str:
        """The card as text: a README, croissant.json, card JSON or the product page."""
        response = self.http.get(f"/v1/versions/{version_id}/card", params={"format": format})
        self._raise_for(response)
        return response.text

    def update_card(self, version_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Fill in card fields a machine cannot know; returns the revision and the lint."""
        return dict(self.request("PATCH", f"/v1/versions/{version_id}/card", json=changes))

    def download(self, version_id: str, path: str, destination: Path) -> str:
        """Stream a version file to ``destination``; returns its SHA-256."""
        digest = hashlib.sha256()
        destination.parent.mkdir(parents=True, exist_ok=True)
        with (
            self.http.stream("GET", f"/v1/versions/{version_id}/files/{path}") as response,
            destination.open("wb") as handle,
        ):
            if response.status_code >= 400:
                response.read()
                self._raise_for(response)
            for chunk in response.iter_bytes():
                digest.update(chunk)
                handle.write(chunk)
        return digest.hexdigest()

    # Listings and licenses -----------------------------------------------------------------

    def submit_listing(self, **fields: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/listings", json=fields))

    def review_listing(self, listing_id: str, decision: str, notes: str = "") -> dict[str, Any]:
        return dict(
            self.request(
                "POST",
                f"/v1/listings/{listing_id}/review",
                json={"decision": decision, "notes": notes},
            )
        )

    def catalog(self, q: str | None = None) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/catalog", params={"q": q} if q else None))

    def license(
        self,
        listing_id: str,
        *,
        idempotency_key: str | None = None,
        uses: list[str] | None = None,
        offer_id: str | None = None,
    ) -> dict[str, Any]:
        """The one-step purchase under a public, automatically approved offer."""
        body: dict[str, Any] = {"listing_id": listing_id}
        if uses is not None:
            body["uses"] = uses
        if offer_id is not None:
            body["offer_id"] = offer_id
        key = idempotency_key or uuid.uuid4().hex
        return dict(
            self.request("POST", "/v1/licenses", json=body, headers={"Idempotency-Key": key})
        )

    # Offers and orders ---------------------------------------------------------------------

    def create_offer(self, listing_id: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("POST", f"/v1/listings/{listing_id}/offers", json=fields))

    def offers(self, listing_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/v1/listings/{listing_id}/offers")["data"])

    def withdraw_offer(self, listing_id: str, offer_id: str, reason: str) -> dict[str, Any]:
        path = f"/v1/listings/{listing_id}/offers/{offer_id}/withdraw"
        return dict(self.request("POST", path, json={"reason": reason}))

    def place_order(
        self,
        offer_id: str,
        verification: dict[str, str],
        *,
        uses: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """An access request with the verification form (company, use_case, country)."""
        body: dict[str, Any] = {"offer_id": offer_id, "verification": verification}
        if uses is not None:
            body["uses"] = uses
        key = idempotency_key or uuid.uuid4().hex
        return dict(self.request("POST", "/v1/orders", json=body, headers={"Idempotency-Key": key}))

    def decide_order(self, order_id: str, decision: str, reason: str) -> dict[str, Any]:
        body = {"decision": decision, "reason": reason}
        return dict(self.request("POST", f"/v1/orders/{order_id}/decision", json=body))

    def order_contract(self, order_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/orders/{order_id}/contract"))

    def accept_contract(self, order_id: str, contract_sha256: str) -> dict[str, Any]:
        body = {"contract_sha256": contract_sha256}
        return dict(self.request("POST", f"/v1/orders/{order_id}/acceptances", json=body))

    def file_order(self, order_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Ask the exchange to file the accepted contract and settle it."""
        key = idempotency_key or uuid.uuid4().hex
        return dict(
            self.request("POST", f"/v1/orders/{order_id}/filing", headers={"Idempotency-Key": key})
        )

    def renew(self, license_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        key = idempotency_key or uuid.uuid4().hex
        return dict(
            self.request(
                "POST", f"/v1/licenses/{license_id}/renewals", headers={"Idempotency-Key": key}
            )
        )

    def revoke_entitlement(self, entitlement_id: str, reason: str) -> dict[str, Any]:
        path = f"/v1/entitlements/{entitlement_id}/revoke"
        return dict(self.request("POST", path, json={"reason": reason}))

    def certificate(self, license_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/licenses/{license_id}/certificate"))

    def signing_key(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/exchange/signing-key"))

    # Training ------------------------------------------------------------------------------

    def submit_training_job(self, version_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return dict(
            self.request(
                "POST", "/v1/training-jobs", json={"version_id": version_id, "params": params}
            )
        )

    def training_events(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        body = self.request("GET", f"/v1/training-jobs/{job_id}/events", params={"after": after})
        return list(body["data"])
