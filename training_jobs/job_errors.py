"""Refusals of a job request: a marketplace error plus a stable code and the parameter at fault.

They are `marketplace.errors` classes (so the API maps them to 4xx like any other) that also
carry ``param``, the request field at fault, which the OpenAI-shaped routes return::

    JobRequestError   422  a parameter is out of range, unknown or malformed
    JobRefusedError   403  the governance gate refuses (no entitlement, quota, territory)
    JobStateError     409  the job's state forbids the action (resume a running job, ...)
"""

from __future__ import annotations

from marketplace.errors import ConflictError, InvalidRequestError, PermissionDeniedError


class JobRequestError(InvalidRequestError):
    def __init__(self, message: str, *, param: str | None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class JobRefusedError(PermissionDeniedError):
    def __init__(self, message: str, *, param: str | None, code: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class JobStateError(ConflictError):
    def __init__(self, message: str, *, code: str = "invalid_state") -> None:
        super().__init__(message)
        self.param = None
        self.code = code
