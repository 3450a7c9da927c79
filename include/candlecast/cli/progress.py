"""Progress bars of the long commands: counts (steps or candles done of the total) on a
terminal, nothing at all otherwise.

A bar is drawn only when the console writes to a terminal: captured output (tests, pipes, DVC
stages, ``--json``) gets the command's summary alone. Bars are transient: they vanish when the
work ends or fails, so what stays on screen is the summary, or the one-line error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)


def _progress(console: Console, unit: str) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TextColumn("{task.fields[doing]}", style="dim"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


@contextmanager
def steps_bar(
    console: Console, description: str, steps: Sequence[str]
) -> Iterator[Callable[[str], None]]:
    """A bar over named steps; the callable is told each step as it starts (a name it does
    not know leaves the count as is)."""
    with _progress(console, "steps") as progress:
        task = progress.add_task(description, total=len(steps), doing="")

        def starting(step: str) -> None:
            done = steps.index(step) if step in steps else progress.tasks[0].completed
            progress.update(task, completed=done, doing=step)

        yield starting
        progress.update(task, completed=len(steps), doing="done")


@contextmanager
def count_bar(
    console: Console, description: str, total: int, unit: str
) -> Iterator[Callable[[int], None]]:
    """A bar over ``total`` things (``unit``: "candles"); the callable is told how many are
    done."""
    with _progress(console, unit) as progress:
        task = progress.add_task(description, total=total, doing="")
        yield lambda done: progress.update(task, completed=min(done, total))
        progress.update(task, completed=total)
