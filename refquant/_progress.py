"""One progress line with elapsed time and ETA, for the long CLI commands (no dependency).

Used by ``refquant report`` and ``refquant eval-weights``. Work is a sequence of steps;
each step may carry a *cost* (its expected share of the run time) so that the ETA,
``remaining cost / (done cost / time spent on it)``, is sensible when steps differ a lot (loading a
model vs. one RTN call vs. one GPTQ call on a wide layer).

A single step can take longer than any reasonable silence (one algorithm call on a
large layer, one pass of a model over its calibration text), so a daemon thread redraws
the line every ``interval`` seconds with the time spent so far: the line is never stale
for longer than that. On a terminal the line is rewritten in place (``\\r``); on a pipe
or file a new line is written at most every ``interval`` seconds (default 5 s), so logs
stay short.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

__all__: list[str] = []  # internal module


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{seconds:.1f}s"


class ProgressBar:
    """A progress line on ``stream`` (default stderr).

    Parameters
    ----------
    total : int
        Number of steps (shown as ``done/total``).
    enabled : bool
        False writes nothing (and starts no thread).
    stream : text stream, optional
    width : int
        Characters of the bar.
    total_cost : float, optional
        Sum of the steps' costs (default: ``total``, every step costs 1).
    interval : float, optional
        Seconds between redraws: default 1 on a terminal, 5 otherwise.

    Use ``step(label, cost)`` before a step's work and ``advance()`` after it, then
    ``close()`` (or use the bar as a context manager).
    """

    def __init__(self, total: int, enabled: bool = True, stream: Any = None, width: int = 24, *,
                 total_cost: float | None = None, interval: float | None = None) -> None:
        self.total, self.enabled, self.width = total, enabled, width
        self.stream = sys.stderr if stream is None else stream
        self.total_cost = float(total if total_cost is None else total_cost)
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = (1.0 if self.tty else 5.0) if interval is None else float(interval)
        self.done = 0
        self.done_cost = 0.0
        self.label = ""
        self._cost = 1.0
        self.start = self._step_start = time.perf_counter()
        self._last_write = -float("inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if enabled:
            self._thread = threading.Thread(target=self._tick, name="refquant-progress", daemon=True)
            self._thread.start()

    # ---- the line ---------------------------------------------------------------------
    def line(self) -> str:
        """The current line: bar, steps done, elapsed time, ETA, label."""
        frac = min(self.done_cost / self.total_cost, 1.0) if self.total_cost > 0 else 1.0
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        now = time.perf_counter()
        elapsed = now - self.start
        spent = self._step_start - self.start          # time of the finished steps
        if self.done_cost > 0 and spent > 0:
            # the finished steps give the rate; the running step counts as far as its own
            # expected time at that rate, so the ETA does not climb during one long step
            rate = self.done_cost / spent
            later = max(self.total_cost - self.done_cost - self._cost, 0.0) / rate
            eta = f"ETA {_duration(later + max(self._cost / rate - (now - self._step_start), 0.0))}"
        else:
            eta = "ETA ?"
        return f"[{bar}] {self.done}/{self.total} {_duration(elapsed):>7} {eta:<11} {self.label}"

    def _draw(self, force: bool = False) -> None:
        with self._lock:
            now = time.perf_counter()
            if not force and not self.tty and now - self._last_write < self.interval:
                return
            text = self.line()
            self.stream.write(f"\r{text[:110]:<110}" if self.tty else text + "\n")
            self.stream.flush()
            self._last_write = now

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw(force=True)

    # ---- the caller's side ---------------------------------------------------------------
    def step(self, label: str, cost: float = 1.0) -> None:
        """Start a step named ``label`` whose cost (for the ETA) is ``cost``."""
        if not self.enabled:
            return
        self.label, self._cost = label, float(cost)
        self._step_start = time.perf_counter()
        self._draw()

    def advance(self) -> None:
        """Finish the current step."""
        self.done += 1
        self.done_cost += self._cost
        self._step_start = time.perf_counter()
        self._cost = 0.0

    def close(self) -> None:
        """Stop redrawing and end the line."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.label = "done" if self.done >= self.total else f"stopped: {self.label}"
            self._draw(force=True)
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
