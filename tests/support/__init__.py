"""What the tests share: ports, settings, databases, servers, the stack driver and the rigs.

Test modules import from here, never from each other (a test module imported by another runs its
tests twice and couples unrelated files)."""
