"""Request ids: every request has one, kept from its `X-Request-ID` header when that is a
sensible value (a proxy or the client chose it), else a new one; it is bound for the request's
log lines (and the tasks it publishes, core.logging) and echoed in the response's header."""

from __future__ import annotations

import uuid

import structlog

from .logging import REQUEST_ID_MAX_LENGTH

HEADER = "X-Request-ID"
_ASGI_HEADER = HEADER.lower().encode("latin-1")


def request_id_from(value: str | None) -> str:
    """`value` when it is 1-200 printable ASCII characters, else a new uuid4 hex: an id goes
    into every log line and back into a response header, so nothing else is kept."""
    if value and len(value) <= REQUEST_ID_MAX_LENGTH and value.isascii() and value.isprintable():
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """First in MIDDLEWARE: the request's id is bound while every other middleware and the
    view run, and set on whatever response comes back (errors included). It stays bound
    until the response is closed (`clear_request_context`), so Django's own line about a 4xx
    or 5xx answer, written after the middleware returned, and the server's access log line
    carry it too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.headers.get(HEADER))
        request.request_id = request_id
        # A thread serves one request after another: nothing of the last one is carried on.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


def clear_request_context(**_signal) -> None:
    """Django's request_finished (the response was sent and closed): the request's id is
    not carried into what the thread does next."""
    structlog.contextvars.clear_contextvars()


def asgi_request_id(app):
    """The same for a plain ASGI app (the inbox stream, which Django's middleware never sees):
    its coroutine, and the tasks it starts, log with the request's id."""

    async def with_request_id(scope, receive, send):
        raw = next((value for name, value in scope["headers"] if name == _ASGI_HEADER), None)
        request_id = request_id_from(raw.decode("latin-1") if raw is not None else None)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        echoed = (_ASGI_HEADER, request_id.encode("latin-1"))

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        await app(scope, receive, send_with_id)

    return with_request_id
