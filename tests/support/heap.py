"""Full garbage collections in the test processes, kept to what the current test made.

A test process holds every object the session made: apps, stacks, Temporal's workflow
sandboxes, about a million objects by the end. Measured on 2026-12-04 (tests/journeys and
tests/outreach, six xdist workers on the two cores, a `gc.callbacks` timer): each worker's full
collections took up to 1.6-2.7 s, 14-18.5 s in all, and a collection runs in whatever thread
allocates at that moment: inside a workflow activation it outlasts the SDK's 2-second deadlock
guard, and the activation fails as deadlocked (a CI run lost a state query to it). Collected
and frozen before each test, what survived the earlier tests is never traversed again: apart
from each worker's first freeze (about 1 s, before its first test), every full collection took
at most 0.44 s, 7.6-9.2 s in all with the freezes themselves, and the workers ended at the same
resident memory (444-517 MB against 470-549 MB). The timer was a pytest plugin kept outside the
repository (`gc.callbacks`, reported at the session's end).

What the freeze gives up: a reference cycle among objects frozen here is never collected. The
collection just before each freeze frees the cycles already unreachable, so only objects that
survived a test and become cyclic garbage later stay; the memory above says they are few."""

from __future__ import annotations

import gc

import pytest


@pytest.fixture(autouse=True)
def frozen_heap() -> None:
    gc.collect()
    gc.freeze()
