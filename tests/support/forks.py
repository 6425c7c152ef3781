"""Worker processes forked from a process that imported their code once, instead of started
from scratch: the exactly-once tests kill and restart about fifty activity workers, and each
fresh interpreter spent about 2.5 s of CPU importing closeflow, SQLAlchemy, FastAPI and
temporalio before it did anything (the suite is CPU-bound on two cores).

A fork is a process of its own, as a fresh start is: its own pid, sockets, database and Temporal
connections, killed by a real SIGKILL and reaped with its real exit status. What it shares with
the others is only the modules imported before the fork, run again as `__main__` with its own
argv, environment and working directory (its settings come from the environment when it runs,
as in production).

    forks = Forks(["tests.support.faults"])      # one server per test process, started lazily
    proc = await forks.spawn("tests.support.faults", args, env, cwd, stderr_path)
    await proc.wait(); proc.returncode            # -9 after a SIGKILL

The server (`python -m tests.support.forks MODULE...`) imports the modules, then reads one JSON
request per line on stdin and answers on stdout: `{"id": request's id, "pid": n}` for each
fork, `{"exit": n, "returncode": rc}` when one ends. It forks from its only thread (a fork from a process with
other threads may copy a lock another thread held) and kills what it forked when its stdin
closes (the test process is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import runpy
import selectors
import signal
import subprocess
import sys
import threading
import traceback
import uuid
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
POLL = 0.02  # how often a waiter looks for its fork's exit (the reader thread records it)


class Forked:
    """A forked process, used as asyncio.subprocess.Process is: wait, returncode, terminate,
    kill."""

    def __init__(self, pid: int, server: Forks) -> None:
        self.pid = pid
        self._server = server

    @property
    def returncode(self) -> int | None:
        return self._server.returncode(self.pid)

    async def wait(self) -> int:
        while (code := self.returncode) is None:
            self._server.check_alive()
            await asyncio.sleep(POLL)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # not reaped yet: the pid is still this process's
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Forks:
    """The client of one fork server; its requests may come from any event loop (the suite's
    tests each have their own), so it talks over pipes with a lock and a reader thread."""

    def __init__(self, modules: list[str]) -> None:
        self.modules = list(modules)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._exits: dict[int, int] = {}
        self._started: dict[str, int] = {}  # a request's id -> the pid of its fork
        self._pid_ready = threading.Condition(self._lock)
        self._gone = False  # the server's output ended (it exited, or is exiting)

    def _server(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.forks", *self.modules],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert self._proc.stdout is not None
            self._gone = False
            threading.Thread(target=self._read, args=(self._proc,), daemon=True).start()
        return self._proc

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            answer = json.loads(line)
            with self._lock:
                if "exit" in answer:
                    self._exits[answer["exit"]] = answer["returncode"]
                else:
                    self._exits.pop(answer["pid"], None)  # a pid used again
                    self._started[answer["id"]] = answer["pid"]
                    self._pid_ready.notify_all()
        with self._lock:  # the server is gone: a spawn waiting for its answer learns it now
            self._gone = self._gone or proc is self._proc
            self._pid_ready.notify_all()

    def check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"the fork server exited ({self._proc.returncode})")

    def returncode(self, pid: int) -> int | None:
        with self._lock:
            return self._exits.get(pid)

    def _spawn(self, request: dict[str, Any]) -> int:
        # answers are matched to requests by id: waiting releases the lock, so another
        # request may be written (and answered) meanwhile
        rid = uuid.uuid4().hex
        with self._lock:
            proc = self._server()
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({**request, "id": rid}).encode() + b"\n")
            proc.stdin.flush()
            answered = self._pid_ready.wait_for(lambda: rid in self._started or self._gone, 60)
            if rid not in self._started:
                state = "did not answer within 60 s" if not answered else "exited"
                raise RuntimeError(f"the fork server {state} ({proc.returncode})")
            return self._started.pop(rid)

    async def spawn(
        self, module: str, args: list[str], env: dict[str, str], cwd: Path, stderr: Path
    ) -> Forked:
        """`python -m module *args` with `env`, in `cwd`, stderr appended to `stderr`."""
        if module not in self.modules:
            raise ValueError(f"{module} is not one of the server's modules {self.modules}")
        request = {
            "module": module,
            "args": args,
            "env": env,
            "cwd": str(cwd),
            "stderr": str(stderr),
        }
        pid = await asyncio.to_thread(self._spawn, request)
        return Forked(pid, self)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # the server kills its forks and exits
            self._proc.wait(10)


# --- the server --------------------------------------------------------------------------------


def _run_fork(request: dict[str, Any]) -> int:
    """In the fork: become `python -m module *args` and run to its end."""
    devnull = os.open(os.devnull, os.O_RDWR)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(err, 2)
    os.closerange(3, 1 << 16)  # the server's pipes and selector are not this process's
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = [request["module"], *request["args"]]
    # imported before the fork on purpose: that is the point of the server
    warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _fork(request: dict[str, Any], wake: tuple[int, int]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in wake:
            os.close(fd)
        code = _run_fork(request)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _reap(children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _answer({"exit": pid, "returncode": os.waitstatus_to_exitcode(status)})


def serve(modules: list[str]) -> None:
    for module in modules:
        importlib.import_module(module)
    if threading.active_count() != 1:
        raise RuntimeError(f"importing {modules} started threads: forking would be unsafe")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd is written
    children: set[int] = set()
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    pending = b""
    try:
        while True:
            for key, _ in selector.select():
                if key.fd == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 4096):
                            pass
                    continue
                data = os.read(0, 1 << 16)
                if not data:
                    return
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    request = json.loads(line)
                    pid = _fork(request, (wake_r, wake_w))
                    children.add(pid)
                    _answer({"id": request["id"], "pid": pid})
            _reap(children)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    serve(sys.argv[1:])
