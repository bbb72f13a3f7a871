"""The decision store: policy, idempotency, undo, review, and derived state equal to the log."""
from __future__ import annotations

import sqlite3

import pytest

from pair_manifest.decisions import IdempotencyConflict, NewDecision, PolicyViolation
from pair_manifest.file_ids import resolve_image
from pair_manifest.store import DecisionStore
from pair_manifest.errors import UserError

WNID = "n03085013"  # 45 images: 5 full-resolution + 40 at 64x64


@pytest.fixture
def files(sample_images):
    return [f"{WNID}/{p.name}" for p in sorted((sample_images / WNID).iterdir())]


@pytest.fixture
def store(tmp_path, sample_images):
    s = DecisionStore.for_project(tmp_path / "project", images_root=sample_images)
    yield s
    s.close()


def accept(key, a, b, who="alice", **kw):
    return NewDecision(key, WNID, a, b, "accept", who, **kw)


def test_settings_are_wal_and_full_sync(store):
    connection = store._connection()
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_accept_records_hashes_and_canonical_order(store, files):
    recorded = store.record(accept("k1", files[3], files[1], tags=("viewpoint", "background")))
    d = recorded.decision
    assert (d.file_a, d.file_b) == (files[1], files[3])
    assert d.tags == ("background", "viewpoint")  # canonical tag order
    assert len(d.sha256_a) == 64 and d.sha256_a != d.sha256_b
    assert d.decided_at.endswith("Z")
    assert store.used_images(WNID) == {files[1], files[3]}


def test_policy_refusals_name_the_files(store, files, images_copy):
    with pytest.raises(PolicyViolation, match="two different files"):
        store.record(accept("k1", files[0], files[0]))
    store.record(accept("k2", files[0], files[1]))
    with pytest.raises(PolicyViolation, match=f"{files[0]}: already in an accepted pair"):
        store.record(accept("k3", files[0], files[2]))
    with pytest.raises(PolicyViolation, match="already accepted by alice"):
        store.record(NewDecision("k4", WNID, files[0], files[1], "reject", "bob"))
    # Same bytes under two names.
    duplicate = images_copy / WNID / "copy.JPEG"
    duplicate.write_bytes((images_copy / files[5]).read_bytes())
    copy_store = DecisionStore(store.path.parent / "copy.sqlite", images_root=images_copy)
    with pytest.raises(PolicyViolation, match="same bytes"):
        copy_store.record(accept("k5", files[5], f"{WNID}/copy.JPEG"))


def test_near_duplicates_are_refused(tmp_path, images_copy, files):
    from PIL import Image, ImageOps

    source = images_copy / files[0]
    ImageOps.mirror(Image.open(source)).save(images_copy / WNID / "mirror.JPEG", quality=60)
    store = DecisionStore(tmp_path / "s.sqlite", images_root=images_copy)
    with pytest.raises(PolicyViolation, match="near-duplicates"):
        store.record(accept("k1", files[0], f"{WNID}/mirror.JPEG"))


def test_traversal_and_foreign_files_are_refused(store, files, sample_images):
    for bad in (f"{WNID}/../n04554684/x.JPEG", "../etc/passwd", f"/{WNID}/x.JPEG", f"{WNID}/sub/x.JPEG",
                f"n04554684/{files[0].split('/')[1]}"):
        with pytest.raises(UserError):
            store.record(accept("kx", bad, files[1]))
    with pytest.raises(UserError, match="no such image"):
        resolve_image(sample_images, f"{WNID}/missing.JPEG")


def test_idempotency_key_records_once_and_refuses_a_different_reuse(store, files):
    first = store.record(accept("same", files[0], files[1]))
    again = store.record(accept("same", files[1], files[0]))
    assert again.duplicate and again.decision.seq == first.decision.seq
    assert store.count() == 1
    with pytest.raises(IdempotencyConflict):
        store.record(accept("same", files[0], files[2]))


def test_undo_frees_images_and_is_idempotent(store, files):
    store.record(accept("k1", files[0], files[1]))
    undo = store.undo_last("alice", "u1")
    assert undo.decision.verdict == "undo" and undo.decision.undo_of == 1
    assert store.undo_last("alice", "u1").duplicate
    assert store.used_images() == set()
    store.record(accept("k2", files[0], files[2]))  # the image is free again
    assert store.undo_last("bob", "u2") is None  # bob has nothing to undo


