"""What the workers' web server answers a request it cannot parse: the status alone.

aiohttp answers a request line over 8,190 bytes, or one that is not HTTP, with its parser's
message, which quotes the start of the line: `GET /fhir/DocumentReference?patient.identifier=
<certno>&…` had the certno sent back, before any view or the operator gate ran (DOMAIN.md
§7)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp.web_protocol import RequestHandler

_original = RequestHandler.handle_error


def _status_only(self: RequestHandler, request: Any, status: int = 500,
                 exc: BaseException | None = None, message: str | None = None) -> Any:
    if status != HTTPStatus.INTERNAL_SERVER_ERROR:  # aiohttp's 500 says nothing of the request
        message = f"{status} {HTTPStatus(status).phrase}"
    return _original(self, request, status, exc, message)


def answer_unparsed_requests_by_status() -> None:
    RequestHandler.handle_error = _status_only  # type: ignore[method-assign]
