"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""


class UserError(Exception):
    """A problem with the user's input: a file, a folder, a setting. Its message is one line."""


class Cancelled(Exception):
    """A long operation stopped because the user asked it to."""
