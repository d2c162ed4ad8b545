"""Long work shown as it goes: a rich progress bar over named stages on a terminal, one plain line per stage
elsewhere (CI logs, pipes), so a user always sees what is being waited for."""

from __future__ import annotations

import sys
import time


class Stages:
    def __init__(self, title: str, names: list[str], log=None, stream=None):
        self.title, self.names = title, names
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        self.stream = stream or sys.stderr
        self._progress = None
        self._task = None
        self._done = 0
        self._t0 = self._ts = 0.0
        self._console = None  # tests may set one (force_terminal)

    def __enter__(self) -> Stages:
        from rich.console import Console

        self._t0 = self._ts = time.monotonic()
        console = self._console or Console(file=self.stream)
        if console.is_terminal:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                      console=console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self._describe(self.names[0]), total=len(self.names))
        else:
            self.log(f"{self.title}: {self.names[0]} (1/{len(self.names)}) ...")
        return self

    def _describe(self, name: str) -> str:
        from rich.markup import escape

        return f"{escape(self.title)}: {escape(name)}"

    def next(self) -> None:
        """The current stage is done; the next one starts."""
        self._done += 1
        now = time.monotonic()
        if self._progress is not None:
            desc = self._describe(self.names[self._done]) if self._done < len(self.names) else self._describe("done")
            self._progress.update(self._task, completed=self._done, description=desc)
        else:
            self.log(f"{self.title}: {self.names[self._done - 1]} done in {now - self._ts:.1f} s"
                     + (f"; {self.names[self._done]} ({self._done + 1}/{len(self.names)}) ..."
                        if self._done < len(self.names) else ""))
        self._ts = now

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
