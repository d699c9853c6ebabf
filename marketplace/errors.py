"""Errors of the marketplace, each mapped to one HTTP status by the API.

MarketplaceError
 ├── AuthenticationError      401: no, malformed, unknown or revoked API key
 ├── PermissionDeniedError    403: the caller's organisation or role may not do this
 ├── NotFoundError            404: no such object, or it belongs to another organisation
 ├── ConflictError            409: the object's state forbids the change, or a duplicate
 └── InvalidRequestError      422: the request is well-formed but its content is wrong
"""

from __future__ import annotations


class MarketplaceError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthenticationError(MarketplaceError):
    status_code = 401
    code = "unauthenticated"


class PermissionDeniedError(MarketplaceError):
    status_code = 403
    code = "permission_denied"


class NotFoundError(MarketplaceError):
    status_code = 404
    code = "not_found"

    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"{kind} {object_id!r} not found")
        self.kind = kind
        self.object_id = object_id


class ConflictError(MarketplaceError):
    status_code = 409
    code = "conflict"


class InvalidRequestError(MarketplaceError):
    status_code = 422
    code = "invalid_request"
