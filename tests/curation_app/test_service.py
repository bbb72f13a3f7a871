"""The curation service without the web layer: assignment, leases, resume, idempotency, undo,
pick, review, bad images and proposals, on real images, real SQLite."""
from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pair_manifest.classes import selection_from_wnids
from pair_manifest.errors import UserError
from pair_manifest.file_ids import canonical_pair
from tests.curation_app.app_server import make_images

from curation_app.modes.pick import PICK_PAGE
from curation_app.modes.review import in_review_sample
from curation_app.service import Curation

GOLDFISH, WASHER, BOTTLE, KEYBOARD = "n01443537", "n04554684", "n04557648", "n03085013"
WNIDS = [GOLDFISH, KEYBOARD, WASHER, BOTTLE]


@pytest.fixture
def images(tmp_path):
    return make_images(tmp_path / "images", WNIDS, edge_cases_into=GOLDFISH)


def curation(images, project, **kwargs) -> Curation:
    return Curation(images, project, selection_from_wnids(WNIDS), **kwargs)


@pytest.fixture
def app(images, tmp_path):
    return curation(images, tmp_path / "project")


def decide_all(app, who, verdicts):
    shown = []
    for verdict in verdicts:
        view = app.view(who)
        shown.append(view.item)
        app.decide(who, view.item.key, verdict)
    return shown


def test_two_annotators_work_in_different_classes_and_never_see_the_same_pair(app):
    alice, bob = app.view("alice"), app.view("bob")
    assert alice.item.wnid != bob.item.wnid
    seen_a = decide_all(app, "alice", ["reject", "skip", "reject"] * 4)
    seen_b = decide_all(app, "bob", ["reject", "skip", "reject"] * 4)
    pairs_a = {canonical_pair(*i.files) for i in seen_a}
    pairs_b = {canonical_pair(*i.files) for i in seen_b}
    assert len(pairs_a) == 12 and len(pairs_b) == 12  # nobody sees a pair twice
    assert not pairs_a & pairs_b
    assert {i.wnid for i in seen_a}.isdisjoint({i.wnid for i in seen_b})


def test_reload_and_restart_resume_the_same_item(app, images, tmp_path):
    first = app.view("alice")
    assert app.view("alice").item.key == first.item.key  # reload, second tab
    restarted = curation(images, tmp_path / "project")  # a new server process on the same project
    assert restarted.view("alice").item == first.item


def test_decided_just_before_a_crash_moves_on_without_recording_twice(app, images, tmp_path):
    from pair_manifest.decisions import NewDecision

    item = app.view("alice").item
    # The decision committed, then the process died before it stored the next item.
    app.store.record(NewDecision(item.key, item.wnid, *item.files, "reject", "alice"))
    restarted = curation(images, tmp_path / "project")
    view = restarted.view("alice")
    assert view.item.key != item.key and set(view.item.files) != set(item.files)
    again = restarted.decide("alice", item.key, "reject")  # the old tab retries
    assert restarted.store.count() == 1
    assert any("Already saved" in n for n in again.notes)


def test_a_double_submit_records_once_and_a_stale_tab_records_nothing(app):
    item = app.view("alice").item
    after = app.decide("alice", item.key, "reject")
    assert after.item.key != item.key and after.counts["my_decisions"] == 1
    repeat = app.decide("alice", item.key, "reject")
    assert app.store.count() == 1 and repeat.item.key == after.item.key
    assert any("Already saved" in n for n in repeat.notes)
    other = app.decide("alice", "a-key-from-an-old-tab", "accept")
    assert app.store.count() == 1 and any("out of date" in n for n in other.notes)


def test_accept_with_tags_moves_the_counters_only_after_commit(app):
    view = app.view("alice")
    assert view.counts["class_accepted"] == 0
    after = app.decide("alice", view.item.key, "accept", ["viewpoint", "background"])
    recorded = app.store.decision_for_key(view.item.key)
    assert recorded.verdict == "accept" and recorded.tags == ("background", "viewpoint")
    assert after.counts["class_accepted"] == 1 and after.counts["my_decisions"] == 1
    assert not set(after.item.files) & set(view.item.files)  # accepted images are used up
    with pytest.raises(UserError, match="unknown tag"):
        app.decide("alice", after.item.key, "accept", ["shiny"])


