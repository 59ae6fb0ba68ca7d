"""Training progress on stderr: a rich bar on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lgtool.base.text import literal


class Reporter:
    """An `on_event(**event)` callback for `loop.fit`: step events (loss, images/s) and epoch-end events (top1)."""

    def __init__(self, description: str, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.description = literal(description)  # a source folder's name may hold rich markup
        self.bar = None
        self.task = None

    def __enter__(self):
        if self.console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} steps"),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, **e):
        if "note" in e:  # a line the run has to say before it trains (e.g. what seeding could not give)
            self.console.print(f"{self.description}: {literal(e['note'])}", highlight=False)
            return
        if "epoch_end" in e:
            self.console.print(
                f"{self.description}: epoch {e['epoch_end']}/{e['epochs']}  held-out top-1 {e['top1']:.4f}",
                highlight=False,
            )
            return
        status = f"loss {e['loss']:.4f}  {e['images_per_s']:.0f} img/s"
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task(self.description, total=e["total"], status=status)
        self.bar.update(self.task, completed=e["step"], status=status)
