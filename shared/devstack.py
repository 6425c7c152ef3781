"""The whole dev stack as child processes: `closeflow dev` (make run) and the end-to-end tests.

Every process is `python -m shared.cli <command>` with the same environment, so the stack runs
exactly what production runs, one process per role. Configuration travels only through the
CLOSEFLOW_* environment; ports and paths all come from Settings.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TextIO

from shared.cli import PARENT_PID_ENV, temporal_binary
from shared.settings import SERVICES, Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CLOSEFLOW_"

# Processes of a stage start together; stages stop in reverse order, so workers and APIs stop
# before Temporal (a worker whose server vanished spins on reconnects).
STAGE_INFRA = 0
STAGE_APPS = 1

PROCESS_NAMES = ("temporal", "mailbox", "twilio-sandbox", *SERVICES, "worker", "activity-worker")
WORKER_SETTLE_SECONDS = 1.5  # a worker has no port: alive this long after start counts as ready
POLL_SECONDS = 0.2
TAIL_LINES = 60


class StackError(RuntimeError):
    """A process of the stack failed to start or died."""


# --- settings and ports ---------------------------------------------------------------------------


def settings_from_env(env: Mapping[str, str] | None) -> Settings:
    """Settings as a child sees them: os.environ (and .env) overlaid with `env`."""
    overrides: dict[str, str] = {}
    for key, value in (env or {}).items():
        name = key[len(ENV_PREFIX) :].lower() if key.upper().startswith(ENV_PREFIX) else ""
        if name in Settings.model_fields:
            overrides[name] = value
    return Settings(**overrides)  # type: ignore[arg-type]  # strings: pydantic coerces them


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct ports free now, below the kernel's ephemeral range.

    A port from bind(0) is released before the child binds it, and meanwhile any outgoing
    connection (readiness probes, other tests) may take it as its local port: then Temporal's
    UI failed with "address already in use". Ports outside the ephemeral range are never handed
    out that way. All candidates are held open together, so none is returned twice.
    """
    low, _ = _ephemeral_range()
    candidates = list(range(10000, low)) if low > 10000 + count * 4 else []
    random.shuffle(candidates)
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for candidate in [*candidates, *([0] * count)]:
            if len(ports) == count:
                break
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            ports.append(sock.getsockname()[1])
        return ports


def isolated_env(data_dir: Path, host: str = "127.0.0.1") -> dict[str, str]:
    """CLOSEFLOW_* variables for a stack of its own: data in `data_dir`, every port free now.

    Database URLs are set empty so every service uses SQLite in `data_dir` even when the caller's
    environment points elsewhere; override them (and anything else) in the returned dict.
    """
    names = [f"{s}_port" for s in SERVICES] + [
        "temporal",
        "temporal_ui_port",
        "smtp_port",
        "mailbox_http_port",
        "twilio_sandbox_port",
    ]
    port = dict(zip(names, free_ports(len(names), host), strict=True))
    env = {
        "DATA_DIR": str(Path(data_dir).resolve()),
        "HOST": host,
        "TEMPORAL_ADDRESS": f"{host}:{port['temporal']}",
        "TEMPORAL_UI_PORT": str(port["temporal_ui_port"]),
        "SMTP_HOST": host,
        "SMTP_PORT": str(port["smtp_port"]),
        "MAILBOX_HTTP_PORT": str(port["mailbox_http_port"]),
        "TWILIO_SANDBOX_PORT": str(port["twilio_sandbox_port"]),
        "TWILIO_API_BASE_URL": f"http://{host}:{port['twilio_sandbox_port']}",
        "PROSPECTING_URL": f"http://{host}:{port['prospecting_port']}",
        "OUTREACH_URL": f"http://{host}:{port['outreach_port']}",
        "DEALS_URL": f"http://{host}:{port['deals_port']}",
        "REFERRALS_URL": f"http://{host}:{port['referrals_port']}",
        "OUTREACH_PUBLIC_URL": f"http://{host}:{port['outreach_port']}",
        "REFERRALS_PUBLIC_URL": f"http://{host}:{port['referrals_port']}",
    }
    for service in SERVICES:
        env[f"{service.upper()}_PORT"] = str(port[f"{service}_port"])
        env[f"{service.upper()}_DATABASE_URL"] = ""
    return {f"{ENV_PREFIX}{key}": value for key, value in env.items()}


# --- readiness probes -----------------------------------------------------------------------------


