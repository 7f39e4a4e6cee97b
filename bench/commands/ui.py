"""The run UI: a rich progress bar while cells run, and one log line per finished cell."""
from __future__ import annotations

import sys
import time
from typing import Any

from ..workers.process import CellOutcome
from ..spec import Cell


class RunUI:
    """Rich progress: cells done/total, the current cell and its phase, elapsed, ETA; one log
    line per finished cell (so a CI log shows progress without a terminal)."""

    def __init__(self, console: Any, quiet: bool = False) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.console, self.quiet = console, quiet
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("cells"), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[phase]}"),
                                 console=console, transient=False, disable=quiet)
        self.task = None
        self.t0 = time.monotonic()

    def start(self, total: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("run", total=total, phase="")

    def cell_started(self, cell: Cell) -> None:
        desc = f"{cell.framework}:{cell.variant} {cell.model.name} {cell.device} b{cell.train.batch_size}"
        self.progress.update(self.task, description=desc, phase="starting")

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def add_total(self, n: int) -> None:
        """An adaptive check adds rounds while a cell's answer is unclear."""
        total = self.progress.tasks[0].total or 0
        self.progress.update(self.task, total=total + n)

    def cell_progress(self, key: str, phase: str) -> None:
        self.progress.update(self.task, phase=phase)

    def cell_finished(self, cell: Cell, outcome: CellOutcome) -> None:
        self.progress.advance(self.task)
        # A suspect record reads "ok?" here as in the table, with its first failed self-check.
        status = "ok?" if outcome.suspect else outcome.status
        colour = {"ok": "green", "skipped": "yellow", "ok?": "yellow"}.get(status, "red")
        from rich.markup import escape

        why = "; ".join(r for r in (outcome.reason, outcome.suspect) if r)
        reason = f" - {escape(why)}" if why else ""
        self.console.log(f"[{colour}]{status}[/] {cell.framework}:{cell.variant} {cell.model.name} "
                         f"{cell.device} b{cell.train.batch_size}{reason}")

    def stop(self) -> None:
        self.progress.stop()


def console(stderr: bool = False):
    """stderr: for a command whose stdout is data (check --format json), progress and notes go there."""
    from rich.console import Console

    # A log file or CI has no terminal width; 80 columns would fold the table into unreadable
    # slivers, so give non-terminals a width that fits it.
    stream = sys.stderr if stderr else sys.stdout
    return Console(highlight=False, width=None if stream.isatty() else 180, stderr=stderr)
