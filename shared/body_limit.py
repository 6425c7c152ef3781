"""One cap on request bodies, enforced while they are read: before parsing, before the API key
is checked and before a webhook's signature is computed, so an anonymous client cannot make a
service buffer more than the cap. A few routes may have a cap of their own (outreach's inbound
email webhooks: a reply with its attachments), named by exact path; every other route keeps the
service's."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import error_body


def too_large_message(limit: int, declared: int | None = None) -> str:
    said = f" (Content-Length: {declared})" if declared is not None else ""
    return (
        f"the request body is larger than this service accepts{said}: at most {limit} bytes; "
        "send less (e.g. split an import into several files)"
    )


class BodyTooLarge(HTTPException):
    """Raised from `receive`: FastAPI lets an HTTPException out of its body parsing (any other
    error there becomes a 400), and the service's handler renders it in the JSON error shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def too_large_response(limit: int, declared: int | None = None) -> JSONResponse:
    return JSONResponse(
        error_body("payload_too_large", too_large_message(limit, declared), []),
        status_code=413,
        headers={"connection": "close"},
    )


def bad_length_response() -> JSONResponse:
    message = "the Content-Length header must be a whole number of bytes (digits only)"
    return JSONResponse(
        error_body("invalid_content_length", message, []),
        status_code=400,
        headers={"connection": "close"},
    )


class BodyLimit:
    """Pure ASGI (no BaseHTTPMiddleware: that would buffer). A declared Content-Length above the
    limit is refused without reading a byte; a body without one (chunked) is cut as soon as what
    was read passes the limit."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, routes: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.routes = dict(routes or {})  # path -> that route's own cap

    def limit_for(self, scope: Scope) -> int:
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", ""))
        if root and path.startswith(root):  # a path under a proxy's prefix: the app's own path
            path = path[len(root) :]
        return self.routes.get(path, self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        for name, value in scope["headers"]:
            if name == b"content-length":
                # digits only: int() would also take "-1", " 1", "1_000" and "+5"
                if not value.isdigit():
                    await bad_length_response()(scope, receive, send)
                    return
                declared = int(value)
                if declared > limit:
                    await too_large_response(limit, declared)(scope, receive, send)
                    return
        read = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # read outside any route's handlers (e.g. a middleware): answer here if still possible
            if started:
                raise
            await too_large_response(limit)(scope, receive, send)