def test_undo_brings_the_item_back_once(app):
    first = app.view("alice").item
    second = app.decide("alice", first.key, "reject").item
    undone = app.undo("alice", second.key)
    assert undone.item.files == first.files and undone.item.key not in (first.key, second.key)
    assert app.store.decided_pairs(first.wnid) == set()
    repeat = app.undo("alice", second.key)  # the same press again: nothing more is undone
    assert sum(d.verdict == "undo" for d in app.store.decisions()) == 1
    assert repeat.item.key == undone.item.key
    app.decide("alice", undone.item.key, "accept")
    assert app.store.accepted_counts()[first.wnid] == 1


def test_lease_expiry_hands_an_idle_annotators_class_to_someone_else(images, tmp_path):
    app = curation(images, tmp_path / "project", lease_seconds=1.0)
    alice = app.view("alice").item
    time.sleep(1.2)
    bob = app.set_class("bob", alice.wnid)
    assert bob.item.wnid == alice.wnid
    back = app.decide("alice", alice.key, "accept")  # alice returns from her break
    assert app.store.count() == 0
    assert back.item.wnid != alice.wnid and any("went to bob" in n for n in back.notes)


def test_target_reached_moves_on_to_another_class(images, tmp_path):
    app = curation(images, tmp_path / "project", target=2)
    first_class = app.view("alice").item.wnid
    for _ in range(2):
        app.decide("alice", app.view("alice").item.key, "accept")
    assert app.view("alice").item.wnid != first_class


def test_pick_mode_pairs_the_anchor_with_a_clicked_candidate(app):
    view = app.set_mode("alice", "pick")
    item = view.item
    assert view.mode == "pick" and len(item.files) == 1 and len(item.candidates) == PICK_PAGE
    assert all(c.startswith(item.wnid + "/") and c != item.files[0] for c in item.candidates)
    nothing = app.pick("alice", item.key, f"{item.wnid}/not-shown.JPEG")
    assert app.store.count() == 0 and any("not one of the candidates" in n for n in nothing.notes)
    more = app.decide("alice", item.key, "reject")  # "none of these": the next page
    assert more.item.files == item.files and not set(more.item.candidates) & set(item.candidates)
    chosen = more.item.candidates[3]
    after = app.pick("alice", more.item.key, chosen, ["pattern"])
    decision = app.store.decision_for_key(more.item.key)
    assert (decision.verdict, decision.source, decision.tags) == ("accept", "pick", ("pattern",))
    assert set(canonical_pair(item.files[0], chosen)) == {decision.file_a, decision.file_b}
    assert after.item.files[0] not in (item.files[0], chosen)
    assert app.toggle_mode("alice").mode == "verify"


def test_review_is_blind_by_someone_else_and_samples_rejects(app):
    for verdict in ["accept", "accept"] + ["reject"] * 10:
        app.decide("alice", app.view("alice").item.key, verdict)
    alice_decisions = {d.seq: d for d in app.store.decisions()}
    expected = {s for s, d in alice_decisions.items() if d.verdict == "accept" or in_review_sample(d.idempotency_key)}
    assert app.set_mode("alice", "review").item.files == ()  # nobody reviews their own decisions
    reviewed = set()
    assert app.view("carol").item.files and app.work.held_class("carol", "annotate") is not None
    view = app.set_mode("carol", "review")
    while view.item.files:
        assert view.item.review_of not in reviewed
        reviewed.add(view.item.review_of)
        verdict = "accept" if alice_decisions[view.item.review_of].verdict == "accept" else "reject"
        view = app.decide("carol", view.item.key, "reject" if len(reviewed) == 1 else verdict)
    assert reviewed == expected
    assert "Nothing to review" in view.message
    assert app.work.held_class("carol", "annotate") is None  # her verify class went back to the pool
    reviews = [d for d in app.store.decisions() if d.review_of is not None]
    assert len(reviews) == len(expected) and {d.annotator for d in reviews} == {"carol"}


