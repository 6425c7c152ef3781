"""`closeflow`: one console script, one subcommand per kind of process.

The same image and the same venv run every process; the subcommand picks which. Project modules
are imported inside the command functions so `closeflow --help` and `closeflow settings` work
without the service code (and without touching a database or Temporal).

The dev commands (dev, mailbox, twilio-sandbox, temporal) run code of the dev-only `devstack`
package, which the production image does not contain: there they say so and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from closeflow.registry import ALL_QUEUES, QUEUES, app_factory, expand_queues
from shared.codec import new_master_key
from shared.logging import configure_logging
from shared.settings import SERVICES, MissingSetting, Settings

ENV_PREFIX = "CLOSEFLOW_"
DEV_PACKAGE = "devstack"


# --- argument types -------------------------------------------------------------------------------


def _one_of(choices: Sequence[str], what: str) -> Callable[[str], str]:
    # argparse's `choices` rejects the empty default of nargs="*", so validate per value instead.
    def check(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {value!r} (choose from {', '.join(choices)})"
            )
        return value

    check.__name__ = what  # argparse names the type in its error messages
    return check


service_name = _one_of(SERVICES, "service")
queue_name = _one_of((*QUEUES, ALL_QUEUES), "queue")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="closeflow",
        description="closeflow processes. Configuration: CLOSEFLOW_* environment variables "
        "(see `closeflow settings`).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("migrate", help="apply database migrations (default: every service)")
    p.add_argument("services", nargs="*", type=service_name, metavar="SERVICE")

    p = sub.add_parser("serve", help="run one service's HTTP API")
    p.add_argument("service", type=service_name, metavar="SERVICE", help=", ".join(SERVICES))

    p = sub.add_parser("worker", help="run Temporal workers for task queues")
    p.add_argument(
        "queues",
        nargs="+",
        type=queue_name,
        metavar="QUEUE",
        help=f"{', '.join(QUEUES)} or {ALL_QUEUES}",
    )

    sub.add_parser("mailbox", help="local SMTP server with a web page of received mail (dev)")
    sub.add_parser("twilio-sandbox", help="local Twilio-compatible API (dev)")
    sub.add_parser("temporal", help="Temporal dev server persisted in the data dir (dev)")
    sub.add_parser("dev", help="the whole stack in the foreground (dev)")

    p = sub.add_parser(
        "cluster",
        help="the stack on a real Temporal cluster (four server processes) on PostgreSQL (dev)",
    )
    p.add_argument(
        "--postgres",
        metavar="URL",
        help="PostgreSQL server for every database (its database name is ignored); required "
        "unless --build-only",
    )
    p.add_argument("--prefix", default="closeflow_cluster", help="database names start with this")
    p.add_argument("--fresh", action="store_true", help="drop this prefix's databases first")
    p.add_argument(
        "--temporal-only", action="store_true", help="only the cluster's four server processes"
    )
    p.add_argument(
        "--build-only", action="store_true", help="build (or find cached) the binaries and exit"
    )
    sub.add_parser("settings", help="print every setting as a Markdown table")
    p = sub.add_parser(
        "payload-key", help="print a new CLOSEFLOW_PAYLOAD_MASTER_KEYS entry (a random key)"
    )
    p.add_argument("key_id", metavar="KEY_ID", help="its name, e.g. k2 (letters, digits, - _)")

    p = sub.add_parser("import", help="import prospects from a CSV or JSON-lines file")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--format", choices=("csv", "ndjson"), help="default: from the file name")
    p.add_argument("--url", help="prospecting API (default: CLOSEFLOW_PROSPECTING_URL)")
    return parser


# --- commands -------------------------------------------------------------------------------------


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from shared.migrations import upgrade

    for service in args.services or SERVICES:
        print(f"migrating {service}", file=sys.stderr)
        upgrade(settings, service)
    return 0


# An idle keep-alive connection is closed by the client, never by the API: httpx (every closeflow
# service's client) drops idle connections after 5 s, and uvicorn's own default was also 5 s, so a
# request sent on a connection at the moment the server closed it failed with ReadError (the
# outbox relay's retries and an enrolment answered 503 prospecting_unreachable in `make
# bench-inflight`). Longer than the 60 s idle timeout of common load balancers too, which they
# expect of the servers behind them.
KEEP_ALIVE_SECONDS = 75


# On SIGTERM uvicorn stops accepting and waits for the requests in flight, without end unless
# bounded: one that hangs would last until the orchestrator's SIGKILL, and the lifespan's
# shutdown (the relays finishing their items and handing back the rows they claimed, the engine
# closed) would never run. The pods' grace period covers the preStop sleep, this, and
# API_SHUTDOWN_SECONDS for the lifespan (a relay's stop waits up to RelayTiming.stop_grace).
GRACEFUL_SHUTDOWN_SECONDS = 10
API_SHUTDOWN_SECONDS = 30


def uvicorn_logging(level: str) -> dict[str, Any]:
    """uvicorn's logging options: its loggers (the tracebacks of its error log, the access log)
    go to the root handler that configure_logging set up, whose formatter redacts, in either
    format. uvicorn's own LOGGING_CONFIG, once used for text, gave them a handler of their own:
    a traceback's addresses and numbers were printed as they were."""
    level = level.lower()
    return {
        "log_level": {"warn": "warning", "fatal": "critical"}.get(level, level),
        "log_config": None,
    }


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import gc

    import uvicorn

    create_app = app_factory(args.service)
    # What is loaded by now lives as long as the process: left out of every later garbage
    # collection, a full one no longer walks it (that paused outreach ~80 ms at a time).
    gc.freeze()
    uvicorn.run(
        create_app,
        factory=True,
        host=settings.host,
        port=settings.port(args.service),
        **uvicorn_logging(settings.log_level),
        # the client address is decided in one place, from CLOSEFLOW_TRUSTED_PROXIES only
        # (shared/proxies.py): uvicorn's own rewriting would trust 127.0.0.1 by default
        proxy_headers=False,
        loop="uvloop",
        http="httptools",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return 0


async def _until_signalled(coro: Coroutine[Any, Any, None]) -> None:
    # SIGTERM (docker stop, kubectl, the dev stack) cancels like Ctrl-C, so workers shut down
    # through their own finally blocks instead of dying mid-activity.
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from closeflow.worker import run_worker_process, run_workers

    run_worker_process(_until_signalled(run_workers(settings, expand_queues(args.queues))))


@contextlib.contextmanager
def dev_only(command: str) -> Iterator[None]:
    """Around the import of a devstack module: without the package, a clear exit, no traceback."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name != DEV_PACKAGE and not (exc.name or "").startswith(f"{DEV_PACKAGE}."):
            raise
        raise SystemExit(
            f"closeflow {command} is a development command: it needs the dev-only "
            f"{DEV_PACKAGE!r} package, which this installation does not contain (the production "
            "image leaves it out). Run it from a source checkout (make install, then make run)."
        ) from None


def cmd_mailbox(settings: Settings, args: argparse.Namespace) -> int:
    with dev_only("mailbox"):
        from devstack.sandbox.mailbox import run
    run(settings)
    return 0


def cmd_twilio_sandbox(settings: Settings, args: argparse.Namespace) -> int:
    with dev_only("twilio-sandbox"):
        from devstack.sandbox.twilio_server import run
    run(settings)
    return 0


def cmd_temporal(settings: Settings, args: argparse.Namespace) -> int:
    with dev_only("temporal"):
        from devstack.temporal import exec_dev_server
    exec_dev_server(settings)
    return 0  # not reached: the dev server replaces this process


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    with dev_only("dev"):
        from devstack.supervisor import run
    return run(settings)


def cmd_cluster(settings: Settings, args: argparse.Namespace) -> int:
    with dev_only("cluster"):
        from devstack.cluster import ClusterError, build
        from devstack.cluster_stack import ClusterStack
        from devstack.supervisor import run
    try:
        if args.build_only:
            done = build()
            print(f"{done.server}\n{done.sql_tool}\n{done.schema}")
            return 0
        if not args.postgres:
            print("closeflow cluster: --postgres URL is required", file=sys.stderr)
            return 2
        stack = ClusterStack(
            args.postgres, args.prefix, fresh=args.fresh, temporal_only=args.temporal_only
        )
        return run(stack.settings, stack)
    except ClusterError as exc:
        print(exc, file=sys.stderr)
        return 1


def _format_default(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    values = default if isinstance(default, list) else [default]
    if any(isinstance(v, SecretStr) and v.get_secret_value() for v in values):
        return "(secret)"
    if isinstance(default, list):
        default = ",".join(str(v) for v in default)
    if isinstance(default, bool):
        default = str(default).lower()
    if isinstance(default, SecretStr):
        default = ""
    text = str(default)
    return f"`{text}`" if text else "(empty)"


def settings_table() -> str:
    lines = ["| Variable | Default | Description |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{ENV_PREFIX}{name.upper()}` | {_format_default(field)} | {description} |")
    return "\n".join(lines)


def cmd_settings(settings: Settings | None, args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from services.prospecting.import_cli import summary, upload

    # The first admin (else ops) key of CLOSEFLOW_API_KEYS: importing is an ops task.
    key = settings.operator_key
    report = asyncio.run(
        upload(args.file, url=args.url or settings.prospecting_url, api_key=key, fmt=args.format)
    )
    print(summary(report))
    return 0 if report["status"] == "done" else 1


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "migrate": cmd_migrate,
    "serve": cmd_serve,
    "worker": cmd_worker,
    "mailbox": cmd_mailbox,
    "twilio-sandbox": cmd_twilio_sandbox,
    "temporal": cmd_temporal,
    "dev": cmd_dev,
    "cluster": cmd_cluster,
    "import": cmd_import,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "settings":
        # Documentation of the defaults: must not depend on (or fail on) the current env.
        return cmd_settings(None, args)
    if args.command == "payload-key":
        # run where the settings are not complete yet: this makes one of them
        print(new_master_key(args.key_id))
        return 0
    settings = Settings()
    configure_logging(settings.log_level, json_lines=settings.json_logs)
    try:
        return COMMANDS[args.command](settings, args)
    except MissingSetting as exc:  # a configuration mistake: its message, not a traceback
        raise SystemExit(f"closeflow {args.command}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
