"""Pick mode: an anchor image and a page of candidates from its class; the annotator clicks the
one that makes a semantic pair (`reject` shows the next page, `skip` puts the anchor back).

Candidates are ranked by the proposals' own scores once `propose` has run
(`curation_app.proposals.ranking`, which also leaves out near-duplicates of the anchor), else by
proposal scores where a pair was proposed, then a fixed order."""
from __future__ import annotations

import logging
import threading

from pair_manifest.errors import UserError
from pair_manifest.file_ids import canonical_pair

from curation_app.modes.base import Strategy, Workspace, fixed_order, new_key
from curation_app.workstate import Item

log = logging.getLogger("curation_app")

PICK_PAGE = 12  # candidates per pick page: a 4 x 3 grid of thumbnails


class PickStrategy(Strategy):
    mode = "pick"

    def __init__(self, workspace: Workspace):
        super().__init__(workspace)
        self._rankings: dict[tuple[str, str], list[str]] = {}
        self._rankings_lock = threading.Lock()

    def assign(self, annotator: str, wnid: str, *, exclude: set[str], notes: list[str],
               check: bool = True) -> Item | None:
        skipped = self.ws.work.skipped_anchors(annotator)
        anchors = sorted(self.free_files(wnid, exclude),
                         key=lambda f: (f in skipped, skipped.get(f, 0.0), fixed_order(wnid, "anchor", f)))
        for anchor in anchors:
            candidates = self.candidates(annotator, wnid, anchor, 0, notes, check)
            if candidates and (not check or self.usable(wnid, [anchor], "preview", notes)):
                return Item(new_key(), "pick", wnid, (anchor,), tuple(candidates))
        return None

    def still_open(self, annotator: str, item: Item) -> bool:
        used = self.ws.classes.of(item.wnid).used
        bad = self.ws.work.bad_images(item.wnid)
        return (item.files[0] not in used and bool(item.candidates)
                and not all(c in used or c in bad for c in item.candidates))

    def candidates(self, annotator: str, wnid: str, anchor: str, page: int, notes: list[str],
                   check: bool = True) -> list[str]:
        """One page of candidates for an anchor."""
        closed = self.ws.classes.of(wnid).closed_for(annotator)
        pool = [c for c in self.free_files(wnid, {anchor}) if canonical_pair(anchor, c) not in closed]
        ranked = self._ranked(wnid, anchor, pool)
        if ranked is not None:
            open_ = set(pool)
            pool = [c for c in ranked if c in open_]
        else:
            scores = self.ws.proposals.scores(wnid)
            pool.sort(key=lambda c: (-scores.get(canonical_pair(anchor, c), float("-inf")), fixed_order(anchor, c)))
        # Undecodable images, and copies or near-duplicates of the anchor (never acceptable), are
        # left out; pages are cut from what remains, so page n+1 never repeats page n.
        wanted = (page + 1) * PICK_PAGE
        kept: list[str] = []
        for c in pool:
            if not check or (self.usable(wnid, [c], "thumb", notes) and self.distinct_photos(wnid, anchor, c, notes)):
                kept.append(c)
                if len(kept) == wanted:
                    break
        return kept[page * PICK_PAGE:wanted]

    def _ranked(self, wnid: str, anchor: str, pool: list[str]) -> list[str] | None:
        """The anchor's candidates ranked by the proposals code, once `propose` has run for this
        project; None before (or if ranking fails: logged, and a fixed order is used)."""
        from curation_app.proposals.ranking import rank_candidates

        if not self.ws.proposals.available or not pool:
            return None
        cached = self._rankings.get((wnid, anchor))
        if cached is not None:
            return cached
        try:
            ranked = [f for f, _ in rank_candidates(self.ws.project_dir, wnid, anchor, pool,
                                                    images_root=self.ws.images_root)]
        except UserError as error:
            log.warning("pick-mode ranking unavailable for %s: %s", anchor, error)
            return None
        except Exception:  # noqa: BLE001 - a ranking problem must not stop the annotator
            log.exception("pick-mode ranking failed for %s", anchor)
            return None
        with self._rankings_lock:
            if len(self._rankings) > 512:
                self._rankings.clear()
            self._rankings[(wnid, anchor)] = ranked
        return ranked
