"""Errors as RFC 9457 problem details (``application/problem+json``), one shape for every
error the API returns: ``type``, ``title``, ``status``, ``detail``, ``instance``, and where
relevant ``violations`` (every broken rule), ``supported`` (content types) or ``checks``."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://weir.dev/problems/"

TITLES = {
    400: "Unparseable body",
    401: "Missing or wrong API key",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Body too large",
    415: "Unsupported content type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class ProblemError(Exception):
    """Raised by handlers; rendered as problem details."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail
        self.headers = headers or {}
        self.extra = extra


def problem(status: int, kind: str, detail: str, path: str, **extra: Any) -> dict[str, Any]:
    """The problem document."""
    return {
        "type": TYPE_BASE + kind,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": path,
        **extra,
    }


def problem_response(
    request: Request,
    status: int,
    kind: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = problem(status, kind, detail, request.url.path, **extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


#: The OpenAPI schema of a problem document.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "violations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "record_index": {"type": "integer"},
                    "field": {"type": ["string", "null"]},
                    "rule": {"type": "string"},
                    "value": {"type": ["string", "null"]},
                    "message": {"type": "string"},
                },
            },
        },
        "violations_total": {"type": "integer"},
        "supported": {"type": "array", "items": {"type": "string"}},
        "checks": {"type": "object"},
    },
}
