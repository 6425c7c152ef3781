"""The outreach tests' fixtures (kept in tests/support/)."""

from tests.support.inbox import inbox  # noqa: F401  (the rep inbox rig)
from tests.support.sending import sending_rig  # noqa: F401  (outreach sending through Temporal)
from tests.support.webhooks import webhooks  # noqa: F401  (the provider-webhook rig)
