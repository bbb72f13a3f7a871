"""Errors a user can act on. The CLI prints them as one line and exits with `exit_code`."""
from __future__ import annotations


class UserError(Exception):
    """Bad input: a message naming the file or field and what is wrong with it."""

    exit_code = 2


class ProblemsFound(UserError):
    """A check ran and found problems (validate, verify): each one is listed, exit status 1."""

    exit_code = 1

    def __init__(self, what: str, problems: list[str]):
        self.problems = list(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{what}: {len(self.problems)} problem(s)\n{listing}")
