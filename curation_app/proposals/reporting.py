"""How long work shows it is alive: a tqdm bar on a terminal, log lines elsewhere.

`propose` over the full selection runs for minutes. Under cron, nohup or a CI log, a tqdm bar is a
single line rewritten with carriage returns (or nothing at all), so the job looks hung: there it
prints one plain line every `LOG_SECONDS` with the count, the rate and the time left, and a last
line when the step ends.
"""
from __future__ import annotations

import sys
import time

LOG_SECONDS = 5.0


def progress_mode(enabled: bool = True) -> str:
    """'bar' on a terminal, 'lines' elsewhere, 'off' when the caller wants silence."""
    if not enabled:
        return "off"
    return "bar" if sys.stderr.isatty() else "lines"


class Progress:
    def __init__(self, total: int, what: str, unit: str, mode: str, *, every: float | None = None):
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"progress mode '{mode}' is not bar, lines or off")
        self.total, self.what, self.unit, self.mode = total, what, unit, mode
        self.every = LOG_SECONDS if every is None else every
        self.done = 0
        self.started = self.logged = time.monotonic()
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=unit, smoothing=0.1)

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif self.mode == "lines" and time.monotonic() - self.logged >= self.every:
            self.logged = time.monotonic()
            self._line()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines" and self.done:
            self._line(final=True)

    def _line(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.what}: {self.done:,}/{self.total:,} {self.unit}"
        if final:
            text += f" in {_duration(elapsed)}"
        else:
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            text += f" ({100.0 * self.done / max(self.total, 1):.0f}%, {rate:,.1f} {self.unit}/s, about {_duration(left)} left)"
        print(text, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
