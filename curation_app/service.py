"""The curation service: what each annotator sees next, and what their keys do. No Gradio here:
the UI and the API are thin layers over these methods, and tests can call them directly.

Every method takes the annotator name the server got from its login session, never from the
client. The client sends only the key of the item it shows; an action on anything but the
annotator's current item is answered with the current item (a second tab, a double press), and
a decision is recorded under that key, so it is recorded once. A method returns only after the
decision store has committed: the view it returns (next item, moved counter) is the
acknowledgement.

Who gets which item (and the guarantee that no item goes to two annotators) is
`curation_app.assignment`; how each mode finds its items is `curation_app.modes` (verify, pick,
review); what the page shows is `curation_app.views`. This module holds the actions, one at a
time per annotator, and the recording of decisions.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from pathlib import Path

from pair_manifest.classes import ClassSelection
from pair_manifest.errors import UserError
from pair_manifest.images import ImageReadError
from pair_manifest.sqlite_db import StorageError
from pair_manifest.decisions import IdempotencyConflict, NewDecision, PolicyViolation, canonical_tags
from pair_manifest.protocol import PAIRS_PER_CLASS
from pair_manifest.store import DecisionStore

from curation_app.assignment import Assignment
from curation_app.catalog import Catalog
from curation_app.class_state import ClassState
from curation_app.modes import Workspace, strategies
from curation_app.modes.base import new_key
from curation_app.modes.pick import PICK_PAGE
from curation_app.previews import Previews
from curation_app.proposal_book import ProposalBook
from curation_app.views import View, Views
from curation_app.workstate import LEASE_SECONDS, MODES, Item, WorkState, lease_kind

log = logging.getLogger("curation_app")


class Curation:
    def __init__(self, images_root: str | Path, project_dir: str | Path, selection: ClassSelection, *,
                 target: int = PAIRS_PER_CLASS, lease_seconds: float = LEASE_SECONDS, protected_files: tuple[Path, ...] = ()):
        if target < 1:
            raise UserError(f"--target: {target} pairs per class; it must be at least 1")
        self.project_dir = Path(project_dir)
        self.images_root = Path(images_root)
        self.target = target
        self.store = DecisionStore.for_project(project_dir, images_root=images_root)
        recorded = self.store.class_wnids()
        if recorded is None:
            self.store.set_meta("class_wnids", json.dumps(selection.wnids))
        elif recorded != selection.wnids:
            raise UserError(f"{self.project_dir}: this project was created with another class selection "
                            f"({len(recorded)} classes); pass the same --classes, or start a new project folder")
        self.work = WorkState.for_project(project_dir, lease_seconds=lease_seconds)
        self.catalog = Catalog(images_root, selection, self.work, project_dir=project_dir,
                               protected_files=protected_files)
        self.proposals = ProposalBook(project_dir)
        self.previews = Previews(self.project_dir / "cache")
        workspace = Workspace(self.store, self.work, self.catalog, ClassState(self.store), self.previews,
                              self.proposals, self.images_root, self.project_dir)
        self.strategies = strategies(workspace)
        self.assignment = Assignment(workspace, self.strategies, target=target)
        self.views = Views(workspace, self.assignment, target=target)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, annotator: str) -> threading.Lock:
        """One action at a time per annotator (two tabs, a double press)."""
        with self._locks_guard:
            return self._locks.setdefault(annotator, threading.Lock())

    def _view(self, annotator: str, mode: str, item: Item | None, notes: list[str]) -> View:
        return self.views.view(annotator, mode, item, notes)

    def _resumed(self, annotator: str, mode: str, notes: list[str]) -> View:
        return self._view(annotator, mode, self.assignment.resume(annotator, mode, notes), notes)

    # -- public actions ----------------------------------------------------------------------

    def view(self, annotator: str) -> View:
        with self._lock(annotator):
            return self._resumed(annotator, self.work.mode(annotator), [])

    def set_mode(self, annotator: str, mode: str) -> View:
        with self._lock(annotator):
            previous = lease_kind(self.work.mode(annotator))
            self.work.set_mode(annotator, mode)
            if previous != lease_kind(mode):  # a reviewer does not keep a class from the annotators
                self.work.release(annotator, previous)
            return self._resumed(annotator, mode, [])

    def toggle_mode(self, annotator: str) -> View:
        """`p`: verify <-> pick (from review, back to verify)."""
        return self.set_mode(annotator, "pick" if self.work.mode(annotator) == "verify" else "verify")

    def set_class(self, annotator: str, wnid: str | None) -> View:
        """Work on one class (if nobody else holds it), or on whatever needs work (None)."""
        with self._lock(annotator):
            mode = self.work.mode(annotator)
            notes: list[str] = []
            if wnid and wnid not in self.catalog:
                raise UserError(f"{wnid}: not a class of this project")
            self.work.set_preferred_class(annotator, wnid or None)
            kind = lease_kind(mode)
            current = self.work.current(annotator, mode)
            if wnid and (current is None or current.wnid != wnid):
                if self.work.acquire(annotator, kind, wnid):
                    self.assignment.next(annotator, mode, notes)
                else:
                    notes.append(f"{self.catalog.label(wnid)} is being worked on by {self.work.holder(kind, wnid)}; "
                                 "you stay where you are.")
            return self._resumed(annotator, mode, notes)

    def decide(self, annotator: str, key: str, verdict: str, tags=()) -> View:
        """verify: accept (with tags) / reject / skip the pair; review: accept = confirm, reject =
        refute, skip; pick: reject = next page of candidates, skip = skip the anchor."""
        if verdict not in ("accept", "reject", "skip"):
            raise UserError(f"verdict: '{verdict}' is not one of accept, reject, skip")
        tags = tuple(t for t in canonical_tags(tags).split("|") if t) if tags else ()
        with self._lock(annotator):
            mode = self.work.mode(annotator)
            notes: list[str] = []
            item = self.assignment.current_if_pressed(annotator, mode, key, notes)
            if item is None:
                return self._resumed(annotator, mode, notes)
            if mode == "pick":
                return self._pick_page_or_skip(annotator, item, verdict, notes)
            if mode == "review" and verdict == "skip":
                self.work.skip_review(annotator, item.review_of)
                notes.append("Skipped; this review stays in the queue for someone else.")
                return self._view(annotator, mode, self.assignment.next(annotator, mode, notes), notes)
            a, b = item.files
            new = NewDecision(item.key, item.wnid, a, b, verdict, annotator,
                              tags=tags if verdict == "accept" and mode == "verify" else (),
                              source="review" if mode == "review" else item.source,
                              review_of=item.review_of if mode == "review" else None)
            return self._record(annotator, mode, item, new, notes)

    def pick(self, annotator: str, key: str, file: str, tags=()) -> View:
        """Pick mode: pair the anchor with one of the candidates shown."""
        tags = tuple(t for t in canonical_tags(tags).split("|") if t) if tags else ()
        with self._lock(annotator):
            mode = self.work.mode(annotator)
            notes: list[str] = []
            if mode != "pick":
                notes.append("Picking works in pick mode (press p).")
                return self._resumed(annotator, mode, notes)
            item = self.assignment.current_if_pressed(annotator, mode, key, notes)
            if item is None:
                return self._resumed(annotator, mode, notes)
            if file not in item.candidates:
                notes.append(f"{file!s} is not one of the candidates shown; nothing recorded.")
                return self._view(annotator, mode, item, notes)
            new = NewDecision(item.key, item.wnid, item.files[0], file, "accept", annotator, tags=tags, source="pick")
            return self._record(annotator, mode, item, new, notes)

    def undo(self, annotator: str, key: str) -> View:
        """Undo this annotator's latest decision still in effect and show its item again."""
        with self._lock(annotator):
            mode = self.work.mode(annotator)
            notes: list[str] = []
            item = self.work.current(annotator, mode)
            if item is not None and key != item.key:
                if self.store.decision_for_key(f"undo:{key}") is None:
                    notes.append("Your screen was out of date (another tab?); nothing was undone.")
                return self._resumed(annotator, mode, notes)
            if item is None:  # make a key for this state, so a repeated press undoes once
                item = Item(new_key(), mode, "", ())
                self.work.set_current(annotator, item)
            recorded = self.store.undo_last(annotator, f"undo:{item.key}")
            if recorded is None:
                notes.append("Nothing to undo.")
                return self._resumed(annotator, mode, notes)
            undone = self.store.get(recorded.decision.undo_of)
            what = "review" if undone.review_of is not None else undone.verdict
            restored = self._restored_item(undone)
            kind = lease_kind(restored.mode)
            if self.work.acquire(annotator, kind, restored.wnid):
                self.work.set_mode(annotator, restored.mode)
                self.work.set_current(annotator, restored)
                notes.append(f"Undone: your {what} of this {'anchor' if restored.mode == 'pick' else 'pair'}. "
                             "Decide again.")
                log.info("undo %s: decision %d (%s) by %s", recorded.decision.seq, undone.seq, what, annotator)
                return self._view(annotator, restored.mode, restored, notes)
            # The class went to someone else: the pair goes back to the pool; show a fresh item.
            notes.append(f"Undone: your {what} of {undone.file_a} + {undone.file_b}. That class is now with "
                         f"{self.work.holder(kind, restored.wnid)}, so the pair goes back to the pool.")
            self.work.set_current(annotator, replace(item, key=new_key()))
            return self._resumed(annotator, mode, notes)

    def after_storage_error(self, annotator: str, key: str, error: StorageError) -> View:
        """The page after the disk refused a write (see `Views.after_storage_error`)."""
        return self.views.after_storage_error(annotator, key, error)

    # -- recording ---------------------------------------------------------------------------

    def _record(self, annotator: str, mode: str, item: Item, new: NewDecision, notes: list[str]) -> View:
        if new.verdict == "accept":  # hashes may be cached: make sure the files are still there
            gone = [f for f in (new.file_a, new.file_b) if not self._resolvable(f)]
            for file in gone:
                notes.append(self.catalog.mark_bad(item.wnid, file, "missing: the file is gone from the images root"))
            if gone:
                return self._view(annotator, mode, self.assignment.next(annotator, mode, notes), notes)
        try:
            recorded = self.store.record(new)
        except IdempotencyConflict:
            previous = self.store.decision_for_key(item.key)
            notes.append(f"This item was already decided ({previous.verdict}), probably in another tab.")
        except ImageReadError as error:
            notes.append(self.catalog.mark_bad(item.wnid, error.path, f"{error.reason}: {error.detail}"))
        except PolicyViolation as error:
            log.info("refused for %s: %s", annotator, error)
            notes.append(f"Not recorded: {error}")
            if self.assignment.check(annotator, item).showable:
                return self._view(annotator, mode, item, notes)  # stays: reject or skip it instead
        except StorageError:
            raise
        except UserError:
            gone = [f for f in (new.file_a, new.file_b) if not self._resolvable(f)]
            if not gone:
                raise
            for file in gone:  # deleted or moved since it was shown: nothing can be recorded about it
                notes.append(self.catalog.mark_bad(item.wnid, file, "missing: the file is gone from the images root"))
        else:
            d = recorded.decision
            if not recorded.duplicate:
                log.info("decision %d: %s %s %s: %s + %s by %s%s", d.seq, "review" if d.review_of else "annotate",
                         d.verdict, d.wnid, d.file_a, d.file_b, annotator, f" tags={'|'.join(d.tags)}" if d.tags else "")
            notes.append(self._saved_note(mode, d.verdict, d.tags, d.seq, recorded.duplicate))
        return self._view(annotator, mode, self.assignment.next(annotator, mode, notes), notes)

    def _resolvable(self, file: str) -> bool:
        try:
            self.store.resolve(file)
        except UserError:
            return False
        return True

    @staticmethod
    def _saved_note(mode: str, verdict: str, tags, seq: int, duplicate: bool) -> str:
        if duplicate:
            return f"Already saved (decision {seq}); nothing recorded twice."
        if mode == "review":
            return f"Saved: {'confirmed' if verdict == 'accept' else 'refuted'} (decision {seq})."
        done = {"accept": "accepted", "reject": "rejected", "skip": "skipped"}[verdict]
        return f"Saved: {done}{' [' + ', '.join(tags) + ']' if tags else ''} (decision {seq})."

    def _pick_page_or_skip(self, annotator: str, item: Item, verdict: str, notes: list[str]) -> View:
        if verdict == "accept":
            notes.append("Choose a candidate first: click it, or move with the arrow keys and press a.")
            return self._view(annotator, "pick", item, notes)
        anchor = item.files[0]
        if verdict == "skip":
            self.work.skip_anchor(annotator, anchor)
            notes.append("Anchor skipped; it comes back after the others.")
            return self._view(annotator, "pick", self.assignment.next(annotator, "pick", notes, exclude={anchor}), notes)
        for page in (item.page + 1, 0):  # "none of these": the next page, or back to the first
            candidates = self.strategies["pick"].candidates(annotator, item.wnid, anchor, page, notes)
            if candidates:
                if page == 0:
                    notes.append("No more candidates; back to the first page.")
                following = replace(item, key=new_key(), candidates=tuple(candidates), page=page)
                self.work.set_current(annotator, following)
                return self._view(annotator, "pick", following, notes)
        return self._view(annotator, "pick", self.assignment.next(annotator, "pick", notes, exclude={anchor}), notes)

    def _restored_item(self, undone) -> Item:
        if undone.review_of is not None:
            return Item(new_key(), "review", undone.wnid, (undone.file_a, undone.file_b), review_of=undone.review_of,
                        source=self.store.get(undone.review_of).source)
        original = self.work.item(undone.idempotency_key)
        if original is not None and original.mode == "pick":
            anchor = original.files[0]
            partner = undone.file_b if undone.file_a == anchor else undone.file_a
            rest = [c for c in original.candidates if c != partner]
            return replace(original, key=new_key(), candidates=(partner, *rest)[:PICK_PAGE], page=0)
        return Item(new_key(), "verify", undone.wnid, (undone.file_a, undone.file_b), source=undone.source)


__all__ = ["Curation", "View", "MODES", "PICK_PAGE"]
