"""What the core warns about while a command runs, shown on the command line once each."""

from __future__ import annotations

import logging

import click


class WarnOnce(logging.Handler):
    """Shows what the core warns about a workflow file (see discovery.workflows_in_use) as one
    `Warning:` line on stderr, each once per run however often it is met."""

    #: The logger the warnings come from; the daemon logs them its own way instead.
    LOGGER = "kamflow.workflow"

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.shown: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.shown:
            self.shown.add(message)
            click.echo(f"Warning: {message}", err=True)

    @classmethod
    def install(cls) -> None:
        """A fresh handler for this run, in place of the previous run's (tests run many in one
        process)."""
        cls.remove()
        logging.getLogger(cls.LOGGER).addHandler(cls())

    @classmethod
    def remove(cls) -> None:
        """Stop showing the warnings (the daemon's log shows them)."""
        logger = logging.getLogger(cls.LOGGER)
        for handler in [h for h in logger.handlers if isinstance(h, cls)]:
            logger.removeHandler(handler)
