"""The images the app may show: the selected classes present under the images root, and each
class's usable files.

A class is scanned (`pair_manifest.scan`) the first time someone needs it, not at start-up: the
1,300 files of an ImageNet class take a fraction of a second, the 243,000 of 187 classes would
keep the server from starting for a minute. Files the scan rejects, and files that fail later
(decoding a preview, hashing on accept), are recorded in the work state, logged, and never shown
again; the annotator sees a note instead of a stack trace.

The per-class scan is `pair_manifest.scan.scan_class` with the project folder and the users file
protected: it refuses, without opening them, files that resolve there. Opening the decision store through any other file descriptor would silently drop SQLite's POSIX
locks for the whole server process, and another process could then checkpoint and delete the
write-ahead log under it: acknowledged decisions would be lost. (A test found exactly that with a
symlink to the store in a class folder.)
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from pair_manifest.classes import ClassSelection
from pair_manifest.errors import UserError
from pair_manifest.scan import is_protected, scan_class

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
        self._guarded = (str(self.project_dir), *(str(Path(p).resolve()) for p in protected_files))
        self.selection = selection
        self.work = work
        with os.scandir(self.root) as entries:
            present = {e.name for e in entries if e.is_dir()}
        self.wnids = [w for w in selection.wnids if w in present]  # label order
        if not self.wnids:
            raise UserError(f"{self.root}: none of the {len(selection)} selected classes has a folder here "
                            f"(expected {self.root}/<wnid>/, e.g. {selection.wnids[0]})")
        self.missing = [w for w in selection.wnids if w not in present]
        self.names = {w: selection.by_wnid(w).name for w in self.wnids}
        self._usable: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._class_locks = {w: threading.Lock() for w in self.wnids}

    def __contains__(self, wnid: object) -> bool:
        return wnid in self._class_locks

    def label(self, wnid: str) -> str:
        return f"{self.names.get(wnid, '?')} ({wnid})"

    def files(self, wnid: str) -> list[str]:
        """Usable `<wnid>/<name>` ids of one class, minus images found bad while curating."""
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
        """A resolved path the app must never open or serve: the users file, and anything in the
        project folder (decision store, work state, caches); the scan's own rule."""
        return is_protected(str(real), str(self.real_root), self._guarded)

    def _scan(self, wnid: str) -> list[str]:
        usable, rejected, _ = scan_class(self.root, wnid, self._guarded)
        for name, reason in rejected:
            if self.work.mark_bad(wnid, f"{wnid}/{name}", reason):
                log.warning("unusable image skipped: %s/%s: %s", wnid, name, reason)
        return [f"{wnid}/{name}" for name in usable]

    def mark_bad(self, wnid: str, file: str, reason: str) -> str:
        """Record an image that failed while curating; returns the note shown to the annotator."""
        if self.work.mark_bad(wnid, file, reason):
            log.warning("unusable image skipped: %s: %s", file, reason)
        return f"{file} cannot be used ({reason}); it is skipped from now on."

    def bad_note(self, wnid: str) -> str | None:
        """A short note about the unusable files of a class, or None."""
        bad = self.work.bad_images(wnid)
        if not bad:
            return None
        listed = ", ".join(f"{f.split('/', 1)[1]} ({reason.split(':', 1)[0]})" for f, reason in sorted(bad.items())[:4])
        more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
        return f"{len(bad)} unusable file(s) in this class are skipped: {listed}{more} (details in curation.log)"
