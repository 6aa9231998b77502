"""kamflow: key account management as a persisted state machine."""

__version__ = "0.1.0"
