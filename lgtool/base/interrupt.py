"""Ctrl-C (SIGINT) and SIGTERM (what `kill`, schedulers and container runtimes send) end a command the same way.

During training both only record that they came: the loop saves a checkpoint at the next optimizer step and
stops with one line that names it (exit 130 for SIGINT, 143 for SIGTERM). Elsewhere SIGTERM is raised where it
arrives, like Ctrl-C's KeyboardInterrupt, so that every temporary is removed on the way out. Torch-free.
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


_received: list[int] = []
_pending: list[int] = []  # a SIGTERM that came during an import, not raised yet


def _raise_terminated(signum, frame):
    _received.append(signum)
    if _importing(frame):
        # Raised in the middle of an import, it can be swallowed (torch probes numpy in a bare `try`: the command
        # then ran on to exit 0) or leave a module half-imported (the next import of it: an ImportError
        # traceback). It is raised once the import is over instead (`raise_if_terminated`).
        _pending.append(signum)
        return
    raise Terminated()


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def raise_if_terminated() -> None:
    """Raises Terminated for a SIGTERM that came during an import: called after lazy imports, before an output
    takes its final name, and as a command ends."""
    if _pending:
        _pending.clear()
        raise Terminated()


def raise_on_sigterm() -> None:
    """Makes SIGTERM raise Terminated (the command line's entry point calls this)."""
    _received.clear()
    _pending.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def sigterm_received() -> bool:
    """Whether a SIGTERM was raised as Terminated since `raise_on_sigterm`: typer reports both it and Ctrl-C as a
    bare exit code 130, and this tells them apart."""
    return bool(_received)


def defer_signals():
    """SIGINT and SIGTERM only append their number to the returned list until `restore()` is called."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        return received, lambda: None
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in EXIT_CODES}

    def restore():
        for s, handler in previous.items():
            signal.signal(s, handler)

    return received, restore


def stopped_by(signum: int) -> str:
    return "interrupted" if signum == signal.SIGINT else f"terminated by {signal.Signals(signum).name}"
