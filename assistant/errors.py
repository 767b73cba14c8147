"""Errors a user can act on: one line saying what is wrong and what to do."""


class UserError(Exception):
    """A problem with the user's input, files or machine, not a bug.

    The CLI prints the message as one line and exits with ``exit_code``.
    """

    exit_code = 2


class ModelError(UserError):
    """The model cannot be found, fetched or loaded."""


class ContextOverflow(UserError):
    """The prompt does not fit in the model's context window."""
