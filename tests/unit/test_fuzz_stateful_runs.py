"""The stateful fuzz runs (tests/support/api_fuzz.py) go on when Hypothesis stops a run whose
rules the live world enabled differently from one scenario to the next: the long `make fuzz`
run stopped there (FlakyStrategyDefinition) before its scenarios were done."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from tests.support.api_fuzz import _run_machine


class World(RuleBasedStateMachine):
    """A rule enabled by what the world answered before: here, in every other scenario."""

    begun = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).begun += 1

    @classmethod
    def run(cls, *, settings: settings) -> None:
        run_state_machine_as_test(cls, settings=settings)

    @rule()
    def look(self) -> None:
        pass

    @precondition(lambda self: type(self).begun % 2 == 0)
    @rule()
    def follow_a_link(self) -> None:
        pass


async def test_every_scenario_runs_though_the_world_changes_the_rules() -> None:
    class Machine(World):
        begun = 0

    # one run alone stops before its scenarios are done
    with pytest.raises(FlakyStrategyDefinition):
        Machine.run(
            settings=settings(
                max_examples=40, database=None, derandomize=True, stateful_step_count=6
            )
        )
    assert Machine.begun < 40

    class Again(World):
        begun = 0

    await _run_machine(Again, "world", 40, 6)
    assert Again.begun >= 40


async def test_a_run_that_begins_no_scenario_is_not_run_again() -> None:
    class Broken(World):
        @classmethod
        def run(cls, *, settings: Any) -> None:
            raise FlakyStrategyDefinition("before any scenario")

    with pytest.raises(FlakyStrategyDefinition):
        await _run_machine(Broken, "broken", 3, 6)
