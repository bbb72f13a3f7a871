"""The images the app may show: the selected classes present under the images root, and each
class's usable files.

A class is scanned (`pair_manifest.scan`) the first time someone needs it, not at start-up: the
1,300 files of an ImageNet class take a fraction of a second, the 243,000 of 187 classes would
keep the server from starting for a minute. Files the scan rejects, and files that fail later
(decoding a preview, hashing on accept), are recorded in the work state, logged, and never shown
again; the annotator sees a note instead of a stack trace. A class folder that cannot be read
(permission denied) is reported with its reason and left out; the other classes work.

The project's own files (decision store, work state, caches) and the users file are never even
opened through an image name: opening the decision store through any other file descriptor would
silently drop SQLite's POSIX locks for the whole server process, and another process could then
checkpoint and delete the write-ahead log under it: acknowledged decisions would be lost. Two
rules catch every way a class folder can reach them: a path that resolves into the project folder
or to the users file (a symlink; the scan's own rule, `scan_class(protected=...)`), and a file
that *is* one of them under another name (a hard link: same device and inode). Both are checked
with `stat`, which opens nothing.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from pair_manifest.classes import ClassSelection
from pair_manifest.errors import UserError
from pair_manifest.scan import is_protected, scan_class
from pair_manifest.sqlite_db import StorageError

from curation_app.workstate import WorkState

log = logging.getLogger("curation_app")


class Catalog:
    def __init__(self, images_root: str | Path, selection: ClassSelection, work: WorkState, *,
                 project_dir: str | Path, protected_files: tuple[Path, ...] = ()):
        self.root = Path(images_root)
        if not self.root.is_dir():
            raise UserError(f"{self.root}: images root is not a folder")
        self.real_root = self.root.resolve()
        self.project_dir = Path(project_dir).resolve()
        self._protected_files = tuple(Path(p).resolve() for p in protected_files)
        self._guarded = (str(self.project_dir), *(str(p) for p in self._protected_files))
        self.selection = selection
        self.work = work
        try:
            with os.scandir(self.root) as entries:
                present = {e.name for e in entries if e.is_dir()}
        except OSError as error:
            raise UserError(f"{self.root}: cannot read the images root ({error.strerror or error})") from None
        self.wnids = [w for w in selection.wnids if w in present]  # label order
        if not self.wnids:
            raise UserError(f"{self.root}: none of the {len(selection)} selected classes has a folder here "
                            f"(expected {self.root}/<wnid>/, e.g. {selection.wnids[0]})")
        self.missing = [w for w in selection.wnids if w not in present]
        self.names = {w: selection.by_wnid(w).name for w in self.wnids}
        self.unreadable: dict[str, str] = {}  # wnid -> why its folder cannot be read
        self._usable: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._class_locks = {w: threading.Lock() for w in self.wnids}

    def __contains__(self, wnid: object) -> bool:
        return wnid in self._class_locks

    def label(self, wnid: str) -> str:
        return f"{self.names.get(wnid, '?')} ({wnid})"

    def files(self, wnid: str) -> list[str]:
        """Usable `<wnid>/<name>` ids of one class, minus images found bad while curating (none
        for a class whose folder cannot be read)."""
        if wnid not in self:
            raise UserError(f"{wnid}: not a class of this project")
        usable = self._usable.get(wnid)
        if usable is None:
            with self._class_locks[wnid]:
                usable = self._usable.get(wnid)
                if usable is None:
                    usable = self._scan(wnid)
                    self._usable[wnid] = usable
        bad = self.work.bad_images(wnid)
        return [f for f in usable if f not in bad] if bad else usable

    def protected(self, real: Path) -> bool:
        """A resolved path the app must never open or serve: the users file, anything in the
        project folder (decision store, work state, caches), or one of those under another name
        (a hard link)."""
        if is_protected(str(real), str(self.real_root), self._guarded):
            return True
        try:
            status = os.stat(real)
        except OSError:
            return False
        return status.st_nlink > 1 and (status.st_dev, status.st_ino) in self._protected_inodes()

    def _protected_inodes(self) -> set[tuple[int, int]]:
        """(device, inode) of the users file and of every file in the project folder, read now:
        SQLite creates and deletes its -wal and -shm files, `users add` replaces the users file."""
        inodes = set()
        for path in self._protected_files:
            try:
                status = os.stat(path)
                inodes.add((status.st_dev, status.st_ino))
            except OSError:
                pass
        for folder, _, names in os.walk(self.project_dir):
            if Path(folder).name == "cache":  # previews only: thousands of files, nothing to protect
                continue
            for name in names:
                try:
                    status = os.stat(os.path.join(folder, name), follow_symlinks=False)
                except OSError:
                    continue
                inodes.add((status.st_dev, status.st_ino))
        return inodes

    def _scan(self, wnid: str) -> list[str]:
        try:
            usable, rejected, _ = scan_class(self.root, wnid, self._guarded + self._hard_links(wnid))
        except OSError as error:
            reason = error.strerror or str(error)
            if self.unreadable.setdefault(wnid, reason) == reason:
                log.warning("class folder %s cannot be read (%s); the class is left out", self.root / wnid, reason)
            return []
        for name, reason in rejected:
            self.mark_bad(wnid, f"{wnid}/{name}", reason)
        return [f"{wnid}/{name}" for name in usable]

    def _hard_links(self, wnid: str) -> tuple[str, ...]:
        """Paths in the class folder that are a protected file under another name, so the scan
        rejects them without opening them (a file with one link cannot be another file)."""
        found, inodes = [], None
        with os.scandir(self.root / wnid) as entries:
            for entry in entries:
                try:
                    status = entry.stat()
                except OSError:
                    continue
                if status.st_nlink > 1:
                    inodes = self._protected_inodes() if inodes is None else inodes
                    if (status.st_dev, status.st_ino) in inodes:
                        found.append(os.path.realpath(entry.path))
        return tuple(found)

    def mark_bad(self, wnid: str, file: str, reason: str) -> str:
        """Record an image that failed while curating; returns the note shown to the annotator.
        A disk that refuses the record only means the image is found bad again next time."""
        try:
            first = self.work.mark_bad(wnid, file, reason)
        except StorageError as error:
            log.error("could not record the unusable image %s: %s", file, error)
            first = True
        if first:
            log.warning("unusable image skipped: %s: %s", file, reason)
        return f"{file} cannot be used ({reason}); it is skipped from now on."

    def bad_note(self, wnid: str) -> str | None:
        """A short note about the unusable files of a class, or None."""
        if wnid in self.unreadable:
            return f"The folder of this class cannot be read ({self.unreadable[wnid]}); it is left out."
        bad = self.work.bad_images(wnid)
        if not bad:
            return None
        listed = ", ".join(f"{f.split('/', 1)[1]} ({reason.split(':', 1)[0]})" for f, reason in sorted(bad.items())[:4])
        more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
        return f"{len(bad)} unusable file(s) in this class are skipped: {listed}{more} (details in curation.log)"
