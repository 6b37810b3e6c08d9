"""The one error type the local stack raises: its message is the single line a user needs."""


class StackError(RuntimeError):
    """A stack problem the user can act on (missing tool, busy port, service not up in time)."""
