"""User-facing errors: the CLI prints these as one line and exits non-zero, without a traceback."""


class UserError(ValueError):
    """Bad input from the user: a file, a field, a name. The message says what was expected."""
