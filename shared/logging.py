"""Process logging: one format for every closeflow process, and no chatter.

`make run` shows one line per meaningful event. Some libraries log at INFO what nobody acts on:
alembic its plugin set-up and its dialect guesses before every migration, aiosmtpd (the dev
mailbox) five lines per connection (every readiness probe), uvicorn one access line per health
probe (Kubernetes probes every few seconds). Those records are dropped; their warnings and
errors still pass.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HEALTH_PATH = "/healthz"

# Loggers whose INFO lines are all set-up or connection chatter: warnings and up only.
QUIET_LOGGERS = ("alembic.runtime.plugins", "mail.log")
# Loggers that mix chatter with news: the INFO messages starting so are dropped.
CHATTER_PREFIXES = {
    "alembic.runtime.migration": ("Context impl ", "Will assume "),
}


class DropInfo(logging.Filter):
    """Drops INFO (and lower) records starting with one of `prefixes` or, with `health_probes`,
    uvicorn's access lines for the health check."""

    def __init__(self, *prefixes: str, health_probes: bool = False) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.health_probes = health_probes

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        return not self.is_chatter(record)

    def is_chatter(self, record: logging.LogRecord) -> bool:
        if self.prefixes and str(record.msg).startswith(self.prefixes):
            return True
        # uvicorn.access: args are (client, method, path, http version, status)
        args = record.args
        return (
            self.health_probes
            and isinstance(args, tuple)
            and len(args) >= 3
            and str(args[2]).split("?", 1)[0] == HEALTH_PATH
        )


def quiet_chatter() -> None:
    """Install the levels and filters above; idempotent."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    wanted = {name: DropInfo(*prefixes) for name, prefixes in CHATTER_PREFIXES.items()}
    wanted["uvicorn.access"] = DropInfo(health_probes=True)
    for name, drop in wanted.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropInfo) for f in logger.filters):
            logger.addFilter(drop)


def configure_logging(level: str) -> None:
    """Once per process, before anything logs: the level (CLOSEFLOW_LOG_LEVEL), the format.
    At DEBUG nothing is dropped: whoever asks for debug output wants the chatter too."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    if logging.getLogger().level > logging.DEBUG:
        quiet_chatter()
