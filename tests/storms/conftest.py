"""The storms' fixtures (kept in tests/support/)."""

from tests.support.webhooks import webhooks  # noqa: F401  (the provider-webhook rig)
