"""The typer app the commands register on, the two consoles, and what every command shares: the exit-code
epilogs and `--json` output. Nothing about tensors."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from typer.core import TyperOption

from lgtool.base import __version__
from lgtool.base.atomic import scoped
from lgtool.base.interrupt import ignore_signals, raise_if_terminated
from lgtool.base.text import dumps

# The exit codes, said once (under `lgtool --help`); every command's help points there in one line.
EXIT_CODES = (
    "Exit codes: 0 ok; 1 runtime failure (a NaN loss, memory run out, a refused write: what was kept is named); "
    "2 usage error (a bad flag or value, checked before any data is read); 3 invalid input or output (a bad file, a "
    "size that cannot be made, a size or batch that cannot fit in memory, an output that exists or is an input); "
    "4 a --check failed; 130 Ctrl-C; 143 SIGTERM (training saves a checkpoint first). Errors are one line on stderr. "
    "Files are written under a temporary name and renamed into place; an existing output is replaced only with "
    "--force (docs/reliability.md)."
)
SEE_EXIT_CODES = "Exit codes: see lgtool --help (or README's table)."

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
    help="Build families of Vision Transformers of many sizes from one compact learngene (SWS, TLEG, WAVE).",
    epilog=EXIT_CODES,
)
# typer 0.29 shows a type beside every option, flags too (`--force <bool>`), as if they took a value; a flag
# takes none, so it shows none, as click shows it. typer has no setting for this: its one display hook is patched.
_display_type = TyperOption.display_type_rich
TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _display_type(self, ctx)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _version(value: bool):
    if value:
        print(f"lgtool {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())


def dry_run_option(reads: str = ""):
    """`--dry-run`, the same on every command that writes: the plan on the real arguments, and nothing else.
    `reads`: what the plan of this command reads beyond headers, said in the help."""
    return typer.Option(
        False,
        "--dry-run",
        help="Make the run's checks on these arguments, reading no data and writing nothing, and exit with its code"
        + (f" {reads}" if reads else "")
        + ".",
    )


def show_plan(plan_of, as_json: bool, words, read: str = "no data read") -> None:
    """`--dry-run`: `plan_of()` makes the run's checks (a mistake raises the run's one-line error and exit code);
    then the plan's `describe()` is printed: one JSON object with "dry_run": true, or one line, "dry run: would "
    + `words(description)` + what was `read`."""
    plan = scoped(plan_of)()  # the outputs its checks claim are forgotten: no write follows to hold to them
    if is_main():
        emit(
            {"dry_run": True, **plan.describe()},
            as_json,
            lambda d: out.print(f"dry run: would {words(d)}; {read}, nothing written"),
        )


def data_words(p: dict) -> str:
    """A training plan's data in words: "6,000 images of fashion-mnist" (a validation share held out, if asked)."""
    data = f"{p['train_samples']:,} images of {p['data']}" if p["train_samples"] else p["data"]
    return data + (f", {p['val_fraction']:.0%} held out for validation" if p.get("val_fraction") else "")


def emit(result: dict, as_json: bool, render) -> None:
    """Prints a command's result, its last act: a signal held back during an import ends the command here, before
    anything is printed; one that comes later is ignored (the result is printed whole, the exit code is 0)."""
    raise_if_terminated()
    ignore_signals()
    if as_json:
        sys.stdout.write(dumps(result) + "\n")  # strict: NaN and Infinity from a crafted file become null
    else:
        render(result)


def is_main() -> bool:
    """Whether this process prints: the only one, or rank 0 of a torchrun."""
    return os.environ.get("RANK", "0") == "0"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
