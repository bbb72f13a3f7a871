"""User errors print as a readable message, whatever the number of problems."""
from __future__ import annotations

from pair_manifest.errors import ProblemsFound


def test_a_hundred_thousand_problems_list_the_first_ones_and_count_the_rest():
    problems = [f"bad.csv line {n + 2}: wnid 'x' is not an ImageNet-1K class" for n in range(100_000)]
    error = ProblemsFound("bad.csv: nothing imported", problems)
    lines = str(error).splitlines()
    assert lines[0] == "bad.csv: nothing imported: 100000 problem(s)"
    assert lines[1] == "  - bad.csv line 2: wnid 'x' is not an ImageNet-1K class"
    assert len(lines) == ProblemsFound.LISTED + 2 and len(str(error)) < 10_000
    assert lines[-1] == f"  ... and {100_000 - ProblemsFound.LISTED} more problem(s) like these"
    assert error.problems == problems  # the full list stays available to callers


def test_a_few_problems_are_all_listed():
    error = ProblemsFound("m: invalid", ["one", "two"])
    assert str(error) == "m: invalid: 2 problem(s)\n  - one\n  - two"
