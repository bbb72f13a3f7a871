"""The image files a release names: where each one is, how big, and whether its bytes are the
recorded ones.

Two steps, so that a build reads every file once:
- `locate_sources` (cheap: one `lstat` per file) finds every referenced file under the images
  root (no traversal, no symlink out of it) and its size, which is all the shard plan needs;
- the SHA-256 is checked while the bytes are read, by the build as it writes them
  (builders.shards) and by `hash_problems` where nothing is written (verify, a refused build).

Every offender is listed, not just the first, so one run tells a maintainer (or a user
materializing from their own ImageNet copy) everything that must be fixed.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from builders import layout
from builders.plan import ReleasePlan
from pair_manifest.errors import ProblemsFound, UserError
from pair_manifest.file_ids import check_file_id


@dataclass(frozen=True)
class Source:
    path: str    # the file's real path (symlinks resolved, inside the images root)
    size: int
    sha256: str  # expected, from the release


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


def locate_sources(plan: ReleasePlan, images_root: str | Path) -> tuple[dict[str, Source], list[str]]:
    """Every referenced file's real path and size, and a line for each one that is missing, not a
    regular file, outside the root or named twice with different hashes. Reads no file content.

    The same rules as `pair_manifest.store.resolve_image`, with one `realpath` per class folder
    and one `lstat` per file instead of a `realpath` per file (a few syscalls per path component).
    """
    root = Path(images_root)
    if not root.is_dir():
        raise UserError(f"{root}: images root is not a folder")
    expected, problems = referenced_files(plan)
    real_root = os.path.realpath(root)
    located: dict[str, Source] = {}
    by_class: dict[str, list[str]] = {}
    for file in sorted(expected):
        wnid, _, name = file.partition("/")
        try:
            check_file_id(wnid, file)
        except UserError as error:
            problems.append(str(error))
            continue
        by_class.setdefault(wnid, []).append(name)
    for wnid, names in by_class.items():
        folder = os.path.realpath(os.path.join(root, wnid))
        if not _inside(folder, real_root):
            problems += [f"{wnid}/{name}: resolves outside the images root" for name in names]
            continue
        try:
            folder_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.ENOTDIR):
                problems += [f"{wnid}/{name}: no such image under {images_root}" for name in names]
            else:  # the folder is there but cannot be listed (permissions): say so, once per file
                problems += [f"{wnid}/{name}: cannot be read: class folder {wnid}/ ({error.strerror})"
                             for name in names]
            continue
        try:
            for name in names:
                file, path = f"{wnid}/{name}", f"{folder}{os.sep}{name}"
                try:
                    info = os.lstat(name, dir_fd=folder_fd)  # one path component to resolve, not the whole path
                    if stat.S_ISLNK(info.st_mode):
                        path = os.path.realpath(path)
                        if not _inside(path, real_root):
                            problems.append(f"{file}: resolves outside the images root")
                            continue
                        info = os.stat(path)
                except OSError as error:
                    if error.errno not in (errno.ENOENT, errno.ENOTDIR):
                        problems.append(f"{file}: cannot be read ({error.strerror})")
                        continue
                    info = None
                if info is None or not stat.S_ISREG(info.st_mode):
                    problems.append(f"{file}: no such image under {images_root}")
                    continue
                located[file] = Source(path, info.st_size, expected[file])
        finally:
            os.close(folder_fd)
    return located, problems


def _inside(path: str, real_root: str) -> bool:
    return path.startswith(real_root.rstrip(os.sep) + os.sep)


def file_problem(file: str, source: Source) -> str | None:
    """None if the file holds the recorded bytes, else the line that names what is wrong."""
    try:
        with open(source.path, "rb", buffering=0, opener=_no_follow) as handle:
            actual = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as error:
        return f"{file}: cannot be read ({error.strerror or error})"
    if actual != source.sha256:
        return f"{file}: bytes differ from the release (sha256 {actual[:16]}…, expected {source.sha256[:16]}…)"
    return None


def _no_follow(path: str, flags: int) -> int:
    """`open` of a located path: it was resolved, so a symlink there now is a swap, refused."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


def hash_problems(located: dict[str, Source], *, workers: int = 2, progress: bool = False) -> dict[str, str]:
    """Hash every located file (no writes): file -> the line naming what is wrong, for each file
    that cannot be read or differs. hashlib releases the GIL on large buffers, so threads hash
    on every core."""
    items = sorted(located.items())
    problems = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for (file, _), problem in tqdm(zip(items, pool.map(lambda item: file_problem(*item), items)),
                                       total=len(items), desc="checking images", unit="file",
                                       disable=not progress, leave=False):
            if problem:
                problems[file] = problem
    return problems


def refusal(root: str | Path, problems: list[str], referenced: int) -> ProblemsFound:
    """The error of a build or materialize refused over its sources (one line per file, sorted)."""
    lines = sorted(set(problems))
    return ProblemsFound(f"{root}: {len(lines)} of {referenced} referenced files are missing or differ; "
                         "nothing was written", lines)


def check_sources(plan: ReleasePlan, images_root: str | Path, *, workers: int = 2,
                  progress: bool = False) -> dict[str, Source]:
    """Locate and hash every referenced file, or `ProblemsFound` naming each missing or changed
    file (verify's check of an images folder against a release)."""
    located, problems = locate_sources(plan, images_root)
    problems += hash_problems(located, workers=workers, progress=progress).values()
    if problems:
        raise refusal(images_root, problems, len(referenced_files(plan)[0]))
    return located
