"""The `lgtool` command and `python -m lgtool`.

Its first act holds SIGINT and SIGTERM back: one that comes while the command line is still being imported
(typer, rich and the commands take a few tenths of a second) is raised as the command starts, and ends it with
its one line and exit code (130, 143) like one that comes later, instead of a traceback or no line at all.
Before it (the interpreter starting, `import lgtool`) Python's defaults still apply.
"""

from lgtool.base.interrupt import hold_signals


def main() -> None:
    hold_signals()
    from lgtool.cli import main as run  # the command line, imported with the signals held

    run()


if __name__ == "__main__":
    main()
