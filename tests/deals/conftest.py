"""The deals tests' fixture: the deals app on a fresh database with a recording journey."""

from tests.support.deals import env  # noqa: F401  (registers the fixture for this folder)
