"""Where a long command is: a progress bar on a terminal, timestamped lines elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from huimin.cli_app import console
from simulators.visit_run import OnProgress


class LogWhenNotATerminal:
    """Where a long run is, as timestamped lines, for a console that shows no progress bar
    (a log file, CI, `nohup`): each stage, then the visits done once a minute, and how many of
    them were dropped unstarted (the platform too far behind): a run past the platform's
    capacity then does not read as one keeping up."""

    EVERY_S = 60.0

    def __init__(self) -> None:
        self.on = not console.is_terminal
        self.total: int | None = None
        self.description = ""
        self.done, self.dropped, self.last = 0, 0, time.monotonic()

    def stage(self, description: str, visits: int | None) -> None:
        self.description = description
        self.total, self.done, self.dropped, self.last = visits, 0, 0, time.monotonic()
        if self.on:
            console.print(f"{time.strftime('%H:%M:%S')} {description}"
                          + (f": {visits:,} visits" if visits else ""), soft_wrap=True)

    def visits_done(self, finished: int, dropped: int) -> None:
        self.done += finished + dropped
        self.dropped += dropped
        if self.on and time.monotonic() - self.last >= self.EVERY_S:
            self.last = time.monotonic()
            unstarted = (f", {self.dropped:,} of them dropped unstarted (the platform too far "
                         "behind)" if self.dropped else "")
            console.print(f"{time.strftime('%H:%M:%S')} {self.done:,} of {self.total or 0:,} "
                          f"visits done{unstarted}", soft_wrap=True)


def progress_display() -> Progress:
    """The progress bar on a terminal; elsewhere none (not even the blank line rich leaves
    as it stops): `LogWhenNotATerminal` writes timestamped lines instead."""
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True,
                    disable=not console.is_terminal)


def reporters(progress: Progress, visits: int | None
               ) -> tuple[Callable[..., None], OnProgress]:
    """A run's stage and visits-done callbacks: the progress bar, and the same as timestamped
    lines where there is no terminal to show the bar (CI, a log file). `visits`: the run's
    count, the bar's total through every stage; None where each stage says its own
    (`huimin bench`, a rate at a time)."""
    task = progress.add_task("starting", total=visits)
    log = LogWhenNotATerminal()

    def stage(description: str, stage_visits: int | None = None) -> None:
        if visits is None:
            progress.update(task, description=description, total=stage_visits, completed=0)
        else:
            progress.update(task, description=description)
        log.stage(description, stage_visits)
        log.total = log.total or visits

    def done(finished: int, dropped: int) -> None:
        progress.advance(task, finished + dropped)
        log.visits_done(finished, dropped)
        if dropped:
            progress.update(task, description=f"{log.description} ({log.dropped:,} dropped)")
    return stage, done



