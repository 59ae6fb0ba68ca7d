"""The `lgtool` command line. `main` is the console entry point."""

from lgtool.cli.app import app, main

__all__ = ["app", "main"]
