"""A throwaway PostgreSQL server of one's own: initdb in a temporary folder, its own port.

make chaos restarts PostgreSQL in the middle of its journeys, so it must own the server it
restarts: never a shared one that other people's work runs on. Debian keeps the server binaries
in /usr/lib/postgresql/<version>/bin; initdb refuses to run as root, so as root the server runs
as the `postgres` user (as .ci/run's does).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from devstack.env import free_ports
from devstack.probes import tcp_open

PG_BIN_ROOT = Path("/usr/lib/postgresql")
# No fsync and no full pages: they guard against the machine crashing, and the kernel keeps what
# was written when only PostgreSQL dies. synchronous_commit stays on: off, a commit is answered
# before its WAL is written at all, and a crash-stop (what restart() does) loses the last commits
# (make chaos saw acknowledged ledger writes vanish; a production server never runs so).
FAST_OPTIONS = ("fsync=off", "full_page_writes=off")


class PostgresError(RuntimeError):
    """The throwaway server could not be made, started or stopped."""


def pg_bin() -> Path:
    """The newest installed server's bin folder (CLOSEFLOW_PG_BIN overrides)."""
    if os.environ.get("CLOSEFLOW_PG_BIN"):
        return Path(os.environ["CLOSEFLOW_PG_BIN"])
    found = sorted(
        (p for p in PG_BIN_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise PostgresError(
            f"no PostgreSQL server under {PG_BIN_ROOT} (apt-get install postgresql)"
        )
    return found[-1]


class ThrowawayPostgres:
    """`with ThrowawayPostgres() as pg:` a fresh server on a free port, removed afterwards.

    `pg.url` is a superuser URL (trust authentication, 127.0.0.1 only); `restart()` stops it
    the hard way (immediate: as a crash would) and starts it again on the same port and data."""

    def __init__(self, *, max_connections: int = 300, bin_dir: Path | None = None) -> None:
        self.bin = bin_dir or pg_bin()
        self.max_connections = max_connections
        self.folder = Path(tempfile.mkdtemp(prefix="closeflow-throwaway-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = 0
        self.user = "postgres" if os.geteuid() == 0 else ""

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 120.0) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise PostgresError(f"{' '.join(command)}: {done.stdout}{done.stderr}")

    def create(self) -> None:
        if self.user:
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                raise PostgresError("as root, initdb needs a `postgres` user to run as") from None
            shutil.chown(self.folder, self.user)
            self.folder.chmod(0o700)
        self._run(
            "initdb",
            *("-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
            *("--locale=C", "--no-sync"),
        )

    def start(self) -> None:
        if not self.port:
            self.port = free_ports(1)[0]
        options = [
            *("-c listen_addresses=127.0.0.1", f"-p {self.port}", f"-k {self.folder}"),
            f"-c max_connections={self.max_connections}",
            *(f"-c {o}" for o in FAST_OPTIONS),
        ]
        self._run(
            "pg_ctl",
            *("-D", str(self.data), "-l", str(self.log), "-w", "-t", "60"),
            *("-o", " ".join(options), "start"),
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> float:
        """Crash-stop and start again; returns the seconds it was away."""
        began = time.monotonic()
        self.stop("immediate")
        self.start()
        return time.monotonic() - began

    def accepting(self) -> bool:
        return bool(self.port) and tcp_open("127.0.0.1", self.port)

    def remove(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        try:
            self.create()
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()
