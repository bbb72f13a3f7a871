"""Progress of long work: a tqdm bar on a terminal, a plain line every few seconds elsewhere.

Under nohup, cron, torchrun's log capture or CI, a tqdm bar is one line rewritten with carriage
returns, so a run that trains for hours looks hung in its log. There, `progress()` returns a
`Lines` reporter with the part of tqdm's interface the package uses (`update`, `set_postfix`,
`close`), which prints `what: done/total unit (percent, rate, time left, postfix)` every
`LINE_SECONDS` and once at the end.
"""
from __future__ import annotations

import sys
import time

LINE_SECONDS = 10.0


def progress(total: int, what: str, unit: str, *, enabled: bool = True, initial: int = 0):
    """A tqdm bar (stderr is a terminal), a `Lines` reporter (it is not), or a silent one."""
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=what, unit=unit, mininterval=1.0, leave=False)
    return Lines(total, what, unit, initial=initial, enabled=enabled)


class Lines:
    def __init__(self, total: int, what: str, unit: str, *, initial: int = 0, enabled: bool = True,
                 every: float = LINE_SECONDS):
        self.total, self.what, self.unit, self.enabled, self.every = total, what, unit, enabled, every
        self.done = self.first = initial
        self.postfix = ""
        self.started = self.printed = time.monotonic()

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.enabled and time.monotonic() - self.printed >= self.every:
            self.printed = time.monotonic()
            self._print()

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.postfix = ", ".join(f"{key} {value}" for key, value in values.items())

    def close(self) -> None:
        if self.enabled and self.done > self.first:
            self._print(final=True)
        self.enabled = False

    def _print(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.done - self.first) / elapsed
        text = f"{self.what}: {self.done:,}/{self.total:,} {self.unit}"
        if final:
            text += f" in {elapsed:,.0f} s ({rate:,.1f} {self.unit}/s)"
        else:
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            text += (f" ({100 * self.done / max(self.total, 1):.0f}%, {rate:,.1f} {self.unit}/s, "
                     f"about {left:,.0f} s left)")
        if self.postfix:
            text += f" {self.postfix}"
        print(text, file=sys.stderr, flush=True)
