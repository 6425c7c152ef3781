"""The whole dev stack as child processes: `closeflow dev` (make run) and the end-to-end tests.

Every process is `python -m closeflow.cli <command>` with the same environment, so the stack runs
exactly what production runs, one process per role. Configuration travels only through the
CLOSEFLOW_* environment; ports and paths all come from Settings. A child that crashes is started
again (devstack/children.py: backoff, and why children never outlive the supervisor).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TextIO

from devstack.children import Child, die_with
from devstack.env import dev_master_key, settings_from_env
from devstack.probes import connect_host, http_ok, tcp_open, url_host
from devstack.temporal import temporal_ready
from shared.settings import SERVICES, Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Processes of a stage start together; stages stop in reverse order, so workers and APIs stop
# before Temporal (a worker whose server vanished spins on reconnects).
STAGE_INFRA = 0
STAGE_APPS = 1

PROCESS_NAMES = ("temporal", "mailbox", "twilio-sandbox", *SERVICES, "worker", "activity-worker")
WORKER_SETTLE_SECONDS = 1.5  # a worker has no port: alive this long after start counts as ready
POLL_SECONDS = 0.2
TEMPORAL_BANNER = re.compile(r"^Temporal (CLI|Server|Persistence|UI|Metrics)\b")


def service_url(settings: Settings, service: str) -> str:
    """Where a dev stack with these settings serves `service`'s API."""
    return f"http://{url_host(settings.host)}:{settings.port(service)}"


class StackError(RuntimeError):
    """A process of the stack failed to start or died."""


_COLORS = (36, 33, 35, 32, 34, 91, 92, 93, 94, 95, 96)


class Stack:
    """The dev stack: Temporal dev server, mailbox, Twilio sandbox, four APIs and one worker.

    `env` is overlaid on os.environ for the children (and for the Settings read here, unless
    `settings` is given); use `isolated_env(tmp_path)` for a stack of its own. `only` picks a
    subset of PROCESS_NAMES. start() returns once every process is ready; supervise() keeps
    them up (restarting a child that crashed) until told to stop. Call start(), supervise() and
    stop() from a thread that outlives the stack: children die with the thread that forked them.
    """

    title = "dev stack"  # in the "is up" line

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

    def supervise(self, until: Callable[[], bool] = lambda: False) -> None:
        """Keep the stack up until `until()` is true (or an exception, e.g. KeyboardInterrupt):
        a child that exits is started again after a backoff, with one line saying so."""
        while not until():
            self.tend()
            time.sleep(POLL_SECONDS)

    def tend(self) -> None:
        """One pass of supervise(): note crashes, restart the children that are due, announce
        the restarted ones once they are ready."""
        if self._stopping:
            return
        now = time.monotonic()
        for child in self.children:
            if child.running():
                if not child.is_ready and child.ready(child):
                    child.is_ready = True
                    self._print("stack", f"{child.name} is ready again")
            elif child.restart_at is None:
                delay = child.schedule_restart(now)
                self._print(
                    "stack",
                    f"{child.name} exited with code {child.returncode}; "
                    f"restarting it in {delay:.0f}s",
                )
            elif now >= child.restart_at:
                child.restart_at = None
                child.restarts += 1
                self._start(child)

    def child(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(name)

    def base_url(self, service: str) -> str:
        return service_url(self.settings, service)

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
            Child(
                "temporal",
                ["temporal"],
                STAGE_INFRA,
                lambda _: temporal_ready(s),
                chatter=TEMPORAL_BANNER,
            ),
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
                _healthz(f"{self.base_url(service)}/healthz"),
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
                    # its one start-up line names its queues, and comes before or after the
                    # settle time: shown either way
                    hold_until_ready=False,
                )
            )
        return children

    def _migrate(self) -> None:
        child = Child("migrate", ["migrate"], STAGE_INFRA, lambda _: False, hold_until_ready=False)
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
                    child.is_ready = True
                    self._print("stack", f"{child.name} is ready")
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise StackError(f"not ready after {self.ready_timeout:.0f}s: {names}")
            if pending:
                time.sleep(POLL_SECONDS)

    def _child_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env_overrides}
        # the children run in the environment the stack was configured for (development unless
        # told), never one inherited from the shell behind the supervisor's back
        env["CLOSEFLOW_ENVIRONMENT"] = self.settings.environment
        if not self.settings.payload_master_keys:
            env["CLOSEFLOW_PAYLOAD_MASTER_KEYS"] = dev_master_key(self.settings.data_dir)
        # -m closeflow.cli must import this checkout whatever the cwd and install state.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONUNBUFFERED"] = "1"  # lines reach the prefixed output as they are written
        return env

    def _spawn(self, child: Child) -> None:
        self.children.append(child)
        self._start(child)

    def _start(self, child: Child) -> None:
        child.is_ready = False
        child.process = subprocess.Popen(
            child.argv or [sys.executable, "-m", "closeflow.cli", *child.args],
            cwd=self.cwd,
            env={**self._child_env(), **child.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C reaches only this process, which then stops the children
            # in order instead of all of them at once.
            start_new_session=True,
            preexec_fn=die_with(os.getpid()),
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
            if child.shows(line):
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


def _healthz(url: str) -> Callable[[Child], bool]:
    return lambda _: http_ok(url)


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


def run(settings: Settings, stack: Stack | None = None) -> int:
    """`closeflow dev` (or `closeflow cluster`, with its stack): the stack in the foreground
    until Ctrl-C or SIGTERM."""
    stack = stack or Stack(settings)
    code = 0
    with _sigterm_as_interrupt():
        try:
            stack.start()
            print(f"\ncloseflow {stack.title} is up (data in {settings.data_dir.resolve()}):\n")
            print(url_table(stack.urls()))
            print("\nCtrl-C stops everything.\n", flush=True)
            stack.supervise()
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
