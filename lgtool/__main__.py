"""The `lgtool` command and `python -m lgtool`.

Its first act holds SIGINT and SIGTERM back: one that comes while the command line is still being imported
(typer, rich and the commands take a few tenths of a second) is raised as the command starts, and ends it with
its one line and exit code (130, 143) like one that comes later, instead of a traceback or no line at all. Its
last act ignores them: one that comes while Python shuts down changes nothing. Before its first (the interpreter
starting, `import lgtool`), Python's defaults still apply.
"""

from lgtool.base.interrupt import hold_signals, ignore_signals


def main() -> None:
    hold_signals()
    try:
        from lgtool.cli import main as run  # the command line, imported with the signals held

        run()
    finally:
        ignore_signals()  # the command has its outcome: Python's shutdown after it is not cut short either


if __name__ == "__main__":
    main()
