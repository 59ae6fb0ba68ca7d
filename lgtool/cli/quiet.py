"""Library warnings never come before a command's error line.

While a command runs, what torch, timm and other libraries warn about (the `warnings` module, and `logging`
records that would otherwise reach stderr through logging's last-resort handler) is held back. A command that
succeeds prints it afterwards, on stderr; one that fails drops it, so that its one error line stands alone.
"""

from __future__ import annotations

import logging
import sys
import warnings
from contextlib import contextmanager


class _Hold(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def warnings_held():
    """Holds library warnings while the body runs; shows them after it unless it failed (an exception, or
    SystemExit with a non-zero code)."""
    root = logging.getLogger()
    hold = _Hold()
    use_hold = not root.handlers  # an application that configured logging keeps its own handlers
    if use_hold:
        root.addHandler(hold)
    failed = True
    try:
        with warnings.catch_warnings(record=True) as caught:
            try:
                yield
                failed = False
            except SystemExit as e:
                failed = e.code not in (None, 0)
                raise
    finally:
        if use_hold:
            root.removeHandler(hold)
        if not failed:
            for w in caught:
                sys.stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))
            for record in hold.records:
                print(f"{record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)
