"""One error type, rendered by one handler as {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

# what a 503 asks the client to wait before retrying (seconds): what was away (Temporal, a
# service) is usually back by then
RETRY_AFTER = "5"


class AppError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        # seconds until a retry can succeed (Retry-After), when the refusal ends on its own
        self.retry_after = retry_after


def not_found(what: str, ident: object) -> AppError:
    return AppError(404, f"{what}_not_found", f"{what} {ident} does not exist")


def conflict(code: str, message: str, details: list[dict[str, Any]] | None = None) -> AppError:
    return AppError(409, code, message, details)


def invalid(field: str, problem: str) -> AppError:
    return AppError(
        422, "validation_error", f"{field}: {problem}", [{"field": field, "problem": problem}]
    )


def error_body(code: str, message: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _field_name(loc: tuple[Any, ...]) -> str:
    # ("body", "steps", 0, "channel") -> "steps[0].channel"; the "body"/"query" root is noise.
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or str(loc[0] if loc else "request")


def _problem(err: Any) -> str:
    if err.get("type") == "extra_forbidden":  # shared/requests.py: a misspelt key is not ignored
        return "unknown field: this request has no such field (check its spelling)"
    return str(err["msg"])


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        headers = {"Retry-After": RETRY_AFTER} if exc.status == 503 else None
        if exc.retry_after is not None:
            headers = {"Retry-After": str(max(1, exc.retry_after))}
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": _field_name(tuple(err["loc"])), "problem": _problem(err)}
            for err in exc.errors()
        ]
        message = "; ".join(f"{d['field']}: {d['problem']}" for d in details)
        return JSONResponse(error_body("validation_error", message, details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }
        return JSONResponse(
            error_body(code.get(exc.status_code, "http_error"), str(exc.detail), []),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
