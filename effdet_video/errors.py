"""Errors a user can fix (bad input, missing weights, ...): the CLI prints them as one line, exit code 2."""


class UserError(Exception):
    """A problem with what the user asked for; its message is shown as-is, without a traceback."""

    exit_code = 2
