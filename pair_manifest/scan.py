"""Walk an ImageNet-style `ROOT/<wnid>/*` folder and sort every file into usable, rejected or ignored.

Scales to the 1.28 M files of ImageNet train: `os.scandir`, one header read and one tail read per
file (no pixel decode), classes probed in parallel processes.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pair_manifest.classes import ClassSelection, imagenet_classes, is_wnid
from pair_manifest.errors import UserError
from pair_manifest.images import ImageReadError, is_image_name, probe


@dataclass
class ClassScan:
    wnid: str
    name: str
    usable: list[str] = field(default_factory=list)  # file names, sorted
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    unreadable: str | None = None  # why the class folder itself could not be listed


@dataclass
class ScanReport:
    root: Path
    classes: dict[str, ClassScan]
    ignored: list[tuple[str, str]]  # (path relative to root, reason)
    missing: list[str]  # selected wnids with no folder under root

    @property
    def unreadable(self) -> list[tuple[str, str]]:
        """(`<wnid>/`, reason) of each class folder that could not be listed: its images are unknown."""
        return [(f"{c.wnid}/", c.unreadable) for c in self.classes.values() if c.unreadable]

    @property
    def rejected(self) -> list[tuple[str, str]]:
        return [(f"{c.wnid}/{name}", reason) for c in self.classes.values() for name, reason in c.rejected]

    def usable_files(self, wnid: str) -> list[str]:
        """`<wnid>/<name>` ids of the usable images of one class."""
        scan = self.classes.get(wnid)
        return [f"{wnid}/{name}" for name in scan.usable] if scan else []

    def to_json(self) -> dict:
        return {
            "root": str(self.root),
            "classes": [
                {"wnid": c.wnid, "name": c.name, "usable": len(c.usable), "rejected": len(c.rejected)}
                for c in self.classes.values()
            ],
            "rejected": [{"path": p, "reason": r} for p, r in self.rejected],
            "ignored": [{"path": p, "reason": r} for p, r in self.ignored],
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
            "missing": self.missing,
        }


PROTECTED_REASON = "a project or users file behind an image name (never opened)"


def is_protected(real: str, root_real: str, protected: tuple[str, ...]) -> bool:
    """`real` is a protected file, or lies in a protected folder that does not hold the images root."""
    for item in protected:
        if real == item:
            return True
        inside = real.startswith(item + os.sep)
        if inside and not (root_real + os.sep).startswith(item + os.sep):
            return True
    return False


class UnreadableFolder(UserError):
    """A class folder that cannot be listed (permissions, removed mid-scan): its images are unknown."""

    def __init__(self, wnid: str, reason: str):
        self.wnid, self.reason = wnid, reason
        super().__init__(f"{wnid}/: {reason}")

    def __reduce__(self):  # raised in scan worker processes
        return UnreadableFolder, (self.wnid, self.reason)


def scan_class(root: str | Path, wnid: str, protected: tuple[str | Path, ...] = ()
               ) -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """(usable names, rejected (name, reason), ignored (path, reason)) of one class folder;
    `UnreadableFolder` if the folder cannot be listed.

    `protected` names files and folders (a curation project, a users file) that must never be
    opened, even through a symlink with an image name: opening an SQLite database through a second
    descriptor drops the process's POSIX locks on it, and another process may then delete its
    write-ahead log under it."""
    usable, rejected, ignored = [], [], []
    class_dir = os.path.join(root, wnid)
    real_root = os.path.realpath(root)
    guarded = tuple(os.path.realpath(p) for p in protected)
    try:
        entries = list(os.scandir(class_dir))
    except OSError as error:  # permissions, a folder removed or replaced mid-scan
        raise UnreadableFolder(wnid, f"the class folder cannot be read ({error.strerror or error})") from None
    for entry in entries:
        rel = f"{wnid}/{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            ignored.append((rel + "/", "nested folder (images must sit directly in the class folder)"))
            continue
        if not is_image_name(entry.name):
            ignored.append((rel, "not an image file name"))
            continue
        real = os.path.realpath(entry.path)
        if is_protected(real, real_root, guarded):
            rejected.append((entry.name, PROTECTED_REASON))
        elif not real.startswith(real_root + os.sep):
            rejected.append((entry.name, "symlink pointing outside the images root"))
        else:
            try:
                probe(entry.path)
            except ImageReadError as error:
                rejected.append((entry.name, f"{error.reason}: {error.detail}"))
            else:
                usable.append(entry.name)
    return sorted(usable), sorted(rejected), sorted(ignored)


def _scan_or_reason(root: str, wnid: str, protected: tuple[str, ...]):
    """`scan_class` plus why the folder could not be read (None when it could)."""
    try:
        return (*scan_class(root, wnid, protected), None)
    except UnreadableFolder as error:
        return [], [], [], error.reason


def scan_root(root: str | Path, selection: ClassSelection, *, workers: int | None = None,
              progress: bool = True, protected: tuple[str | Path, ...] = ()) -> ScanReport:
    """Scan every selected class under `root`; `protected` as in `scan_class`."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: images root is not a folder")
    known = imagenet_classes()
    ignored: list[tuple[str, str]] = []
    class_dirs = []
    try:
        top = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as error:
        raise UserError(f"{root}: the images root cannot be read ({error.strerror or error})") from None
    for entry in top:
        if not entry.is_dir():
            ignored.append((entry.name, "file at the top level (expected <wnid>/ folders)"))
        elif not is_wnid(entry.name):
            ignored.append((entry.name + "/", "folder name is not a wnid"))
        elif entry.name not in known:
            ignored.append((entry.name + "/", "wnid is not one of the 1000 ImageNet-1K classes"))
        elif entry.name not in selection:
            ignored.append((entry.name + "/", "class is not in the selection"))
        else:
            class_dirs.append(entry.name)
    order = {w: i for i, w in enumerate(selection.wnids)}
    class_dirs.sort(key=order.__getitem__)
    results = _map_classes(str(root), class_dirs, workers, progress, tuple(map(str, protected)))
    classes = {}
    for wnid, (usable, rejected, class_ignored, unreadable) in zip(class_dirs, results):
        classes[wnid] = ClassScan(wnid, selection.by_wnid(wnid).name, usable, rejected, unreadable)
        ignored.extend(class_ignored)
    missing = [w for w in selection.wnids if w not in classes]
    return ScanReport(root, classes, sorted(ignored), missing)


def _map_classes(root: str, wnids: list[str], workers: int | None, progress: bool, protected: tuple[str, ...]):
    from tqdm import tqdm

    workers = workers or min(len(wnids), os.cpu_count() or 1)
    bar = dict(total=len(wnids), desc="scanning classes", unit="class", disable=not progress, leave=False)
    if workers <= 1 or len(wnids) <= 1:
        return [_scan_or_reason(root, w, protected) for w in tqdm(wnids, **bar)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(_scan_or_reason, [root] * len(wnids), wnids, [protected] * len(wnids)), **bar))
