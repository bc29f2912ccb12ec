"""One status line per phase: done / running / failed / remaining, and event lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

__all__ = ["Progress"]


class Progress:
    """A live line on a terminal; on a log file, a line per change and one per event."""

    def __init__(self, out: Callable[[str], None] = print, tty: bool | None = None):
        self.out = out
        self.tty = sys.stdout.isatty() if tty is None else tty
        self.t0 = time.monotonic()
        self.last: tuple | None = None

    def line(self, phase: str, done: int, running: int, failed: int, remaining: int) -> None:
        text = (f"[{phase}] done {done} · running {running} · failed {failed} · "
                f"remaining {remaining}  ({time.monotonic() - self.t0:.0f} s)")
        state = (phase, done, running, failed, remaining)
        if not self.tty and state == self.last:
            return
        self.last = state
        if self.tty:
            sys.stdout.write("\r" + text.ljust(78))
            sys.stdout.flush()
        else:
            self.out(text)

    def event(self, text: str) -> None:
        if self.tty:
            sys.stdout.write("\r" + " " * 78 + "\r")
        self.out(text)

    def end(self) -> None:
        if self.tty:
            sys.stdout.write("\n")
        self.last = None
