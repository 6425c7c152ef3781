"""The journeys' fixture: a ready in-process stack on the test's own ports."""

from tests.support.stack import stack  # noqa: F401  (registers the fixture for this folder)
