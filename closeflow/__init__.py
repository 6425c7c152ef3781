"""The composition root: the one package that knows every part of closeflow.

`closeflow.cli` is the console script, `closeflow.registry` lists the services (their app factory
and activities) and the task queues, `closeflow.worker` runs the Temporal workers. Nothing below
(shared/, workflows/, services/) imports this package.
"""