def connect_host(host: str) -> str:
    """Where to connect to reach a server bound to `host` (a wildcard is not a destination)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def url_host(host: str) -> str:
    host = connect_host(host)
    return f"[{host}]" if ":" in host else host


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return connect_host(host.strip("[]")), int(port)


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((connect_host(host), port), timeout=0.5):
            return True
    except OSError:
        return False


# No proxies: the stack is on loopback, and an HTTP(S)_PROXY in the environment must not matter.
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str) -> bool:
    try:
        with _direct.open(url, timeout=1.0) as response:
            return 200 <= int(response.status) < 300
    except (OSError, ValueError):
        return False


def temporal_ready(settings: Settings) -> bool:
    # The port opens before the namespace exists; asking for the namespace proves both.
    if not tcp_open(*split_address(settings.temporal_address)):
        return False
    cmd = [
        temporal_binary(),
        "operator",
        "namespace",
        "describe",
        "--address",
        settings.temporal_address,
        "--namespace",
        settings.temporal_namespace,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


# --- child processes ------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    args: list[str]
    stage: int
    ready: Callable[[Child], bool]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None
    # Set once SIGTERM is sent: shutdown chatter (Temporal logs every poll it cancels) stays in
    # the tail for diagnosis but off the terminal.
    quiet: bool = False

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return "\n".join(self.tail)


_COLORS = (36, 33, 35, 32, 34, 91, 92, 93, 94, 95, 96)


class Stack:
    """The dev stack: Temporal dev server, mailbox, Twilio sandbox, four APIs and one worker.

    `env` is overlaid on os.environ for the children (and for the Settings read here, unless
    `settings` is given); use `isolated_env(tmp_path)` for a stack of its own. `only` picks a
    subset of PROCESS_NAMES. Call start() and stop() from a thread that outlives the stack
    (children die with the thread that forked them).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        output: TextIO | None = None,
        ready_timeout: float = 90.0,
        stop_timeout: float = 10.0,
        migrate: bool = True,
        only: Collection[str] | None = None,
    ) -> None:
        self.env_overrides = dict(env or {})
        self.settings = settings or settings_from_env(self.env_overrides)
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.output = output or sys.stdout
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.migrate = migrate
        unknown = set(only or ()) - set(PROCESS_NAMES)
        if unknown:
            raise ValueError(f"unknown processes {sorted(unknown)}; expected {PROCESS_NAMES}")
        self.only = frozenset(only) if only is not None else frozenset(PROCESS_NAMES)
        self.children: list[Child] = []
        self._write_lock = threading.Lock()
        self._stopping = False
        self._color = self.output.isatty() and "NO_COLOR" not in os.environ
        self._width = max(len(n) for n in ("migrate", *PROCESS_NAMES))

    # -- public API --------------------------------------------------------------------------------

    def start(self) -> None:
        """Migrate, start every process and return once all are ready; StackError otherwise."""
        if any(c.running() for c in self.children):
            raise StackError("the stack is already running")
        self.children = []
        self._stopping = False
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.migrate:
                self._migrate()
            for stage in (self._infra_children(), self._app_children()):
                self._launch_and_wait([c for c in stage if c.name in self.only])
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM stage by stage (apps, then infrastructure), SIGKILL after stop_timeout."""
        self._stopping = True
        for child in self.children:
            child.quiet = True  # workers going away make Temporal log errors: not news
        for stage in sorted({c.stage for c in self.children}, reverse=True):
            self._terminate([c for c in self.children if c.stage == stage])
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=2)

    def dead(self) -> list[Child]:
        """Children that exited although nobody asked them to."""
        if self._stopping:
            return []
        return [c for c in self.children if c.process is not None and not c.running()]

    def wait(self) -> Child:
        """Block until a child dies unexpectedly; return it."""
        if self._stopping:
            raise StackError("the stack is stopped")
        while True:
            dead = self.dead()
            if dead:
                return dead[0]
            time.sleep(POLL_SECONDS)

    def child(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(name)

    def base_url(self, service: str) -> str:
        return f"http://{url_host(self.settings.host)}:{self.settings.port(service)}"

    def urls(self) -> list[tuple[str, str]]:
        s = self.settings
        host = url_host(s.host)
        rows = [
            ("Temporal gRPC", s.temporal_address),
            ("Temporal UI", f"http://{host}:{s.temporal_ui_port}"),
            ("Mailbox (web)", f"http://{host}:{s.mailbox_http_port}"),
            ("Mailbox (SMTP)", f"{s.smtp_host}:{s.smtp_port}"),
            ("Twilio sandbox", f"http://{host}:{s.twilio_sandbox_port}"),
        ]
        for service in SERVICES:
            rows.append((f"{service} API", self.base_url(service)))
            rows.append((f"{service} docs", f"{self.base_url(service)}/docs"))
        return rows

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the processes -----------------------------------------------------------------------------

    def _infra_children(self) -> list[Child]:
        s = self.settings
        host = connect_host(s.host)
        return [
            Child("temporal", ["temporal"], STAGE_INFRA, lambda _: temporal_ready(s)),
            Child(
                "mailbox",
                ["mailbox"],
                STAGE_INFRA,
                lambda _: (
                    tcp_open(host, s.mailbox_http_port) and tcp_open(s.smtp_host, s.smtp_port)
                ),
            ),
            Child(
                "twilio-sandbox",
                ["twilio-sandbox"],
                STAGE_INFRA,
                lambda _: tcp_open(host, s.twilio_sandbox_port),
            ),
        ]

    def _app_children(self) -> list[Child]:
        # Started once Temporal answers: the APIs connect to it while starting up, and a worker
        # without a server only retries.
        children = [
            Child(
                service,
                ["serve", service],
                STAGE_APPS,
                lambda _, url=f"{self.base_url(service)}/healthz": http_ok(url),
            )
            for service in SERVICES
        ]
        # Two worker processes: the journeys' workflow tasks and the services' activities each
        # get a core of their own (one Python process is one core).
        for name, queues in (("worker", ["journeys"]), ("activity-worker", list(SERVICES))):
            children.append(
                Child(
                    name,
                    ["worker", *queues],
                    STAGE_APPS,
                    lambda c: time.monotonic() - c.started_at >= WORKER_SETTLE_SECONDS,
                )
            )
        return children

    def _migrate(self) -> None:
        child = Child("migrate", ["migrate"], STAGE_INFRA, lambda _: False)
        self._spawn(child)
        assert child.process is not None
        try:
            code = child.process.wait(timeout=self.ready_timeout)
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"migrations did not finish in {self.ready_timeout:.0f}s") from exc
        if child.reader is not None:
            child.reader.join(timeout=2)
        self.children.remove(child)
        if code != 0:
            raise StackError(f"migrations failed (exit {code}):\n{child.output()}")

    def _launch_and_wait(self, children: list[Child]) -> None:
        for child in children:
            self._spawn(child)
        pending = list(children)
        deadline = time.monotonic() + self.ready_timeout
        while pending:
            for child in list(pending):
                if not child.running():
                    raise StackError(
                        f"{child.name} exited with code {child.returncode} while starting:\n"
                        f"{child.output()}"
                    )
                if child.ready(child):
                    self._print("stack", f"{child.name} is ready")
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise StackError(f"not ready after {self.ready_timeout:.0f}s: {names}")
            if pending:
                time.sleep(POLL_SECONDS)

    def _child_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env_overrides}
        # -m shared.cli must import this checkout whatever the cwd and install state.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"  # lines reach the prefixed output as they are written
        env[PARENT_PID_ENV] = str(os.getpid())
        return env

    def _spawn(self, child: Child) -> None:
        self.children.append(child)
        child.process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", *child.args],
            cwd=self.cwd,
            env=self._child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C reaches only this process, which then stops the children
            # in order instead of all of them at once.
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        assert child.process.stdout is not None
        child.reader = threading.Thread(
            target=self._forward,
            args=(child, child.process.stdout),
            name=f"stack-{child.name}",
            daemon=True,
        )
        child.reader.start()

    def _terminate(self, children: list[Child]) -> None:
        for child in children:
            child.quiet = True
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in children:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._print("stack", f"{child.name} ignored SIGTERM; killing it")
                self._signal(child, signal.SIGKILL)
                child.process.wait()

    @staticmethod
    def _signal(child: Child, sig: signal.Signals) -> None:
        if child.process is None or child.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, sig)

    # -- output ------------------------------------------------------------------------------------

    def _forward(self, child: Child, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            child.tail.append(line)
            if not child.quiet:
                self._print(child.name, line)
        stream.close()

    def _print(self, name: str, line: str) -> None:
        prefix = f"{name:<{self._width}} |"
        if self._color:
            color = _COLORS[sum(map(ord, name)) % len(_COLORS)]
            prefix = f"\033[{color}m{prefix}\033[0m"
        with self._write_lock:
            try:
                self.output.write(f"{prefix} {line}\n")
                self.output.flush()
            except (OSError, ValueError):
                pass  # a closed terminal or file must not kill the reader thread


def url_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {url}" for name, url in rows)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(settings: Settings) -> int:
    """`closeflow dev`: the stack in the foreground until Ctrl-C/SIGTERM or a child dies."""
    stack = Stack(settings)
    code = 0
    with _sigterm_as_interrupt():
        try:
            stack.start()
            print(f"\ncloseflow dev stack is up (data in {settings.data_dir.resolve()}):\n")
            print(url_table(stack.urls()))
            print("\nCtrl-C stops everything.\n", flush=True)
            dead = stack.wait()
            print(
                f"\n{dead.name} exited unexpectedly with code {dead.returncode}; stopping.",
                file=sys.stderr,
            )
            code = 1
        except KeyboardInterrupt:
            print("\nstopping...", file=sys.stderr)
        except StackError as exc:
            print(f"\n{exc}", file=sys.stderr)
            code = 1
        finally:
            # A second Ctrl-C must not abandon half-stopped children; stop() is bounded anyway.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            stack.stop()
            signal.signal(signal.SIGINT, signal.default_int_handler)
    return code
