"""The rows and their rules: accounts, people, the account plan, history, snoozes, scores, and
the facts guards read."""
