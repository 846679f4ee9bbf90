"""Progress of long work on stderr: announced stages and counted work.

Building a large core can take minutes (elaboration, Verilog conversion),
and so can building a simulator and simulating many vectors.  This module
tells the user what is going on, the way Python command-line tools
usually do:

* on a terminal (``sys.stderr.isatty()``) a single line redrawn in place
  with ``\\r``: a stage shows its elapsed seconds, a counter a bar, the
  count, the rate and the time left; at most :data:`TTY_INTERVAL` seconds
  between redraws is the throttle (about ten redraws a second);
* otherwise (a log file, a pipe, CI) plain lines: one when a stage or
  counter starts, a counter's progress at most every
  :data:`PLAIN_INTERVAL` seconds, and a final line.

Every message starts with ``rtlgen: ``.  Nothing is written to stdout,
which carries results.  ``configure(quiet=True)`` (the command line's
``-q``) silences this module only: errors and warnings are printed
elsewhere and always appear.  By default (library use) progress is shown.

Usage::

    from rtlgen import progress
    with progress.stage("converting to Verilog"):
        ...                                   # "done in 12.3 s" if it took > 1 s
    with progress.counter("simulating 1000 vectors on icarus", total=1000) as bar:
        bar.update(10)                        # 10 more done
        bar.set(500)                          # or: 500 done in all

The memory estimate that refuses oversized layers before elaboration lives
in :mod:`rtlgen.hw.size` (``RTLGEN_MEMORY_LIMIT_GB`` overrides the memory it
compares with).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["configure", "is_quiet", "stage", "counter", "Counter", "note", "every"]

PREFIX = "rtlgen: "
#: a stage that took longer than this many seconds reports its time
REPORT_AFTER = 1.0
#: seconds between redraws of the terminal line (about ten a second)
TTY_INTERVAL = 0.1
#: seconds between two progress lines when stderr is not a terminal
PLAIN_INTERVAL = 5.0
#: seconds between redraws of a stage's elapsed time on a terminal
TICK_INTERVAL = 1.0

_quiet = False
_lock = threading.RLock()
#: length of the terminal line currently drawn without a newline (0: none)
_open_line = 0


def _now() -> float:
    """The clock used for elapsed times and throttling (tests replace it)."""
    return time.monotonic()


def configure(quiet: bool = False) -> None:
    """Show progress (the default) or, with ``quiet``, nothing from this module."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    """True when progress is silenced by :func:`configure`."""
    return _quiet


def _stream():
    """The stream to write to: the current ``sys.stderr`` (None when there is none)."""
    return sys.stderr


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _columns(stream) -> int:
    """Width of the terminal behind ``stream`` (``COLUMNS`` first, 80 when unknown)."""
    columns = 0
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        pass
    if columns <= 0:
        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return max(20, columns) if columns > 0 else 80


def _write(stream, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass   # a closed or broken stderr must never break the work itself


def _emit_line(text: str) -> None:
    """Write one complete line, ending a terminal line in progress first."""
    global _open_line
    stream = _stream()
    if stream is None or _quiet:
        return
    with _lock:
        if _open_line:
            _write(stream, "\n")
            _open_line = 0
        _write(stream, PREFIX + text + "\n")


def _draw(text: str, final: bool = False) -> None:
    """Redraw the terminal line as ``text`` (ended with a newline when ``final``)."""
    global _open_line
    stream = _stream()
    if stream is None or _quiet:
        return
    with _lock:
        line = (PREFIX + text)[:_columns(stream) - 1]
        pad = " " * max(0, _open_line - len(line))
        _write(stream, "\r" + line + pad + ("\n" if final else ""))
        _open_line = 0 if final else len(line)


def _end_open_line() -> None:
    """Finish a terminal line in progress (before an error message, say)."""
    global _open_line
    stream = _stream()
    with _lock:
        if _open_line and stream is not None:
            _write(stream, "\n")
        _open_line = 0


def note(text: str) -> None:
    """One progress line (``rtlgen: text``), unless quiet."""
    _emit_line(text)


def _seconds(t: float) -> str:
    if t < 60:
        return f"{t:.1f} s"
    minutes, seconds = divmod(int(round(t)), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@contextlib.contextmanager
def every(interval: float, action, enabled: bool = True) -> Iterator[None]:
    """Call ``action()`` every ``interval`` seconds, from a thread, while the body runs."""
    if not enabled:
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            action()
    thread = threading.Thread(target=loop, name="rtlgen-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def stage(text: str) -> Iterator[None]:
    """Announce a step of work (``rtlgen: text``) and, if it took over a second, its time.

    On a terminal the line shows the seconds elapsed while the step runs
    and is completed in place with ``done in T``; otherwise one line at
    the start and, when the step took more than :data:`REPORT_AFTER`
    seconds, a line ``text: done in T``.  If the step raises, the
    terminal line is ended so that the error starts on a line of its own.
    """
    stream = _stream()
    if _quiet or stream is None:
        yield
        return
    tty = _is_tty(stream)
    start = _now()
    if tty:
        _draw(f"{text} ...")
    else:
        _emit_line(text)
    ok = False
    try:
        with every(TICK_INTERVAL, lambda: _draw(f"{text} ... {int(_now() - start)} s"), enabled=tty):
            yield
        ok = True
    finally:
        elapsed = _now() - start
        took = f"done in {_seconds(elapsed)}"
        if tty:
            if ok:
                _draw(f"{text}: {took}" if elapsed > REPORT_AFTER else f"{text}: done", final=True)
            else:
                _end_open_line()
        elif ok and elapsed > REPORT_AFTER:
            _emit_line(f"{text}: {took}")


class Counter:
    """Progress of ``total`` units of work (vectors, say); see :func:`counter`.

    :meth:`update` adds to the count, :meth:`set` sets it; both are cheap
    (drawing is throttled) and may be called from another thread.
    :meth:`close` writes the final line with the count, the time and the
    rate.
    """

    def __init__(self, text: str, total: int | None, unit: str = ""):
        self.text = text
        self.total = int(total) if total else None
        self.unit = unit
        self.done = 0
        self.start = _now()
        self._last_draw = None
        self._closed = False
        stream = _stream()
        self._tty = stream is not None and _is_tty(stream)
        if self._tty:
            self._redraw(self.start)
            self._last_draw = self.start
        else:
            _emit_line(text)
            self._last_draw = self.start

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units as done."""
        self.set(self.done + n)

    def set(self, done: int) -> None:
        """Set the number of units done so far (a count only grows)."""
        with _lock:
            if self._closed or done <= self.done:
                return
            self.done = int(done)
            now = _now()
            interval = TTY_INTERVAL if self._tty else PLAIN_INTERVAL
            if now - self._last_draw < interval:
                return
            self._last_draw = now
            if self._tty:
                self._redraw(now)
            else:
                _emit_line(f"{self.text}: {self._count()}{self._left(now)}")

    def _count(self) -> str:
        if self.total:
            return f"{self.done:,}/{self.total:,} ({100 * self.done // self.total}%)"
        return f"{self.done:,}"

    def _rate(self, elapsed: float) -> str:
        if elapsed <= 0 or not self.done:
            return ""
        rate = self.done / elapsed
        unit = f" {self.unit}" if self.unit else ""
        return f"{rate:,.0f}{unit}/s" if rate >= 10 else f"{rate:.2g}{unit}/s"

    def _left(self, now: float) -> str:
        """``, <time> left`` at the rate so far (empty until there is one, or without a total)."""
        elapsed = now - self.start
        if not self.total or not self.done or elapsed <= 0 or self.done >= self.total:
            return ""
        return f", {_seconds((self.total - self.done) * elapsed / self.done)} left"

    def _redraw(self, now: float) -> None:
        """The terminal line: text, percentage, bar, count, rate, time left (most useful first)."""
        elapsed = now - self.start
        parts = [self.text]
        if self.total:
            width = 12
            filled = width * min(self.done, self.total) // self.total
            parts.append(f"{100 * self.done // self.total:3d}% [" + "#" * filled + "." * (width - filled) + "]")
            parts.append(f"{self.done:,}/{self.total:,}")
        else:
            parts.append(f"{self.done:,}")
        if elapsed > 0 and self.done:
            parts.append(self._rate(elapsed))
            if self.total and self.done < self.total:
                left = (self.total - self.done) * elapsed / self.done
                parts.append(f"{_seconds(left)} left")
        _draw(" ".join(parts))

    def close(self, ok: bool = True) -> None:
        """Write the final line (count, time, rate); with ``ok`` false just end the terminal line."""
        with _lock:
            if self._closed:
                return
            self._closed = True
            if not ok:
                if self._tty:
                    _end_open_line()
                return
            elapsed = _now() - self.start
            rate = self._rate(elapsed)
            tail = f"{self._count()} in {_seconds(elapsed)}" + (f" ({rate})" if rate else "")
            if self._tty:
                _draw(f"{self.text}: {tail}", final=True)
            else:
                _emit_line(f"{self.text}: {tail}")

    def __enter__(self) -> "Counter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


class _Silent(Counter):
    """The counter handed out when quiet: counts, prints nothing."""

    def __init__(self, text: str, total: int | None, unit: str = ""):
        self.text, self.total, self.unit = text, total, unit
        self.done = 0
        self.start = _now()
        self._closed = False

    def set(self, done: int) -> None:
        self.done = max(self.done, int(done))

    def close(self, ok: bool = True) -> None:
        self._closed = True


def counter(text: str, total: int | None, unit: str = "") -> Counter:
    """A :class:`Counter` for ``total`` units of work, announced as ``text``.

    Use it as a context manager, or call :meth:`Counter.close` at the end.
    ``unit`` names the units in the rate (``"vectors"`` gives ``120 vectors/s``).
    """
    if _quiet or _stream() is None:
        return _Silent(text, total, unit)
    return Counter(text, total, unit)
