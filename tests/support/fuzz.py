"""How much the fuzz and property tests run: a few hundred examples in `make test`, as many as
the environment asks for in `make fuzz` (issue 13, "Fuzzing and properties").

- CLOSEFLOW_PROPERTY_EXAMPLES: examples per Hypothesis property (the schedules, the templates);
- CLOSEFLOW_FUZZ_CASES: schemathesis cases per API operation;
- CLOSEFLOW_FUZZ_STEPS: schemathesis stateful scenarios per service (create, then use);
- CLOSEFLOW_JOURNEY_EXAMPLES: random cadences run through the real journey on the time-skipping
  server against the simulator (tests/workflows/test_one_zone_property.py), a fifth as many with
  late touches and pauses (tests/workflows/test_cadence_gaps.py).

The defaults are `make test`'s; `make fuzz` raises them (Makefile)."""

from __future__ import annotations

import os
from typing import TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy

T = TypeVar("T")


def budget(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


PROPERTY_EXAMPLES = budget("CLOSEFLOW_PROPERTY_EXAMPLES", 150)
FUZZ_CASES = budget("CLOSEFLOW_FUZZ_CASES", 2)
FUZZ_STEPS = budget("CLOSEFLOW_FUZZ_STEPS", 3)
# each one a whole journey (about a tenth of a second of CPU): `make fuzz-ci` runs 300
JOURNEY_EXAMPLES = budget("CLOSEFLOW_JOURNEY_EXAMPLES", 100)
# make fuzz: random examples each run; make test: the same ones each run (a failure reproduces)
LONG_RUN = PROPERTY_EXAMPLES > 1000 or FUZZ_CASES > 10


def property_settings(examples: int = PROPERTY_EXAMPLES) -> settings:
    """A property's Hypothesis settings: `examples` of them, derandomized in `make test`."""
    return settings(
        max_examples=examples,
        derandomize=not LONG_RUN,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


def drawn(
    strategy: SearchStrategy[T], examples: int, *, derandomize: bool = not LONG_RUN
) -> list[T]:
    """`examples` values of `strategy`, drawn up front: a test that runs a whole journey per
    example runs them on one set of workers, and its failure names the example."""
    found: list[T] = []

    @settings(property_settings(examples), derandomize=derandomize)
    @given(strategy)
    def collect(value: T) -> None:
        found.append(value)

    collect()
    return found[-examples:]
