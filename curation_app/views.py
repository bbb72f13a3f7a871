"""What the page shows after an action (`View`), and how it is made: counters, class notes, the
message when there is no work, and the next item's images warmed in the background so the next
keypress finds them ready."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pair_manifest.errors import UserError
from pair_manifest.sqlite_db import StorageError

from curation_app.assignment import Assignment
from curation_app.modes import Workspace
from curation_app.workstate import Item, lease_kind

log = logging.getLogger("curation_app")


@dataclass
class View:
    """Everything the page shows for one annotator after one action."""

    annotator: str
    mode: str
    item: Item | None
    upcoming: Item | None = None  # the likely next item, for prefetching its images
    notes: list[str] = field(default_factory=list)
    class_note: str | None = None
    message: str | None = None  # why there is nothing to show
    counts: dict = field(default_factory=dict)
    class_name: str = ""

    def to_json(self) -> dict:
        item = self.item
        return {
            "annotator": self.annotator, "mode": self.mode, "key": item.key if item else "",
            "wnid": item.wnid if item and item.wnid else None, "class_name": self.class_name,
            "files": list(item.files) if item else [], "candidates": list(item.candidates) if item else [],
            "page": item.page if item else 0, "source": item.source if item else None,
            "review_of": item.review_of if item else None,
            "upcoming": list(self.upcoming.files + self.upcoming.candidates) if self.upcoming else [],
            "notes": list(self.notes), "class_note": self.class_note, "message": self.message, "counts": self.counts,
        }


class Views:
    def __init__(self, workspace: Workspace, assignment: Assignment, *, target: int):
        self.ws = workspace
        self.assignment = assignment
        self.target = target
        self._warmer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm")

    def view(self, annotator: str, mode: str, item: Item | None, notes: list[str]) -> View:
        view = View(annotator, mode, item, notes=notes, counts=self.counts(annotator, item))
        if item is not None and item.wnid:
            view.class_name = self.ws.catalog.names.get(item.wnid, "")
            view.class_note = self.ws.catalog.bad_note(item.wnid)
            view.upcoming = self.assignment.upcoming(annotator, mode, item)
            if view.upcoming is not None:
                self._warmer.submit(self._warm, view.upcoming)
        else:
            view.message = self._no_work_message(annotator, mode)
        return view

    def counts(self, annotator: str, item: Item | None) -> dict:
        accepted = self.ws.store.accepted_counts()
        wnids = self.ws.catalog.wnids
        return {"class_accepted": accepted.get(item.wnid, 0) if item and item.wnid else None,
                "target": self.target, "overall_accepted": sum(accepted.get(w, 0) for w in wnids),
                "overall_target": self.target * len(wnids), "classes": len(wnids),
                "my_decisions": self.ws.store.live_count(annotator)}

    def after_storage_error(self, annotator: str, key: str, error: StorageError) -> View:
        """The page after the disk refused a write (full, read-only): whether the decision of
        the key pressed was saved all the same (looked up in the log), and the current item,
        shown without writing anything."""
        store, work = self.ws.store, self.ws.work
        done = (store.decision_for_key(key) or store.decision_for_key(f"undo:{key}")) if key else None
        if done is not None:
            notes = [f"Saved: {done.verdict} (decision {done.seq}). The server then could not prepare your next "
                     f"item: {error.cause}."]
        else:
            notes = [f"Not saved: the server cannot write its files ({error.cause}). Everything saved before is "
                     "kept."]
        notes.append("Tell whoever runs the server; once it has space again, press the key again.")
        mode = work.mode(annotator)
        item = work.current(annotator, mode)
        view = View(annotator, mode, item, notes=notes, counts=self.counts(annotator, item))
        if item is not None and item.wnid:
            view.class_name = self.ws.catalog.names.get(item.wnid, "")
        else:
            view.message = "Nothing can be shown until the server can write again."
        return view

    def _warm(self, item: Item) -> None:
        """Hash and preview the upcoming images off the request path (errors surface later, when
        the item is really allocated and checked)."""
        store, previews = self.ws.store, self.ws.previews
        try:
            if item.mode == "verify":
                store.image_facts(item.files[0])
                store.image_facts(item.files[1])
            for file in item.files:
                previews.get(store.resolve(file), file, "preview")
            for file in item.candidates:
                previews.get(store.resolve(file), file, "thumb")
        except (UserError, OSError):
            pass
        except Exception:  # noqa: BLE001 - a warm-up must never take the server down
            log.exception("warming the previews of %s failed", item.files)

    def _no_work_message(self, annotator: str, mode: str) -> str:
        kind = lease_kind(mode)
        others = sorted({f"{w} ({who})" for (k, w), who in self.ws.work.leases().items()
                         if k == kind and who != annotator})
        if mode == "review":
            base = "Nothing to review right now: every accept (and sampled reject) of others has been reviewed"
        else:
            base = "No pairs left for you in this mode: every class has reached its target or has no unseen pairs left"
        return base + (f"; classes in use by others: {', '.join(others)}." if others else ".")
