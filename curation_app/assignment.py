"""Who gets which item: the module that guarantees **no pair, anchor or review is ever shown to
two annotators**.

The guarantee rests on class leases (`WorkState.acquire`, a `BEGIN IMMEDIATE` transaction on
`work.sqlite`, so it holds across threads and across servers on one project): an item is only
found (`Strategy.assign`) inside a class whose lease the annotator has just taken, and an item
stored earlier is shown again only after `check` has renewed that lease. The strategies
(`curation_app.modes`) never look outside the class they are given.

Each annotator's current item is stored (`WorkState.set_current`) before it is shown, under the
idempotency key its decision will carry: a reload, a second tab or a restarted server shows the
same item, and a decision is recorded once.
"""
from __future__ import annotations

from dataclasses import dataclass

from pair_manifest.errors import UserError

from curation_app.modes import Strategy, Workspace
from curation_app.modes.base import new_key
from curation_app.workstate import Item, lease_kind


@dataclass(frozen=True)
class Check:
    """Whether an item stored earlier may still be shown, and if not, what to tell the annotator
    (None: nothing worth saying, e.g. it was decided in another tab)."""

    showable: bool
    note: str | None = None


SHOWABLE = Check(True)
GONE = Check(False)


class Assignment:
    def __init__(self, workspace: Workspace, strategies: dict[str, Strategy], *, target: int):
        self.ws = workspace
        self.strategies = strategies
        self.target = target

    def check(self, annotator: str, item: Item) -> Check:
        """May `item` still be shown to `annotator`? Renews the class lease when it may."""
        ws = self.ws
        if not item.files:
            return GONE
        if ws.store.decision_for_key(item.key) is not None:
            return GONE  # decided just before a restart, or in another tab
        kind = lease_kind(item.mode)
        held = ws.work.held_class(annotator, kind)
        if held is not None and held != item.wnid:
            return GONE
        if not ws.work.acquire(annotator, kind, item.wnid):
            return Check(False, f"{ws.catalog.label(item.wnid)} went to {ws.work.holder(kind, item.wnid)} while you "
                                "were away; here is other work.")
        bad = ws.work.bad_images(item.wnid)
        if any(f in bad for f in item.files):
            return GONE
        return SHOWABLE if self.strategies[item.mode].still_open(annotator, item) else GONE

    def current_if_pressed(self, annotator: str, mode: str, key: str, notes: list[str]) -> Item | None:
        """The current item if the client acted on it (`key`) and it can still be decided; else
        None with a note saying why (the caller then shows the current item)."""
        item = self.ws.work.current(annotator, mode)
        if item is None or key != item.key:
            done = self.ws.store.decision_for_key(key) if key else None
            notes.append(f"Already saved (decision {done.seq}); nothing recorded twice." if done else
                         "Your screen was out of date (another tab?); here is your current item.")
            return None
        check = self.check(annotator, item)
        if not check.showable:
            if check.note:
                notes.append(check.note)
            self.next(annotator, mode, notes)
            return None
        return item

    def resume(self, annotator: str, mode: str, notes: list[str]) -> Item:
        """The item to show now: the stored one if it still can be, else the next one."""
        item = self.ws.work.current(annotator, mode)
        if item is not None and not item.files:  # "nothing to do" placeholder: look again
            return self.next(annotator, mode, notes, keep_placeholder=item)
        if item is not None:
            check = self.check(annotator, item)
            if check.showable:
                return item
            if check.note:
                notes.append(check.note)
        return self.next(annotator, mode, notes)

    def next(self, annotator: str, mode: str, notes: list[str], *, exclude=frozenset(),
             keep_placeholder: Item | None = None) -> Item:
        """Find, store and return the annotator's next item: the first class (in `class_order`)
        whose lease they can take and that has work for them; a placeholder when none has."""
        ws = self.ws
        kind = lease_kind(mode)
        for wnid in self.class_order(annotator, kind):
            if not ws.work.acquire(annotator, kind, wnid):
                continue
            item = self.strategies[mode].assign(annotator, wnid, exclude=set(exclude), notes=notes)
            if item is not None:
                ws.work.set_current(annotator, item)
                return item
            ws.work.release(annotator, kind, wnid)
            if ws.work.preferred_class(annotator) == wnid:
                if wnid in ws.catalog.unreadable:
                    notes.append(f"{ws.catalog.label(wnid)}: its folder cannot be read "
                                 f"({ws.catalog.unreadable[wnid]}); the other classes go on.")
                else:
                    notes.append(f"Nothing left for you in {ws.catalog.label(wnid)} in {mode} mode; moving on.")
                ws.work.set_preferred_class(annotator, None)
        placeholder = keep_placeholder or Item(new_key(), mode, "", ())
        ws.work.set_current(annotator, placeholder)
        return placeholder

    def class_order(self, annotator: str, kind: str) -> list[str]:
        """Classes to try: the one held, the one chosen, then the free ones furthest from the
        target (label order among equals); others' classes never."""
        ws = self.ws
        leases = ws.work.leases()
        accepted = ws.store.accepted_counts()
        held = ws.work.held_class(annotator, kind)
        preferred = ws.work.preferred_class(annotator)
        free = [w for w in ws.catalog.wnids if leases.get((kind, w), annotator) == annotator]
        if kind == "annotate":
            free = [w for w in free if accepted.get(w, 0) < self.target]
            free.sort(key=lambda w: accepted.get(w, 0))  # stable: label order among equals
        first = [w for w in (held, preferred) if w and w in free]
        return list(dict.fromkeys(first + free))

    def upcoming(self, annotator: str, mode: str, item: Item) -> Item | None:
        """The item that comes next if this one is decided (any verdict), for prefetching its
        images: only found, never stored, using none of this item's images."""
        try:
            return self.strategies[mode].assign(annotator, item.wnid, exclude=set(item.files), notes=[], check=False)
        except UserError:
            return None
