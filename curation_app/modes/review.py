"""Review mode: another annotator's accept, or one reject in `REVIEW_REJECT_SHARE`, shown blind
(the verdict is not shown): accept confirms, reject refutes, skip leaves it for someone else."""
from __future__ import annotations

from curation_app.modes.base import Strategy, fixed_order, new_key
from curation_app.workstate import Item

REVIEW_REJECT_SHARE = 4  # one reject in 4 (chosen by a hash) joins the review queue, so kappa sees both labels


def in_review_sample(idempotency_key: str) -> bool:
    """Whether a reject joins the review queue (a fixed one in REVIEW_REJECT_SHARE)."""
    return fixed_order("review", idempotency_key)[0] % REVIEW_REJECT_SHARE == 0


class ReviewStrategy(Strategy):
    mode = "review"

    def assign(self, annotator: str, wnid: str, *, exclude: set[str], notes: list[str],
               check: bool = True) -> Item | None:
        skipped = self.ws.work.skipped_reviews(annotator)
        for decision in self.ws.store.review_candidates(wnid, annotator):
            if decision.seq in skipped or decision.file_a in exclude or decision.file_b in exclude:
                continue
            if decision.verdict == "reject" and not in_review_sample(decision.idempotency_key):
                continue
            pair = (decision.file_a, decision.file_b)
            if not check or self.usable(wnid, pair, "preview", notes):
                return Item(new_key(), "review", wnid, pair, review_of=decision.seq, source=decision.source)
        return None

    def still_open(self, annotator: str, item: Item) -> bool:
        return any(d.seq == item.review_of for d in self.ws.store.review_candidates(item.wnid, annotator))
