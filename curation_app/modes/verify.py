"""Verify mode: one pair at a time, accept (with tags), reject or skip.

Pairs come from the proposals in the order `ProposalBook.for_class` gives (the proposals code
owns that order and may learn it from the class's decisions), then, for a class without
proposals, from a fixed pseudo-random order of its files."""
from __future__ import annotations

from pair_manifest.file_ids import canonical_pair

from curation_app.modes.base import Strategy, Workspace, fixed_order, new_key
from curation_app.workstate import Item


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


class VerifyStrategy(Strategy):
    mode = "verify"

    def __init__(self, workspace: Workspace):
        super().__init__(workspace)
        self._orders: dict[str, list[str]] = {}

    def assign(self, annotator: str, wnid: str, *, exclude: set[str], notes: list[str],
               check: bool = True) -> Item | None:
        free = set(self.free_files(wnid, exclude))
        closed = self.ws.classes.of(wnid).closed_for(annotator)
        for proposal in self.ws.proposals.for_class(wnid):
            item = self._try(wnid, (proposal.file_a, proposal.file_b), proposal.source, free, closed, notes, check)
            if item is not None:
                return item
        for pair in sampled_pairs(self._shuffled(wnid)):
            item = self._try(wnid, pair, "manual", free, closed, notes, check)
            if item is not None:
                return item
        return None

    def still_open(self, annotator: str, item: Item) -> bool:
        state = self.ws.classes.of(item.wnid)
        return not any(f in state.used for f in item.files) and canonical_pair(*item.files) not in state.decided

    def _shuffled(self, wnid: str) -> list[str]:
        """The class's usable files in their fixed pseudo-random order: sorted once per class
        (1,300 blake2b keys), then only filtered as images turn out bad."""
        files = self.ws.catalog.files(wnid)
        order = self._orders.get(wnid)
        if order is None or len(order) < len(files):
            order = self._orders[wnid] = sorted(files, key=lambda f: fixed_order(wnid, f))
        if len(order) == len(files):
            return order
        usable = set(files)
        return [f for f in order if f in usable]

    def _try(self, wnid, pair, source, free: set[str], closed: set, notes, check: bool) -> Item | None:
        a, b = pair = canonical_pair(*pair)
        if a not in free or b not in free or pair in closed:
            return None
        closed.add(pair)
        if check:
            if not self.distinct_photos(wnid, a, b, notes) or not self.usable(wnid, pair, "preview", notes):
                free.difference_update(self.ws.work.bad_images(wnid))
                return None
        return Item(new_key(), "verify", wnid, pair, source=source)
