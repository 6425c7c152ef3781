"""Fixtures of the security probes."""

from tests.support.inbox import inbox  # noqa: F401  (the rep inbox rig)
from tests.support.webhooks import webhooks  # noqa: F401  (the provider-webhook rig)