def test_bad_images_are_skipped_with_a_note_and_logged(app, images, caplog):
    view = app.set_class("alice", GOLDFISH)
    assert view.item.wnid == GOLDFISH
    bad = app.work.bad_images(GOLDFISH)
    assert {f.split("/", 1)[1] for f in bad} == {
        "edge_n01443537_truncated.JPEG", "edge_n01443537_empty.JPEG", "edge_n01443537_garbage.JPEG",
        "edge_n01443537_bomb.JPEG"}
    assert "4 unusable file(s)" in view.class_note and "decompression_bomb" in view.class_note
    # A file that breaks after the scan (here: the next image to be shown) is found before it is shown.
    upcoming = view.upcoming.files[0]
    (images / upcoming).write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9")
    app.previews._memory.clear()
    with caplog.at_level("WARNING", logger="curation_app"):
        shown = []
        while view.item.files and len(shown) < 60:
            shown.extend(view.item.files)
            view = app.decide("alice", view.item.key, "reject")
            if any(upcoming in n for n in view.notes):
                break
    assert any(upcoming in n and "cannot be used" in n for n in view.notes)
    assert upcoming in app.work.bad_images(GOLDFISH) and upcoming not in shown
    assert not set(shown) & set(bad)
    assert upcoming in caplog.text


def test_an_image_deleted_while_shown_is_skipped_not_stuck(app, images):
    view = app.set_class("alice", KEYBOARD)
    gone = view.item.files[1]
    (images / gone).unlink()
    after = app.decide("alice", view.item.key, "accept")
    assert any(gone in n and "missing" in n for n in after.notes)
    assert after.item.files and gone not in after.item.files and app.store.count() == 0
    assert gone in app.work.bad_images(KEYBOARD)


def test_proposals_come_first_in_rank_order_and_are_recorded_as_the_source(images, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    names = sorted(p.name for p in (images / WASHER).iterdir())
    rows = [(WASHER, names[3], names[4], 0.9, 0, "pixels"), (WASHER, f"{WASHER}/{names[0]}", names[1], 0.8, 1, "pixels")]
    pq.write_table(pa.table(list(zip(*rows)), names=["wnid", "file_a", "file_b", "score", "rank", "embedder"]),
                   project / "proposals.parquet")
    app = curation(images, project)
    view = app.set_class("alice", WASHER)
    assert set(view.item.files) == {f"{WASHER}/{names[3]}", f"{WASHER}/{names[4]}"}
    assert view.item.source == "proposal:pixels:0"
    view = app.decide("alice", view.item.key, "reject")
    assert set(view.item.files) == {f"{WASHER}/{names[0]}", f"{WASHER}/{names[1]}"}
    app.decide("alice", view.item.key, "accept")
    assert [d.source for d in app.store.decisions()] == ["proposal:pixels:0", "proposal:pixels:1"]


def test_a_malformed_proposals_file_is_refused_by_column(images, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    pq.write_table(pa.table({"wnid": [WASHER], "file_a": ["a"], "score": ["high"]}), project / "proposals.parquet")
    with pytest.raises(UserError, match="column 'file_b' is missing.*column 'score' is string"):
        curation(images, project)


def test_a_project_keeps_its_class_selection(images, tmp_path):
    curation(images, tmp_path / "project")
    with pytest.raises(UserError, match="another class selection"):
        Curation(images, tmp_path / "project", selection_from_wnids([WASHER]))


def test_pick_mode_ranks_candidates_with_the_proposals_code_once_propose_has_run(images, tmp_path):
    from curation_app.proposals.propose import propose
    from curation_app.proposals.ranking import rank_candidates
    from tests.curation_app.app_server import write_classes

    project = tmp_path / "project"
    propose(images, project, classes=str(write_classes(tmp_path / "classes.csv", WNIDS)), workers=1)
    app = curation(images, project)
    app.set_class("alice", KEYBOARD)
    item = app.set_mode("alice", "pick").item
    pool = [f for f in app.catalog.files(KEYBOARD) if f != item.files[0]]
    ranked = [f for f, _ in rank_candidates(project, KEYBOARD, item.files[0], pool, images_root=images)]
    assert list(item.candidates) == ranked[:PICK_PAGE]
    assert list(app.decide("alice", item.key, "reject").item.candidates) == ranked[PICK_PAGE:2 * PICK_PAGE]


def test_the_prefetched_pair_is_the_pair_that_comes_next(app):
    view = app.set_class("alice", KEYBOARD)
    for verdict in ["reject", "skip", "accept", "reject", "accept", "reject"]:
        upcoming = view.upcoming
        view = app.decide("alice", view.item.key, verdict)
        assert view.item.files == upcoming.files
