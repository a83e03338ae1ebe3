"""Progress for output that is not a terminal: plain lines, throttled, instead of tqdm redraws
(a tqdm bar in a log file leaves every redraw behind)."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["ProgressLines", "is_terminal"]


def is_terminal(stream: Any = None) -> bool:
    """True when ``stream`` (default: stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


class ProgressLines:
    """``desc: done/total note (elapsed)`` lines, at most one every ``every_s`` seconds, and always the last.

    Args:
        desc: what is counted (``convert``, ``predict``).
        total: the count at the end.
        every_s: least seconds between two lines.
        stream: where the lines go (default: stderr).
    """

    def __init__(self, desc: str, total: int, every_s: float = 30.0, stream: Any = None):
        self.desc, self.total, self.every_s, self.stream = desc, int(total), float(every_s), stream
        self._t0 = time.monotonic()
        self._last = -float("inf")

    def update(self, done: int, note: str = "") -> None:
        """Report ``done`` of ``total``; printed when ``every_s`` has passed or ``done == total``."""
        now = time.monotonic()
        if done < self.total and now - self._last < self.every_s:
            return
        self._last = now
        elapsed = time.strftime("%H:%M:%S", time.gmtime(now - self._t0))
        tail = f" {note}" if note else ""
        print(f"{self.desc}: {done}/{self.total}{tail} ({elapsed})", file=self.stream or sys.stderr, flush=True)
