"""The decision-store queries the app added: skipped pairs, the review queue, live counts, and the
decision behind an idempotency key."""
from __future__ import annotations

from pair_manifest.errors import UserError
from pair_manifest.store import DecisionStore, NewDecision

WNID = "n03085013"


def test_review_queue_skips_and_counts_follow_undo_and_review(tmp_path, sample_images):
    files = [f"{WNID}/{p.name}" for p in sorted((sample_images / WNID).iterdir())]
    store = DecisionStore.for_project(tmp_path, images_root=sample_images)
    accept = store.record(NewDecision("k1", WNID, files[0], files[1], "accept", "alice")).decision
    reject = store.record(NewDecision("k2", WNID, files[2], files[3], "reject", "alice")).decision
    skip = store.record(NewDecision("k3", WNID, files[4], files[5], "skip", "alice")).decision
    assert store.decision_for_key("k2") == reject and store.decision_for_key("nope") is None
    assert store.skipped_pairs(WNID, "alice") == {(skip.file_a, skip.file_b)}
    assert store.skipped_pairs(WNID, "bob") == set()
    assert [d.seq for d in store.review_candidates(WNID, "bob")] == [accept.seq, reject.seq]
    assert store.review_candidates(WNID, "alice") == []  # never one's own decisions
    assert store.live_count("alice") == 3

    store.record(NewDecision("r1", WNID, files[0], files[1], "accept", "bob", review_of=accept.seq))
    assert [d.seq for d in store.review_candidates(WNID, "carol")] == [reject.seq]
    store.undo_last("bob", "u1")  # the review is undone: the accept needs a review again
    assert [d.seq for d in store.review_candidates(WNID, "carol")] == [accept.seq, reject.seq]
    store.undo_last("alice", "u2")  # undoes the skip
    assert store.skipped_pairs(WNID, "alice") == set() and store.live_count("alice") == 2


def test_class_snapshots_follow_the_log_whoever_writes_it(tmp_path, sample_images):
    """The app's per-class sets, kept up to date from the decisions appended since, equal the
    store's derived state after every kind of decision, written through another connection."""
    import random

    from curation_app.class_state import ClassState

    files = [f"{WNID}/{p.name}" for p in sorted((sample_images / WNID).iterdir())]
    store = DecisionStore.for_project(tmp_path, images_root=sample_images)
    writer = DecisionStore.for_project(tmp_path, images_root=sample_images)  # another server
    classes = ClassState(store)
    rng = random.Random(3)
    accepts = []
    for step in range(120):
        who = rng.choice(["alice", "bob"])
        roll = rng.random()
        try:
            if roll < 0.08:
                writer.undo_last(who, f"u{step}")
            elif roll < 0.14 and accepts:
                target = rng.choice(accepts)
                writer.record(NewDecision(f"r{step}", WNID, target.file_a, target.file_b, rng.choice(["accept", "reject"]),
                                          "carol", review_of=target.seq))
            else:
                a, b = rng.sample(files[:16], 2)
                verdict = rng.choice(["accept", "reject", "skip"])
                done = writer.record(NewDecision(f"k{step}", WNID, a, b, verdict, who)).decision
                if verdict == "accept":
                    accepts.append(done)
        except UserError:
            pass
        snapshot = classes.of(WNID)
        assert snapshot.decided == store.decided_pairs(WNID) and snapshot.used == store.used_images(WNID)
        assert snapshot.accepted == store.decided_pairs(WNID, "accepted")
        for person in ("alice", "bob"):
            assert snapshot.closed_for(person) == store.decided_pairs(WNID) | store.skipped_pairs(WNID, person)
