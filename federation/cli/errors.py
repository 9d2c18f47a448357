"""The one error every command group raises for a bad command line: ``ipdn`` prints it and exits 2."""


class UsageError(Exception):
    """Exit 2 with this message."""
