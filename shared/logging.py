"""Process logging: one format for every closeflow process, and no chatter.

`make run` shows one line per meaningful event. Some libraries log at INFO what nobody acts on:
alembic its plugin set-up and its dialect guesses before every migration, aiosmtpd (the dev
mailbox) five lines per connection (every readiness probe), uvicorn one access line per health
probe and scrape (Kubernetes and Prometheus poll every few seconds). Those records are dropped;
their warnings and errors still pass.

Access lines never carry a query string or a token: uvicorn logs the whole request target, and
query strings and some paths hold secrets (the public referral and unsubscribe links are
bearer tokens). RedactAccessPath logs the path alone, with token segments masked, at every level.

JSON lines (issue 12; CLOSEFLOW_LOG_FORMAT, the default in production): one object per event,
`{"ts", "level", "logger", "message", "trace_id", "request_id"}` (and `exception` with the
traceback), so a log line leads to its trace and to the request that caused it. The request id
is the caller's `X-Request-ID` when it is a plain token of up to 64 characters, else a new one;
every response carries it back. What a line says is what the message says: the redactions above
apply, and the messages hold ids, never addresses, names or keys. The engines hide a
statement's parameters (shared.db); the row values PostgreSQL itself quotes in an error's DETAIL
line ("Key (email)=(...) already exists", "Failing row contains (...)"), and the email addresses
(but their domain) and E.164 phone numbers other code quotes (the SDK's traceback of a failed
activity holding an SMTP server's "<ada@example.com>: mailbox full") are masked in every line
and traceback, in both formats.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from datetime import UTC, datetime
from types import TracebackType

from opentelemetry import trace
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# probed every few seconds by orchestrators and Prometheus (issue 12: readiness, metrics)
PROBE_PATHS = ("/healthz", "/readyz", "/metrics")

# Loggers whose INFO lines are all set-up or connection chatter: warnings and up only.
QUIET_LOGGERS = ("alembic.runtime.plugins", "mail.log")
# Loggers that mix chatter with news: the INFO messages starting so are dropped.
CHATTER_PREFIXES = {
    "alembic.runtime.migration": ("Context impl ", "Will assume "),
}


# Routes whose next path segment is a bearer token (/r/, /unsubscribe/ and /book/{token}).
TOKEN_ROUTES = ("r", "unsubscribe", "book")
MASK = "***"


def redacted_path(target: str) -> str:
    """The request target without its query string or fragment, token segments masked."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    segments = path.split("/")
    for i in range(1, len(segments) - 1):
        if segments[i] in TOKEN_ROUTES and segments[i + 1]:
            segments[i + 1] = MASK
    return "/".join(segments)


class RedactAccessPath(logging.Filter):
    """On uvicorn.access: rewrites the record's path argument (see DropInfo for the layout)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3:
            record.args = (*args[:2], redacted_path(str(args[2])), *args[3:])
        return True


def redact_access_log() -> None:
    """Install RedactAccessPath on uvicorn's access logger; idempotent."""
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactAccessPath) for f in logger.filters):
        logger.addFilter(RedactAccessPath())


class DropInfo(logging.Filter):
    """Drops INFO (and lower) records starting with one of `prefixes` or, with `health_probes`,
    uvicorn's access lines for the health check."""

    def __init__(self, *prefixes: str, health_probes: bool = False) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.health_probes = health_probes

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        return not self.is_chatter(record)

    def is_chatter(self, record: logging.LogRecord) -> bool:
        if self.prefixes and str(record.msg).startswith(self.prefixes):
            return True
        # uvicorn.access: args are (client, method, path, http version, status)
        args = record.args
        return (
            self.health_probes
            and isinstance(args, tuple)
            and len(args) >= 3
            and str(args[2]).split("?", 1)[0] in PROBE_PATHS
        )


def quiet_chatter() -> None:
    """Install the levels and filters above; idempotent."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    wanted = {name: DropInfo(*prefixes) for name, prefixes in CHATTER_PREFIXES.items()}
    wanted["uvicorn.access"] = DropInfo(health_probes=True)
    for name, drop in wanted.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropInfo) for f in logger.filters):
            logger.addFilter(drop)


# --- request ids and JSON lines (issue 12) ------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class RequestIds:
    """ASGI middleware: each HTTP request gets an id (the caller's X-Request-ID if it is a plain
    token, else a new one), set for every log line of the request and sent back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.lower().encode(), b"")
        value = given.decode("latin-1")
        rid = value if _SAFE_ID.match(value) else uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


# PostgreSQL's error details quote the row's values ("Key (email)=(ada@...) already exists",
# "Failing row contains (...)"): the engines hide a statement's parameters, the server's DETAIL
# line comes with the driver's message all the same
PG_KEY_VALUES = re.compile(
    r"(Key \((?:[^()]|\([^()]*\))*\)=\().*?(\) (?:already exists|is not present|conflicts))"
)
PG_FAILING_ROW = re.compile(r"(Failing row contains \().*(\)\.)")


def without_row_values(text: str) -> str:
    """`text` (a traceback) with the values PostgreSQL quotes from a row masked."""
    text = PG_KEY_VALUES.sub(rf"\g<1>{MASK}\g<2>", text)
    return PG_FAILING_ROW.sub(rf"\g<1>{MASK}\g<2>", text)


# What other code's lines quote of a person: the SDK logs each failed activity attempt with its
# traceback, and an SMTP server's refusal names the recipient ("450 <ada@example.com>: mailbox
# full"), Twilio's errors the number. An address keeps its domain (which provider refused is
# worth knowing), a number nothing.
EMAIL_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
PHONE_NUMBER = re.compile(r"\+[1-9][0-9]{6,14}\b")


def without_personal_data(text: str) -> str:
    """`text` (a line, a traceback) without row values, email addresses or phone numbers."""
    text = without_row_values(text)
    text = EMAIL_ADDRESS.sub(rf"{MASK}@\g<1>", text)
    return PHONE_NUMBER.sub(f"+{MASK}", text)


class Redacting(logging.Formatter):
    """Lines and tracebacks without the row values a database error quotes, addresses or
    phone numbers."""

    def formatException(self, ei: ExcInfo) -> str:
        return without_personal_data(super().formatException(ei))

    def format(self, record: logging.LogRecord) -> str:
        # another handler's formatter may have cached the record's traceback unmasked
        return without_personal_data(super().format(record))


class JsonLines(Redacting):
    """One JSON object per record, with the current trace id and request id."""

    def format(self, record: logging.LogRecord) -> str:
        context = trace.get_current_span().get_span_context()
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": without_personal_data(record.getMessage()),
            "trace_id": format(context.trace_id, "032x") if context.is_valid else "",
            "request_id": request_id.get(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, json_lines: bool = False) -> None:
    """Once per process, before anything logs: the level (CLOSEFLOW_LOG_LEVEL), the format
    (JSON lines or text). At DEBUG nothing is dropped: whoever asks for debug output wants the
    chatter too."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonLines() if json_lines else Redacting(FORMAT))
    redact_access_log()  # at every level: debug output carries no secrets either
    if logging.getLogger().level > logging.DEBUG:
        quiet_chatter()
