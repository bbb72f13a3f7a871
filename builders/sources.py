"""The check that runs before a build writes anything: every file the plan names exists under
the images root (no traversal, no symlink out of it) and has the recorded SHA-256.

Every offender is listed, not just the first, so one run tells a maintainer (or a user
materializing from their own ImageNet copy) everything that must be fixed.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from builders import layout
from builders.plan import ReleasePlan
from pair_manifest.errors import ProblemsFound, UserError
from pair_manifest.images import sha256_file
from pair_manifest.store import resolve_image


def referenced_files(plan: ReleasePlan) -> tuple[dict[str, str], list[str]]:
    """file -> expected sha256 over SP and AP; a file named with two different hashes is a problem."""
    expected: dict[str, str] = {}
    problems = []
    for kind in layout.KINDS:
        table = plan.table(kind)
        for file_column, sha_column in zip(layout.FILE_COLUMNS[kind], layout.SHA_COLUMNS[kind]):
            for file, digest in zip(table.column(file_column).to_pylist(), table.column(sha_column).to_pylist()):
                known = expected.setdefault(file, digest)
                if known != digest:
                    problems.append(f"{file}: the release names it with two different SHA-256s ({known[:12]}…, {digest[:12]}…)")
    return expected, problems


def check_sources(plan: ReleasePlan, images_root: str | Path, *, workers: int = 2,
                  progress: bool = False) -> dict[str, int]:
    """Size of every referenced file, or `ProblemsFound` naming each missing or changed file."""
    root = Path(images_root)
    if not root.is_dir():
        raise UserError(f"{root}: images root is not a folder")
    expected, problems = referenced_files(plan)

    def check(item: tuple[str, str]) -> tuple[str, int | None, str | None]:
        file, digest = item
        try:
            path = resolve_image(root, file)
            size = os.stat(path).st_size
            actual = sha256_file(path)
        except UserError as error:
            return file, None, str(error)
        except OSError as error:
            return file, None, f"{file}: cannot be read ({error.strerror or error})"
        if actual != digest:
            return file, None, f"{file}: bytes differ from the release (sha256 {actual[:16]}…, expected {digest[:16]}…)"
        return file, size, None

    sizes: dict[str, int] = {}
    items = sorted(expected.items())
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for file, size, problem in tqdm(pool.map(check, items), total=len(items), desc="checking images",
                                        unit="file", disable=not progress, leave=False):
            if problem:
                problems.append(problem)
            else:
                sizes[file] = size
    if problems:
        raise ProblemsFound(f"{root}: {len(problems)} of {len(items)} referenced files are missing or differ; "
                            "nothing was written", problems)
    return sizes
