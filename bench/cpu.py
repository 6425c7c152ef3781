"""The CPU each process of the stack used during a timed part of a benchmark (Linux /proc).

On a machine with few cores the journey benchmark is bound by CPU, not by waits: the ratio of
two rates measured side by side is then about the inverse ratio of the CPU each item costs the
whole stack. So `make bench` prints, for the journeys and for the no-op workflows, the CPU per
item of every process (with whatever it started), and of the benchmark's own process (its HTTP
client, and the no-op workflows' worker).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0))
BENCH = "bench"  # the benchmark's own process, in every breakdown


def _stat(pid: int | str) -> list[str]:
    """/proc/<pid>/stat from its third field on (the state); OSError when the process is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    return stat.rpartition(")")[2].split()


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds: its own and its waited-for children's)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(entry.name)
        except OSError:
            continue  # gone meanwhile
        ppid = int(fields[1])
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        found[int(entry.name)] = (ppid, (utime + stime + cutime + cstime) / TICKS)
    return found


def local_server(backend_pid: int, program: str) -> int | None:
    """The main process of a server whose connection `backend_pid` serves (PostgreSQL forks a
    process per connection), when it runs on this machine; None when it runs elsewhere."""
    try:
        if Path(f"/proc/{backend_pid}/comm").read_text().strip() != program:
            return None  # another machine's (or container's) pid
        return int(_stat(backend_pid)[1])
    except OSError:
        return None


def tree_cpu(roots: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process with its descendants, but for those named
    themselves (the benchmark started the stack: its processes are not its own); absent: gone."""
    processes = _processes()
    named = set(roots.values())
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in processes.items():
        if pid not in named:
            children[ppid].append(pid)

    def tree(pid: int) -> Iterator[int]:
        yield pid
        for child in children.get(pid, ()):
            yield from tree(child)

    return {
        name: sum(processes[p][1] for p in tree(pid))
        for name, pid in roots.items()
        if pid in processes
    }


@dataclass
class CpuSplit:
    """CPU seconds per process between start() and stop(); a process restarted meanwhile (its
    pid changed) is left out, and named in `lost`."""

    roots: dict[str, int]
    before: dict[str, float] = field(default_factory=dict)
    spent: dict[str, float] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, processes: Mapping[str, int | None]) -> CpuSplit:
        roots = {name: pid for name, pid in processes.items() if pid is not None}
        return cls({**roots, BENCH: os.getpid()})

    def start(self) -> None:
        self.before = tree_cpu(self.roots)

    def stop(self) -> None:
        after = tree_cpu(self.roots)
        self.spent = {n: after[n] - self.before[n] for n in self.before if n in after}
        self.lost = sorted(set(self.before) - set(after))

    def stack_seconds(self) -> float:
        return sum(s for name, s in self.spent.items() if name != BENCH)

    def busy(self, elapsed: float) -> float:
        """The share of the machine's cores this split's processes kept busy over `elapsed`."""
        return sum(self.spent.values()) / (elapsed * CORES)

    def line(self, what: str, count: int, elapsed: float) -> str:
        """`cpu per <what> (ms): <process> <ms>, ...; stack <ms>; bench <ms>; <n> cores <p>%
        busy`, busiest first."""
        per = {name: seconds * 1000 / count for name, seconds in self.spent.items()}
        busiest = sorted((n for n in per if n != BENCH), key=lambda n: -per[n])
        parts = ", ".join(f"{name} {per[name]:.1f}" for name in busiest if per[name] >= 0.05)
        text = f"cpu per {what} (ms): {parts}; stack {self.stack_seconds() * 1000 / count:.1f}"
        text += f"; {BENCH} {per.get(BENCH, 0.0):.1f}"
        text += f"; {CORES} cores {self.busy(elapsed):.0%} busy"
        if self.lost:
            text += f" (restarted, not counted: {', '.join(self.lost)})"
        return text
