"""Errors a user can act on: one line saying what is wrong and what to do."""

# The exit status of a command the user stopped with Ctrl+C, as a shell reports it.
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem with the user's input, files or machine, not a bug.

    The CLI prints the message as one line and exits with ``exit_code``.
    """

    exit_code = 2


class ModelError(UserError):
    """The model cannot be found, fetched or loaded."""


class ContextOverflow(UserError):
    """The prompt does not fit in the model's context window."""
