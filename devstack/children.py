"""One process of the dev stack: how it is started, what it printed, when it may restart.

Children die with their supervisor however it ends. A clean stop (Ctrl-C, SIGTERM) stops them in
order; a supervisor killed outright cannot, so each child asks the kernel, between fork and exec,
for SIGKILL when its parent goes (prctl PR_SET_PDEATHSIG). SIGKILL, not SIGTERM: a worker asked
to stop gracefully waits for a Temporal server that is gone too, and spins (an orphaned worker
ran at 66% CPU after `make bench` was stopped by a timeout).
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

TAIL_LINES = 60

# Restarts after a crash: the first soon, then doubling while the child keeps crashing, so a
# crash loop costs a line every half minute instead of a core.
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
STABLE_SECONDS = 60.0  # up this long before a crash: the next restart is soon again

# Before a child is ready its output stays in its tail (shown if it fails to start) unless it
# looks like trouble: banners and start-up notices would bury the stack's own lines.
_TROUBLE = re.compile(r"(?i)\b(warn|warning|error|critical|fatal|exception)\b|Traceback")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_prctl: Callable[..., int] | None = (
    ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
)


def looks_like_trouble(line: str) -> bool:
    return bool(_TROUBLE.search(line))


@dataclass
class Child:
    name: str
    args: list[str]  # a `closeflow` command line
    stage: int
    ready: Callable[[Child], bool]
    # a whole command line instead (another program: the Temporal cluster's server processes)
    argv: list[str] | None = None
    # variables of its own over the stack's (an API replica's port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None
    # Set once SIGTERM is sent: shutdown chatter (Temporal logs every poll it cancels) stays in
    # the tail for diagnosis but off the terminal.
    quiet: bool = False
    # Until it is ready, only trouble reaches the terminal; False for one-shot commands (migrate)
    # whose every line is news.
    hold_until_ready: bool = True
    # Lines that are never news from this child (the Temporal dev server's banner repeats the
    # stack's URL table); they stay in the tail.
    chatter: re.Pattern[str] | None = None
    is_ready: bool = False
    restarts: int = 0
    restart_delay: float = 0.0
    restart_at: float | None = None  # when a crashed child is due to start again

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return "\n".join(self.tail)

    def shows(self, line: str) -> bool:
        """Whether a line of its output belongs on the terminal (it is in the tail anyway)."""
        if self.quiet or not line.strip():
            return False
        if self.chatter is not None and self.chatter.search(line):
            return False
        return self.is_ready or not self.hold_until_ready or looks_like_trouble(line)

    def schedule_restart(self, now: float) -> float:
        """After a crash found at `now`: the delay before it starts again (and remember when)."""
        if self.restart_delay == 0.0 or now - self.started_at >= STABLE_SECONDS:
            self.restart_delay = RESTART_FIRST_SECONDS
        else:
            self.restart_delay = min(self.restart_delay * 2, RESTART_MAX_SECONDS)
        self.restart_at = now + self.restart_delay
        return self.restart_delay


def die_with(supervisor_pid: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGKILL when the thread that forked it ends (the kernel ties
    the parent-death signal to that thread, so fork from a thread that outlives the stack)."""

    def preexec() -> None:
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != supervisor_pid:  # the supervisor died before prctl took effect
            os._exit(1)

    return preexec
