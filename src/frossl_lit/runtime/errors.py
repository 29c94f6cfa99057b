"""Errors a user can fix. The entry points print their message alone (no traceback) and exit with status 2."""


class UserError(Exception):
    """Something in the user's data, paths or configuration is wrong; the message says what and how to fix it."""


class DataNotFoundError(UserError):
    """A dataset is missing or unreadable where the configuration points."""
