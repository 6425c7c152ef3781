"""bench/cpu.py: the CPU a benchmark attributes to each process comes from that process's tree."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.cpu import BENCH, CpuSplit, local_server

SPIN = 0.3  # seconds of CPU the busy process uses once told to, by its own clock
# Spins once told to (a line on stdin) until its own CPU clock says SPIN, says so, then waits.
SPINNER = f"""
import sys, time
sys.stdin.readline()
start = time.process_time()
while time.process_time() - start < {SPIN}:
    pass
print("spun", flush=True)
sys.stdin.readline()
"""
# Runs the spinner as its own child and passes its lines both ways: the CPU is the grandchild's.
PARENT = f"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", {SPINNER!r}], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
child.stdin.write(sys.stdin.readline()); child.stdin.flush()
print(child.stdout.readline().strip(), flush=True)
sys.stdin.readline()
child.stdin.write("\\n"); child.stdin.flush(); child.wait()
"""
IDLE = "import sys; sys.stdin.readline()"


def python(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


@pytest.fixture
def processes() -> Iterator[dict[str, subprocess.Popen[str]]]:
    started = {"busy": python(SPINNER), "parent": python(PARENT), "idle": python(IDLE)}
    yield started
    for process in started.values():
        process.kill()
        process.wait()


def spin(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("go\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "spun"


def test_each_process_is_charged_the_cpu_of_its_tree_during_the_part(
    processes: dict[str, subprocess.Popen[str]],
) -> None:
    split = CpuSplit.of({name: p.pid for name, p in processes.items()} | {"never": None})
    split.start()
    spin(processes["busy"])
    spin(processes["parent"])
    split.stop()

    # /proc counts in clock ticks: allow one tick (10 ms) less than the process's own clock
    assert split.spent["busy"] >= SPIN - 0.011
    assert split.spent["parent"] >= SPIN - 0.011  # its child's spin, not its own
    assert split.spent["idle"] < SPIN / 3
    # this process started the three: named themselves, their CPU is not charged to it as well
    assert split.spent[BENCH] < SPIN
    assert set(split.spent) == {"busy", "parent", "idle", BENCH}
    assert split.stack_seconds() == pytest.approx(
        split.spent["busy"] + split.spent["parent"] + split.spent["idle"]
    )
    line = split.line("item", 2, elapsed=1.0)
    assert line.startswith("cpu per item (ms): ")
    assert f"; stack {split.stack_seconds() * 500:.1f}; {BENCH} " in line
    cores = len(os.sched_getaffinity(0))
    assert line.endswith(f"; {cores} cores {sum(split.spent.values()) / cores:.0%} busy")


def test_a_process_gone_during_the_part_is_named_not_counted(
    processes: dict[str, subprocess.Popen[str]],
) -> None:
    split = CpuSplit.of({name: p.pid for name, p in processes.items()})
    split.start()
    processes["idle"].kill()
    processes["idle"].wait()
    split.stop()

    assert "idle" not in split.spent
    assert split.lost == ["idle"]
    assert "(restarted, not counted: idle)" in split.line("item", 1, elapsed=1.0)


def test_a_server_on_this_machine_is_found_from_one_of_its_connection_processes(
    processes: dict[str, subprocess.Popen[str]],
) -> None:
    # as a PostgreSQL backend's parent is the postmaster, the idle process's parent is this one
    idle = processes["idle"].pid
    program = Path(f"/proc/{idle}/comm").read_text().strip()

    assert local_server(idle, program) == os.getpid()
    assert local_server(idle, "postgres") is None  # a pid here that is not that program's
    processes["idle"].kill()
    processes["idle"].wait()
    assert local_server(idle, program) is None  # not on this machine (gone)
