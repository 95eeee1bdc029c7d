"""``ApiError``: an API error that carries the ``Status`` object a real API server would send."""

from __future__ import annotations

from typing import Any

from exporter.sim.resources import ResourceType

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An error answered with a ``Status`` body: ``status`` (HTTP code), ``reason``, ``message``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason if reason is not None else _REASONS.get(status, "Unknown")
        self.message = message
        self.details = details
        self.headers = headers or {}

    def to_status(self) -> dict[str, Any]:
        """The ``Status`` object of this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.status
        return body

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.reason}, {self.message!r})"


def _details(rt: ResourceType, name: str, *, kind: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if rt.group:
        out["group"] = rt.group
    out["kind"] = kind or rt.plural
    return out


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, f'{rt.qualified} "{name}" not found', details=_details(rt, name))


def no_route() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", details={})


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, f'{rt.qualified} "{name}" already exists', reason="AlreadyExists",
        details=_details(rt, name),
    )


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(
        409, f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
        reason="Conflict", details=_details(rt, name),
    )


MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid(rt: ResourceType, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 Invalid; each cause is ``{"reason", "message", "field"}`` with a full message."""
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = _details(rt, name, kind=rt.kind)
    details["causes"] = causes
    return ApiError(422, f'{rt.qualified_kind} "{name}" is invalid: {summary}', details=details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def expired(message: str) -> ApiError:
    return ApiError(410, message, reason="Expired")


def unsupported_media(accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def invalid_list_options(field: str, value: str, message: str) -> ApiError:
    """422 for a ListOptions that the server refuses (e.g. resourceVersionMatch without RV)."""
    return ApiError(
        422,
        f'ListOptions.meta.k8s.io "" is invalid: {field}: Forbidden: {message}'
        if "forbidden" in message else
        f'ListOptions.meta.k8s.io "" is invalid: {field}: {message}',
        details={"group": "meta.k8s.io", "kind": "ListOptions",
                 "causes": [{"reason": "FieldValueForbidden", "message": message,
                             "field": field}]},
    )


def invalid_patch_options(field: str, message: str) -> ApiError:
    """422 for PatchOptions the server refuses (an apply without fieldManager, ``force`` on
    another patch type)."""
    reason = "FieldValueRequired" if message.startswith("Required") else (
        "FieldValueForbidden" if message.startswith("Forbidden") else "FieldValueInvalid")
    return ApiError(
        422, f'PatchOptions.meta.k8s.io "" is invalid: {field}: {message}',
        details={"group": "meta.k8s.io", "kind": "PatchOptions",
                 "causes": [{"reason": reason, "message": message, "field": field}]},
    )
