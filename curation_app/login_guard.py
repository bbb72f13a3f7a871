"""Repeated failed logins: paused per user name and per client address, answered without hashing.

A password check costs scrypt (N=2^17: ~0.5 s of a core and 128 MiB). Without a limit a flood of
wrong passwords takes the server's memory and the annotators' CPU, and a patient attacker tries
thousands of passwords an hour. So:

- **pause after `FREE_FAILURES`** consecutive failures of one user name, or from one address: the
  next attempt is allowed only after a pause that starts at `FIRST_PAUSE` and doubles with every
  further failure, up to `LONGEST_PAUSE`. An attempt during a pause never reaches scrypt: it is
  refused (HTTP 429, with the seconds to wait), and the refusal itself is held back for the rest
  of the pause (`SLOW_ANSWER` at most), so a client that waits for answers floods at a few
  requests a second instead of thousands, and costs a sleeping coroutine, not CPU. A paused
  address is refused before its request body is even read. A refused attempt does not lengthen
  the pause, so the real user is locked out for at most `LONGEST_PAUSE` however long a flood
  lasts. One name then gets at
  most ~25 guesses an hour (5, then 1, 2, 4 ... 256 s, then one every 5 minutes), and so does one
  address. A success clears both counters.
- **one password check at a time** (`CONCURRENT_CHECKS`; each holds 128 MiB and a core for half a
  second), at most `WAITING_CHECKS` waiting; beyond that an attempt is answered "busy" (HTTP 503)
  at once. Signed-in annotators need no check, so a flood leaves them the other cores.

Pauses live in the server process's memory (a restart forgets them; so does the other of two
servers on one project). Failures and pauses are logged with the name and address.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

FREE_FAILURES = 5
FIRST_PAUSE = 1.0  # seconds
LONGEST_PAUSE = 300.0
CONCURRENT_CHECKS = 1  # scrypt runs one at a time: 128 MiB, and a flood holds at most one core
WAITING_CHECKS = 16
SLOW_ANSWER = 5.0  # a refused attempt is answered after up to this many seconds (the pause, at most)
BUSY_ANSWER = 1.0  # seconds before "busy" is answered
FORGET_AFTER = 3600.0  # a counter without a failure for this long is dropped
MAX_TRACKED = 100_000  # names and addresses remembered at most (a flood of made-up names)


@dataclass
class _Record:
    failures: int = 0
    until: float = 0.0  # no attempt before this time
    last: float = 0.0


class LoginThrottle:
    def __init__(self, *, clock=time.monotonic):
        self.clock = clock
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()

    def wait(self, name: str, address: str) -> float:
        """Seconds before this name may try again from this address (0: now)."""
        now = self.clock()
        with self._lock:
            return max((r.until - now for r in self._find(name, address) if r.until > now), default=0.0)

    def address_wait(self, address: str) -> float:
        """Seconds before any sign-in from this address (known before the request body is read)."""
        now = self.clock()
        with self._lock:
            record = self._records.get(("address", address))
            return max(0.0, record.until - now) if record else 0.0

    def failed(self, name: str, address: str) -> tuple[int, float]:
        """Count a failed check; returns (the larger failure count, the pause it starts: 0 if none)."""
        now = self.clock()
        with self._lock:
            self._forget(now)
            worst, pause = 0, 0.0
            for key in (("name", name), ("address", address)):
                record = self._records.setdefault(key, _Record())
                record.failures += 1
                record.last = now
                if record.failures >= FREE_FAILURES:
                    step = min(LONGEST_PAUSE, FIRST_PAUSE * 2 ** (record.failures - FREE_FAILURES))
                    record.until = now + step
                    pause = max(pause, step)
                worst = max(worst, record.failures)
            return worst, pause

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._records.pop(("name", name), None)
            self._records.pop(("address", address), None)

    def _find(self, name: str, address: str) -> list[_Record]:
        return [r for r in (self._records.get(("name", name)), self._records.get(("address", address))) if r]

    def _forget(self, now: float) -> None:
        if len(self._records) < MAX_TRACKED:
            stale = [k for k, r in self._records.items() if now - r.last > FORGET_AFTER and r.until <= now] \
                if len(self._records) > 1000 else []
        else:  # a flood of made-up names: keep the most recent half
            ordered = sorted(self._records, key=lambda k: self._records[k].last)
            stale = ordered[:len(ordered) // 2]
        for key in stale:
            del self._records[key]


class CheckSlots:
    """At most CONCURRENT_CHECKS password checks at once, WAITING_CHECKS queued (thread-safe)."""

    def __init__(self, concurrent: int = CONCURRENT_CHECKS, waiting: int = WAITING_CHECKS):
        self._running = threading.BoundedSemaphore(concurrent)
        self._admitted = threading.BoundedSemaphore(concurrent + waiting)

    def admit(self) -> bool:
        """A place in the queue, or False when it is full (answer 'busy' at once)."""
        return self._admitted.acquire(blocking=False)

    def run(self, check):
        """Run `check()` in a slot (after `admit`); frees the queue place when done."""
        try:
            with self._running:
                return check()
        finally:
            self._admitted.release()
