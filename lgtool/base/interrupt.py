"""Ctrl-C (SIGINT) and SIGTERM (what `kill`, schedulers and container runtimes send) end a command the same way.

During training both only record that they came: the loop saves a checkpoint at the next optimizer step and
stops with one line that names it (exit 130 for SIGINT, 143 for SIGTERM). Elsewhere SIGINT is raised where it
arrives as KeyboardInterrupt, and SIGTERM as its subclass `Terminated`, so that every temporary is removed on the
way out. Both are held back (recorded, and raised later by `raise_if_terminated`) where raising them could lose
them or give a traceback: during an import, and while the command line itself is being imported. Once a command
has its outcome (its result or its one error line, printed whole) they are ignored. Torch-free.
"""

from __future__ import annotations

import signal
import threading

from lgtool.base.errors import LgtoolError

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(LgtoolError):
    """Training stopped by a signal, its checkpoint saved; the exit code says which signal."""

    exit_code = 130

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = EXIT_CODES.get(signum, 130)


class Terminated(KeyboardInterrupt):
    """SIGTERM outside training: a KeyboardInterrupt, so that it unwinds exactly as Ctrl-C does."""


_raised: list[int] = []  # the signals raised since `raise_on_sigterm`
_pending: list[int] = []  # those held back, not raised yet


def _raise(signum: int):
    _raised.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _raise_unless_importing(signum, frame):
    if _importing(frame):
        # Raised in the middle of an import, it can be swallowed (torch probes numpy in a bare `try`: the command
        # then ran on to exit 0) or leave a module half-imported (the next import of it: an ImportError
        # traceback). It is raised once the import is over instead (`raise_if_terminated`).
        _pending.append(signum)
        return
    _raise(signum)


def _hold(signum, frame):
    _pending.append(signum)


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _install(handler):
    """Sets `handler` for SIGINT and SIGTERM; returns what puts the previous ones back."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return lambda: None
    previous = {s: signal.signal(s, handler) for s in EXIT_CODES}

    def restore():
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


def raise_if_terminated() -> None:
    """Raises the first signal held back (SIGTERM as Terminated, SIGINT as KeyboardInterrupt), dropping the rest:
    called after lazy imports, before an output takes its final name, as a command starts, and before it prints
    its result."""
    if _pending:
        signum = _pending[0]
        _pending.clear()
        _raise(signum)


def hold_signals():
    """Makes SIGINT and SIGTERM only wait for `raise_if_terminated`: the process's first act (lgtool/__main__.py,
    before the command line is imported), and the command line's until it can report one. Returns what puts the
    previous handlers back and drops what was held."""
    restore = _install(_hold)

    def restore_and_drop():
        restore()
        _pending.clear()

    return restore_and_drop


def ignore_signals():
    """Makes SIGINT and SIGTERM do nothing: a command's last act, once it has its outcome (its result or error line
    is printed whole, with its exit code). Ignored, unlike handled, they stay so while Python shuts down, which
    puts back the system's default for a Python handler. Returns what puts the previous handlers back."""
    return _install(signal.SIG_IGN)


def raise_on_sigterm() -> None:
    """Makes SIGTERM raise Terminated, and SIGINT KeyboardInterrupt, where they arrive, except during an import (see
    `_raise_unless_importing`). One held back so far stays held, for `raise_if_terminated`."""
    _raised.clear()
    _install(_raise_unless_importing)


def sigterm_received() -> bool:
    """Whether the first signal raised since `raise_on_sigterm` was SIGTERM: typer reports both it and Ctrl-C as a
    bare exit code 130, and this tells them apart."""
    return _raised[:1] == [signal.SIGTERM]


def defer_signals():
    """SIGINT and SIGTERM only append their number to the returned list until `restore()` is called."""
    received: list[int] = []
    return received, _install(lambda signum, frame: received.append(signum))


def stopped_by(signum: int) -> str:
    return "interrupted" if signum == signal.SIGINT else f"terminated by {signal.Signals(signum).name}"
