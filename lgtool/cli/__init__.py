"""The `lgtool` command line: parse, call the library, print. No learning logic lives here.

Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 input invalid or missing, 4 a --check failed.
With --json, stdout holds exactly one JSON object; logs and progress go to stderr.
"""

from __future__ import annotations

import os
import sys

import typer

from lgtool.base.arch import one_line
from lgtool.base.errors import InputError, LgtoolError, out_of_memory
from lgtool.base.interrupt import (
    Terminated,
    hold_signals,
    ignore_signals,
    raise_if_terminated,
    raise_on_sigterm,
    sigterm_received,
)
from lgtool.base.text import literal
from lgtool.cli.app import app, err
from lgtool.cli.quiet import warnings_held

# The commands, in the order `lgtool --help` lists them: importing one registers it on `app`.
from lgtool.cli import learn, expand, finetune, inspect, convert, bench  # noqa: F401  # isort: skip

__all__ = ["app", "main"]


def main() -> None:
    """Runs the command in sys.argv and exits with its code. In a process that goes on (tests), the signal
    handlers it set are put back as it ends."""
    restore = hold_signals()  # until `_main` is ready to report a signal
    try:
        with warnings_held():  # library warnings come after a success, and never before an error line
            _main()
    finally:
        restore()


def _main() -> None:
    try:
        raise_on_sigterm()  # SIGTERM ends a command as Ctrl-C does (training saves first), with exit 143
        raise_if_terminated()  # one that came while the command line was imported (lgtool/__main__.py)
        _check_cwd()
        code = app(standalone_mode=False)  # parser errors come to us, so they get one line too
        raise_if_terminated()  # one that came during an import and found no later place to be raised
    except typer.Abort:
        _fail("interrupted", 130)
    except typer.TyperException as e:  # the option parser's (click's) errors: exit 2
        command = f"lgtool {sys.argv[1]}" if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "lgtool"
        _fail(f"{e.format_message()} (see {command} --help)", e.exit_code)
    except LgtoolError as e:
        _fail(str(e), e.exit_code)
    except (MemoryError, RuntimeError) as e:  # memory ran out where no check saw it coming (torch says so by text)
        if not out_of_memory(e):
            raise
        detail = one_line(str(e) or type(e).__name__)[:200]
        _fail(f"out of memory ({detail}); free memory, or use a smaller --batch-size or size", 1)
    except OSError as e:  # what the system refused, where no check could see it coming: still one line
        _fail(f"{str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}", 1)
    except Terminated:
        _fail("terminated by SIGTERM", 143)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    if code == 130:  # typer returns Ctrl-C (and SIGTERM, raised as one) outside training as a bare 130
        _fail(*(("terminated by SIGTERM", 143) if sigterm_received() else ("interrupted", 130)))
    _exit(code if isinstance(code, int) else 0)


def _check_cwd() -> None:
    try:
        os.getcwd()  # every relative path is resolved against it
    except FileNotFoundError:
        raise InputError(
            "the current folder no longer exists (deleted while this shell was in it); cd to one that does"
        ) from None


def _fail(message: str, code: int) -> None:
    _exit(code, f"[red]error:[/] {literal(' '.join(message.split()))}")


def _exit(code: int, line: str = "") -> None:
    ignore_signals()  # the command has its outcome: a signal from here on cannot cut its line short into a traceback
    if line:
        err.print(line, highlight=False, soft_wrap=True)
    sys.exit(code)