def test_review_refutes_confirms_and_cannot_be_self_review(store, files):
    a = store.record(accept("k1", files[0], files[1])).decision
    b = store.record(accept("k2", files[2], files[3])).decision
    with pytest.raises(PolicyViolation, match="cannot review their own"):
        store.record(NewDecision("r0", WNID, files[0], files[1], "accept", "alice", review_of=a.seq))
    store.record(NewDecision("r1", WNID, files[0], files[1], "accept", "bob", review_of=a.seq))
    store.record(NewDecision("r2", WNID, files[2], files[3], "reject", "bob", review_of=b.seq))
    pairs = store.accepted_pairs()
    assert [(p.decision.seq, p.review_status) for p in pairs] == [(a.seq, "confirmed")]
    assert store.used_images() == {files[0], files[1]}  # refuted pair freed its images
    with pytest.raises(PolicyViolation, match="refuted"):
        store.record(accept("k3", files[2], files[3]))
    store.undo_last("bob", "u1")  # undo the refutation: the pair is back
    assert {p.decision.seq for p in store.accepted_pairs()} == {a.seq, b.seq}


def test_ranks_follow_acceptance_order_per_class(store, files):
    for i in range(4):
        store.record(accept(f"k{i}", files[2 * i], files[2 * i + 1]))
    store.undo_last("alice", "u")  # the last accept is withdrawn
    ranks = [(p.decision.idempotency_key, p.rank_in_class) for p in store.accepted_pairs()]
    assert ranks == [("k0", 0), ("k1", 1), ("k2", 2)]


def test_derived_state_equals_a_replay_of_the_log(store, files):
    store.record(accept("k1", files[0], files[1]))
    store.record(NewDecision("k2", WNID, files[2], files[3], "reject", "alice"))
    store.record(accept("k3", files[4], files[5], who="carol"))
    store.record(NewDecision("r", WNID, files[4], files[5], "reject", "alice", review_of=3))
    store.undo_last("alice", "u")
    store.record(NewDecision("k4", WNID, files[2], files[3], "skip", "bob"))
    def state():
        return (store.decided_pairs(), store.used_images(), [(p.decision.seq, p.review_status) for p in
                                                             store.accepted_pairs()],
                store.accepted_counts(), {who: store.live_count(who) for who in ("alice", "bob", "carol")})

    before = state()
    store.rebuild_state()
    assert state() == before
    assert before[1] == {files[0], files[1], files[4], files[5]}
    # The counters the app reads on every keypress agree with counting the log itself.
    live = {who: sum(1 for d in store.decisions() if d.annotator == who and d.verdict != "undo"
                     and not any(u.undo_of == d.seq for u in store.decisions())) for who in ("alice", "bob", "carol")}
    assert before[3] == {WNID: len(store.accepted_pairs())} and before[4] == live


def test_a_store_made_before_the_counters_gets_them_counted_from_its_log(tmp_path, sample_images, files):
    store = DecisionStore.for_project(tmp_path, images_root=sample_images)
    store.record(accept("k1", files[0], files[1]))
    store.record(NewDecision("k2", WNID, files[2], files[3], "reject", "bob"))
    with store._transaction() as connection:  # what an older version left: no counters, no meta
        connection.execute("DELETE FROM accepted_per_class")
        connection.execute("DELETE FROM live_per_annotator")
        connection.execute("DELETE FROM meta WHERE key = 'counters'")
    store.close()
    reopened = DecisionStore.for_project(tmp_path, images_root=sample_images)
    assert reopened.accepted_counts() == {WNID: 1}
    assert (reopened.live_count("alice"), reopened.live_count("bob")) == (1, 1)


def test_log_is_append_only(store, files):
    store.record(accept("k1", files[0], files[1]))
    connection = store._connection()
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        connection.execute("UPDATE decisions SET verdict = 'reject'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        connection.execute("DELETE FROM decisions")


def test_a_non_database_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "decisions.sqlite"
    bad.write_text("not sqlite" * 100)
    with pytest.raises(UserError, match="not a usable decision store"):
        DecisionStore(bad)
