"""The curation service: what each annotator sees next, and what their keys do. No Gradio here:
the UI and the API are thin layers over these methods, and tests can call them directly.

Every method takes the annotator name the server got from its login session, never from the
client. The client sends only the key of the item it shows; an action on anything but the
annotator's current item is answered with the current item (a second tab, a double press), and
a decision is recorded under that key, so it is recorded once. A method returns only after the
decision store has committed: the view it returns (next item, moved counter) is the
acknowledgement.

Modes: **verify** (a pair from the proposals, or sampled from the class: accept with tags, reject,
skip), **pick** (an anchor and a page of candidates: pick one, `reject` for the next page, `skip`
the anchor), **review** (someone else's accept or reject, shown blind: confirm = accept,
refute = reject).
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from pair_manifest.classes import ClassSelection
from pair_manifest.errors import UserError
from pair_manifest.sqlite_db import StorageError
from pair_manifest.images import ImageReadError
from pair_manifest.near_duplicates import same_photo_files
from pair_manifest.store import (DecisionStore, IdempotencyConflict, NewDecision, PolicyViolation, canonical_pair,
                                 canonical_tags)

from curation_app.catalog import Catalog
from curation_app.class_state import ClassState
from curation_app.previews import Previews
from curation_app.proposal_book import ProposalBook
from curation_app.workstate import LEASE_SECONDS, MODES, Item, WorkState, lease_kind

log = logging.getLogger("curation_app")

PICK_PAGE = 12  # candidates per pick page: a 4 x 3 grid of thumbnails
REVIEW_REJECT_SHARE = 4  # one reject in 4 (chosen by a hash) joins the review queue, so kappa sees both labels


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


def _order(*parts: str) -> bytes:
    """A fixed pseudo-random order: the same state always gives the same items."""
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()


def new_key() -> str:
    return uuid.uuid4().hex


def in_review_sample(idempotency_key: str) -> bool:
    """Whether a reject joins the review queue (a fixed one in REVIEW_REJECT_SHARE)."""
    return _order("review", idempotency_key)[0] % REVIEW_REJECT_SHARE == 0


def sampled_pairs(ordered: list[str]):
    """Pairs of a class without proposals, in a fixed order that does not depend on what has been
    decided (so the prefetched guess is the pair that really comes next): pairs at distance 1 in
    the shuffled list, then 2, ...; within one distance, disjoint pairs first, so a rejected image
    does not reappear at once."""
    n = len(ordered)
    for step in range(1, n):
        for parity in (0, 1):
            for i in range(n - step):
                if (i // step) % 2 == parity:
                    yield ordered[i], ordered[i + step]


class Curation:
    def __init__(self, images_root: str | Path, project_dir: str | Path, selection: ClassSelection, *,
                 target: int = 157, lease_seconds: float = LEASE_SECONDS, protected_files: tuple[Path, ...] = ()):
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
        self.classes = ClassState(self.store)
        self.previews = Previews(self.project_dir / "cache")
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._warmer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm")
        self._rankings: dict[tuple[str, str], list[str]] = {}
        self._orders: dict[str, list[str]] = {}

    def _lock(self, annotator: str) -> threading.Lock:
        """One action at a time per annotator (two tabs, a double press)."""
        with self._locks_guard:
            return self._locks.setdefault(annotator, threading.Lock())

    # -- public actions ----------------------------------------------------------------------

    def view(self, annotator: str) -> View:
        with self._lock(annotator):
            mode = self.work.mode(annotator)
            notes: list[str] = []
            item = self._resume(annotator, mode, notes)
            return self._view(annotator, mode, item, notes)

    def set_mode(self, annotator: str, mode: str) -> View:
        with self._lock(annotator):
            previous = lease_kind(self.work.mode(annotator))
            self.work.set_mode(annotator, mode)
            if previous != lease_kind(mode):  # a reviewer does not keep a class from the annotators
                self.work.release(annotator, previous)
            notes: list[str] = []
            return self._view(annotator, mode, self._resume(annotator, mode, notes), notes)

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
                    self._next(annotator, mode, notes)
                else:
                    notes.append(f"{self.catalog.label(wnid)} is being worked on by {self.work.holder(kind, wnid)}; "
                                 "you stay where you are.")
            return self._view(annotator, mode, self._resume(annotator, mode, notes), notes)

    def decide(self, annotator: str, key: str, verdict: str, tags=()) -> View:
        """verify: accept (with tags) / reject / skip the pair; review: accept = confirm, reject =
        refute, skip; pick: reject = next page of candidates, skip = skip the anchor."""
        if verdict not in ("accept", "reject", "skip"):
            raise UserError(f"verdict: '{verdict}' is not one of accept, reject, skip")
        tags = tuple(canonical_tags(tags).split("|")) if tags else ()
        tags = tuple(t for t in tags if t)
        with self._lock(annotator):
            mode = self.work.mode(annotator)
            notes: list[str] = []
            item = self._checked_current(annotator, mode, key, notes)
            if item is None:
                return self._view(annotator, mode, self._resume(annotator, mode, notes), notes)
            if mode == "pick":
                return self._pick_page_or_skip(annotator, item, verdict, notes)
            if mode == "review" and verdict == "skip":
                self.work.skip_review(annotator, item.review_of)
                notes.append("Skipped; this review stays in the queue for someone else.")
                return self._view(annotator, mode, self._next(annotator, mode, notes), notes)
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
                return self._view(annotator, mode, self._resume(annotator, mode, notes), notes)
            item = self._checked_current(annotator, mode, key, notes)
            if item is None:
                return self._view(annotator, mode, self._resume(annotator, mode, notes), notes)
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
                return self._view(annotator, mode, self._resume(annotator, mode, notes), notes)
            if item is None:  # make a key for this state, so a repeated press undoes once
                item = Item(new_key(), mode, "", ())
                self.work.set_current(annotator, item)
            recorded = self.store.undo_last(annotator, f"undo:{item.key}")
            if recorded is None:
                notes.append("Nothing to undo.")
                return self._view(annotator, mode, self._resume(annotator, mode, notes), notes)
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
            return self._view(annotator, mode, self._resume(annotator, mode, notes), notes)

    def after_storage_error(self, annotator: str, key: str, error: StorageError) -> View:
        """The page after the disk refused a write (full, read-only): whether the decision of
        the key pressed was saved all the same (looked up in the log), and the current item,
        shown without writing anything."""
        done = (self.store.decision_for_key(key) or self.store.decision_for_key(f"undo:{key}")) if key else None
        if done is not None:
            what = "undo" if done.verdict == "undo" else done.verdict
            notes = [f"Saved: {what} (decision {done.seq}). The server then could not prepare your next item: "
                     f"{error.cause}."]
        else:
            notes = [f"Not saved: the server cannot write its files ({error.cause}). Everything saved before is "
                     "kept."]
        notes.append("Tell whoever runs the server; once it has space again, press the key again.")
        mode = self.work.mode(annotator)
        item = self.work.current(annotator, mode)
        accepted = self.store.accepted_counts()
        counts = {"class_accepted": accepted.get(item.wnid, 0) if item and item.wnid else None, "target": self.target,
                  "overall_accepted": sum(accepted.get(w, 0) for w in self.catalog.wnids),
                  "overall_target": self.target * len(self.catalog.wnids), "classes": len(self.catalog.wnids),
                  "my_decisions": self.store.live_count(annotator)}
        view = View(annotator, mode, item, notes=notes, counts=counts)
        if item is not None and item.wnid:
            view.class_name = self.catalog.names.get(item.wnid, "")
        else:
            view.message = "Nothing can be shown until the server can write again."
        return view

    # -- recording ---------------------------------------------------------------------------

    def _record(self, annotator: str, mode: str, item: Item, new: NewDecision, notes: list[str]) -> View:
        if new.verdict == "accept":  # hashes may be cached: make sure the files are still there
            gone = [f for f in (new.file_a, new.file_b) if not self._resolvable(f)]
            for file in gone:
                notes.append(self.catalog.mark_bad(item.wnid, file, "missing: the file is gone from the images root"))
            if gone:
                return self._view(annotator, mode, self._next(annotator, mode, notes), notes)
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
            if self._invalid(annotator, item) is None:
                return self._view(annotator, mode, item, notes)  # stays: reject or skip it instead
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
        return self._view(annotator, mode, self._next(annotator, mode, notes), notes)

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
        if verdict == "skip":
            self.work.skip_anchor(annotator, item.files[0])
            notes.append("Anchor skipped; it comes back after the others.")
            return self._view(annotator, "pick", self._next(annotator, "pick", notes, exclude={item.files[0]}), notes)
        for page in (item.page + 1, 0):  # "none of these": the next page, or back to the first
            candidates = self._pick_candidates(annotator, item.wnid, item.files[0], page, notes)
            if candidates:
                if page == 0:
                    notes.append("No more candidates; back to the first page.")
                following = replace(item, key=new_key(), candidates=tuple(candidates), page=page)
                self.work.set_current(annotator, following)
                return self._view(annotator, "pick", following, notes)
        return self._view(annotator, "pick", self._next(annotator, "pick", notes, exclude={item.files[0]}), notes)

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

    # -- current item: resume, check, allocate -----------------------------------------------

    def _checked_current(self, annotator: str, mode: str, key: str, notes: list[str]) -> Item | None:
        """The current item if the client acted on it and it is still valid (never the "nothing to
        do" placeholder); otherwise None and a note saying why (the caller then shows the current
        item)."""
        item = self.work.current(annotator, mode)
        if item is None or key != item.key:
            done = self.store.decision_for_key(key) if key else None
            notes.append(f"Already saved (decision {done.seq}); nothing recorded twice." if done else
                         "Your screen was out of date (another tab?); here is your current item.")
            return None
        problem = self._invalid(annotator, item)
        if problem is not None:
            if problem:
                notes.append(problem)
            self._next(annotator, mode, notes)
            return None
        return item

    def _resume(self, annotator: str, mode: str, notes: list[str]) -> Item | None:
        item = self.work.current(annotator, mode)
        if item is not None and not item.files:  # "nothing to do" placeholder: look again
            found = self._next(annotator, mode, notes, keep_placeholder=item)
            return found
        if item is not None:
            problem = self._invalid(annotator, item)
            if problem is None:
                return item
            if problem:
                notes.append(problem)
        return self._next(annotator, mode, notes)

    def _invalid(self, annotator: str, item: Item) -> str | None:
        """None if the item can still be shown; otherwise why not ('' when there is nothing to say)."""
        if not item.files:
            return ""
        if self.store.decision_for_key(item.key) is not None:
            return ""  # decided just before a restart
        kind = lease_kind(item.mode)
        held = self.work.held_class(annotator, kind)
        if held is not None and held != item.wnid:
            return ""
        if not self.work.acquire(annotator, kind, item.wnid):
            return (f"{self.catalog.label(item.wnid)} went to {self.work.holder(kind, item.wnid)} while you were "
                    "away; here is other work.")
        bad = self.work.bad_images(item.wnid)
        if any(f in bad for f in item.files):
            return ""
        if item.mode == "review":
            return None if any(d.seq == item.review_of for d in self.store.review_candidates(item.wnid, annotator)) else ""
        state = self.classes.of(item.wnid)
        used = state.used
        if any(f in used for f in item.files):
            return ""
        if item.mode == "verify" and canonical_pair(*item.files) in state.decided:
            return ""
        if item.mode == "pick" and (not item.candidates or all(c in used or c in bad for c in item.candidates)):
            return ""
        return None

    def _next(self, annotator: str, mode: str, notes: list[str], *, exclude=frozenset(),
              keep_placeholder: Item | None = None) -> Item | None:
        """Find, store and return the annotator's next item; a placeholder when there is no work."""
        kind = lease_kind(mode)
        for wnid in self._class_order(annotator, kind):
            if not self.work.acquire(annotator, kind, wnid):
                continue
            item = self._find(annotator, mode, wnid, set(exclude), notes)
            if item is not None:
                self.work.set_current(annotator, item)
                return item
            self.work.release(annotator, kind, wnid)
            if self.work.preferred_class(annotator) == wnid:
                if wnid in self.catalog.unreadable:
                    notes.append(f"{self.catalog.label(wnid)}: its folder cannot be read "
                                 f"({self.catalog.unreadable[wnid]}); the other classes go on.")
                else:
                    notes.append(f"Nothing left for you in {self.catalog.label(wnid)} in {mode} mode; moving on.")
                self.work.set_preferred_class(annotator, None)
        placeholder = keep_placeholder or Item(new_key(), mode, "", ())
        self.work.set_current(annotator, placeholder)
        return placeholder

    def _class_order(self, annotator: str, kind: str) -> list[str]:
        leases = self.work.leases()
        accepted = self.store.accepted_counts()
        held = self.work.held_class(annotator, kind)
        preferred = self.work.preferred_class(annotator)
        free = [w for w in self.catalog.wnids if leases.get((kind, w), annotator) == annotator]
        if kind == "annotate":
            free = [w for w in free if accepted.get(w, 0) < self.target]
            free.sort(key=lambda w: accepted.get(w, 0))  # stable: label order among equals
        first = [w for w in (held, preferred) if w and w in free]
        return list(dict.fromkeys(first + free))

    # -- finding items in one class ----------------------------------------------------------

    def _find(self, annotator: str, mode: str, wnid: str, exclude: set[str], notes: list[str], *,
              check: bool = True) -> Item | None:
        """The first open item of a class for this annotator. `check=False` (prefetch guesses)
        skips decoding and hashing; the real allocation checks every image before showing it."""
        if mode == "verify":
            return self._find_pair(annotator, wnid, exclude, notes, check)
        if mode == "pick":
            return self._find_anchor(annotator, wnid, exclude, notes, check)
        return self._find_review(annotator, wnid, exclude, notes, check)

    def _free_files(self, wnid: str, exclude: set[str]) -> list[str]:
        used = self.classes.of(wnid).used
        return [f for f in self.catalog.files(wnid) if f not in used and f not in exclude]

    def _usable(self, wnid: str, files, size: str, notes: list[str]) -> bool:
        """Make the previews now (cached): an image that cannot be decoded is found here, before
        anyone is shown it."""
        for file in files:
            try:
                self.previews.get(self.store.resolve(file), file, size)
            except ImageReadError as error:
                notes.append(self.catalog.mark_bad(wnid, file, f"{error.reason}: {error.detail}"))
                return False
            except (UserError, OSError) as error:
                notes.append(self.catalog.mark_bad(wnid, file, f"unreadable: {error}"))
                return False
        return True

    def _distinct_photos(self, wnid: str, a: str, b: str, notes: list[str]) -> bool:
        """Same bytes or near-duplicates can never be accepted: do not ask about them."""
        try:
            facts_a, facts_b = self.store.image_facts(a), self.store.image_facts(b)
        except ImageReadError as error:
            notes.append(self.catalog.mark_bad(wnid, error.path, f"{error.reason}: {error.detail}"))
            return False
        try:
            return not same_photo_files(facts_a, facts_b, self.store.resolve(a), self.store.resolve(b), names=(a, b))
        except ImageReadError as error:
            notes.append(self.catalog.mark_bad(wnid, error.path, f"{error.reason}: {error.detail}"))
            return False

    def _find_pair(self, annotator: str, wnid: str, exclude: set[str], notes: list[str], check: bool) -> Item | None:
        free = set(self._free_files(wnid, exclude))
        closed = self.classes.of(wnid).closed_for(annotator)
        proposals = self.proposals.for_class(wnid)
        sampled = sampled_pairs(self._shuffled(wnid))
        for pair, source in [((p.file_a, p.file_b), p.source) for p in proposals] or []:
            item = self._try_pair(wnid, pair, source, free, closed, notes, check)
            if item is not None:
                return item
        for pair in sampled:
            item = self._try_pair(wnid, pair, "manual", free, closed, notes, check)
            if item is not None:
                return item
        return None

    def _shuffled(self, wnid: str) -> list[str]:
        """The class's usable files in their fixed pseudo-random order: sorted once per class
        (1,300 blake2b keys), then only filtered as images turn out bad."""
        files = self.catalog.files(wnid)
        order = self._orders.get(wnid)
        if order is None or len(order) < len(files):
            order = self._orders[wnid] = sorted(files, key=lambda f: _order(wnid, f))
        if len(order) == len(files):
            return order
        usable = set(files)
        return [f for f in order if f in usable]

    def _try_pair(self, wnid, pair, source, free: set[str], closed: set, notes, check: bool) -> Item | None:
        a, b = pair = canonical_pair(*pair)
        if a not in free or b not in free or pair in closed:
            return None
        closed.add(pair)
        if check:
            if not self._distinct_photos(wnid, a, b, notes) or not self._usable(wnid, pair, "preview", notes):
                free.difference_update(self.work.bad_images(wnid))
                return None
        return Item(new_key(), "verify", wnid, pair, source=source)

    def _find_anchor(self, annotator: str, wnid: str, exclude: set[str], notes: list[str], check: bool) -> Item | None:
        skipped = self.work.skipped_anchors(annotator)
        anchors = sorted(self._free_files(wnid, exclude),
                         key=lambda f: (f in skipped, skipped.get(f, 0.0), _order(wnid, "anchor", f)))
        for anchor in anchors:
            candidates = self._pick_candidates(annotator, wnid, anchor, 0, notes, check)
            if candidates and (not check or self._usable(wnid, [anchor], "preview", notes)):
                return Item(new_key(), "pick", wnid, (anchor,), tuple(candidates))
        return None

    def _pick_candidates(self, annotator: str, wnid: str, anchor: str, page: int, notes: list[str],
                         check: bool = True) -> list[str]:
        """One page of candidates for an anchor: ranked by the proposals code once `propose` has run,
        else proposal scores first, then a fixed order."""
        closed = self.classes.of(wnid).closed_for(annotator)
        pool = [c for c in self._free_files(wnid, {anchor}) if canonical_pair(anchor, c) not in closed]
        ranked = self._ranked(wnid, anchor, pool)
        if ranked is not None:
            open_ = set(pool)
            pool = [c for c in ranked if c in open_]
        else:
            scores = self.proposals.scores(wnid)
            pool.sort(key=lambda c: (-scores.get(canonical_pair(anchor, c), float("-inf")), _order(anchor, c)))
        # Undecodable images, and copies or near-duplicates of the anchor (never acceptable), are
        # left out; pages are cut from what remains, so page n+1 never repeats page n.
        wanted = (page + 1) * PICK_PAGE
        kept: list[str] = []
        for c in pool:
            if not check or (self._usable(wnid, [c], "thumb", notes) and self._distinct_photos(wnid, anchor, c, notes)):
                kept.append(c)
                if len(kept) == wanted:
                    break
        return kept[page * PICK_PAGE:wanted]

    def _ranked(self, wnid: str, anchor: str, pool: list[str]) -> list[str] | None:
        """The anchor's candidates ranked by the proposals' own scores (`curation_app.proposals.
        ranking`, which also leaves out near-duplicates of the anchor), once `propose` has run for
        this project; None before (or if ranking fails: logged, and a fixed order is used)."""
        if not self.proposals.available or not pool:
            return None
        cached = self._rankings.get((wnid, anchor))
        if cached is not None:
            return cached
        try:
            from curation_app.proposals.ranking import rank_candidates
        except ImportError:
            return None
        try:
            ranked = [f for f, _ in rank_candidates(self.project_dir, wnid, anchor, pool, images_root=self.images_root)]
        except UserError as error:
            log.warning("pick-mode ranking unavailable for %s: %s", anchor, error)
            return None
        except Exception:  # noqa: BLE001 - a ranking problem must not stop the annotator
            log.exception("pick-mode ranking failed for %s", anchor)
            return None
        with self._locks_guard:
            if len(self._rankings) > 512:
                self._rankings.clear()
            self._rankings[(wnid, anchor)] = ranked
        return ranked

    def _find_review(self, annotator: str, wnid: str, exclude: set[str], notes: list[str], check: bool) -> Item | None:
        skipped = self.work.skipped_reviews(annotator)
        for decision in self.store.review_candidates(wnid, annotator):
            if decision.seq in skipped or decision.file_a in exclude or decision.file_b in exclude:
                continue
            if decision.verdict == "reject" and not in_review_sample(decision.idempotency_key):
                continue
            pair = (decision.file_a, decision.file_b)
            if not check or self._usable(wnid, pair, "preview", notes):
                return Item(new_key(), "review", wnid, pair, review_of=decision.seq, source=decision.source)
        return None

    # -- the view ----------------------------------------------------------------------------

    def _view(self, annotator: str, mode: str, item: Item | None, notes: list[str]) -> View:
        accepted = self.store.accepted_counts()
        counts = {
            "class_accepted": accepted.get(item.wnid, 0) if item and item.wnid else None,
            "target": self.target,
            "overall_accepted": sum(accepted.get(w, 0) for w in self.catalog.wnids),
            "overall_target": self.target * len(self.catalog.wnids),
            "classes": len(self.catalog.wnids),
            "my_decisions": self.store.live_count(annotator),
        }
        view = View(annotator, mode, item, notes=notes, counts=counts)
        if item is not None and item.wnid:
            view.class_name = self.catalog.names.get(item.wnid, "")
            view.class_note = self.catalog.bad_note(item.wnid)
            view.upcoming = self._upcoming(annotator, mode, item)
        else:
            view.message = self._no_work_message(annotator, mode)
        return view

    def _upcoming(self, annotator: str, mode: str, item: Item) -> Item | None:
        """The next item if this one is decided (any verdict): its images are prefetched. Only
        computed, not stored; it uses none of the current item's images."""
        try:
            upcoming = self._find(annotator, mode, item.wnid, set(item.files), [], check=False)
        except UserError:
            return None
        if upcoming is not None:
            self._warmer.submit(self._warm, upcoming)
        return upcoming

    def _warm(self, item: Item) -> None:
        """Hash and preview the upcoming images off the request path (errors surface later, when
        the item is really allocated and checked)."""
        try:
            if item.mode == "verify":
                self.store.image_facts(item.files[0])
                self.store.image_facts(item.files[1])
            size = "preview"
            for file in item.files:
                self.previews.get(self.store.resolve(file), file, size)
            for file in item.candidates:
                self.previews.get(self.store.resolve(file), file, "thumb")
        except (UserError, OSError):
            pass
        except Exception:  # noqa: BLE001 - a warm-up must never take the server down
            log.exception("warming the previews of %s failed", item.files)

    def _no_work_message(self, annotator: str, mode: str) -> str:
        kind = lease_kind(mode)
        others = sorted({f"{w} ({who})" for (k, w), who in self.work.leases().items() if k == kind and who != annotator})
        if mode == "review":
            base = "Nothing to review right now: every accept (and sampled reject) of others has been reviewed"
        else:
            base = "No pairs left for you in this mode: every class has reached its target or has no unseen pairs left"
        return base + (f"; classes in use by others: {', '.join(others)}." if others else ".")

    def image_path(self, file: str) -> Path:
        return self.store.resolve(file)


__all__ = ["Curation", "View", "MODES", "PICK_PAGE"]
