"""Errors a user can cause. The CLI prints them as one line and exits with `exit_code`."""


class LgtoolError(Exception):
    exit_code = 1


class UsageError(LgtoolError):
    exit_code = 2


class InputError(LgtoolError):
    """Input invalid or missing: bad file, wrong schema, a size the learngene cannot make."""

    exit_code = 3


class CheckError(LgtoolError):
    exit_code = 4
