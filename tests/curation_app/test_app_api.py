"""The app's API over real HTTP with gradio_client (the same endpoints the page's buttons call),
against the session's server: identity from the login session, acknowledgement after commit,
idempotent decisions, resume, parallel annotators, review agreement equal to `manifest stats`,
and the exported manifest."""
from __future__ import annotations

import json
import subprocess
import threading

import pyarrow.parquet as pq

from pair_manifest.file_ids import canonical_pair
from pair_manifest.store import DecisionStore
from tests.curation_app.app_server import CLI, act, client
from tests.curation_app.conftest import GOLDFISH


def store_of(served) -> DecisionStore:
    return DecisionStore.for_project(served.project)


def test_identity_comes_from_the_login_session(served):
    alice, bob = client(served.url, "alice"), client(served.url, "bob")
    assert act(alice, "/current")["annotator"] == "alice"
    assert act(bob, "/current")["annotator"] == "bob"
    # No endpoint takes a user name: a client cannot claim to be someone else.
    api = alice.view_api(return_format="dict", print_info=False)
    names = {p["parameter_name"] for e in api["named_endpoints"].values() for p in e["parameters"]}
    assert not names & {"user", "username", "annotator", "name", "who"}


def test_a_decision_is_acknowledged_after_commit_and_recorded_once(served):
    alice = client(served.url, "alice")
    state = act(alice, "/current")
    before = state["counts"]
    after = act(alice, "/accept", state["key"], ["viewpoint", "occlusion"])
    recorded = store_of(served).decision_for_key(state["key"])  # committed when the answer came
    assert recorded is not None and recorded.verdict == "accept"
    assert recorded.tags == ("occlusion", "viewpoint") and recorded.annotator == "alice"
    assert after["key"] != state["key"]
    assert after["counts"]["my_decisions"] == before["my_decisions"] + 1
    assert after["counts"]["overall_accepted"] == before["overall_accepted"] + 1
    count = store_of(served).count()
    again = act(alice, "/accept", state["key"], ["viewpoint"])  # a double submit of the old item
    assert store_of(served).count() == count and again["key"] == after["key"]
    assert any("Already saved" in n for n in again["notes"])


def test_a_second_tab_shows_the_same_item_and_a_stale_tab_records_nothing(served):
    tab1, tab2 = client(served.url, "alice"), client(served.url, "alice")
    shown1, shown2 = act(tab1, "/current"), act(tab2, "/current")
    assert shown1["key"] == shown2["key"] and shown1["files"] == shown2["files"]
    act(tab1, "/reject", shown1["key"], [])
    count = store_of(served).count()
    stale = act(tab2, "/accept", shown2["key"], [])  # tab 2 still shows the old pair
    decision = store_of(served).decision_for_key(shown1["key"])
    assert store_of(served).count() == count and decision.verdict == "reject"
    assert stale["key"] == act(tab1, "/current")["key"]


def test_undo_over_the_api(served):
    alice = client(served.url, "alice")
    first = act(alice, "/current")
    second = act(alice, "/reject", first["key"], [])
    back = act(alice, "/undo", second["key"])
    assert back["files"] == first["files"] and back["key"] not in (first["key"], second["key"])
    act(alice, "/undo", second["key"])  # pressed twice: undone once
    undos = [d for d in store_of(served).decisions() if d.verdict == "undo" and d.annotator == "alice"]
    assert len(undos) == 1


def test_parallel_annotators_never_get_the_same_pair(served):
    shown: dict[str, list[dict]] = {"bob": [], "carol": []}

    def work(name):
        c = client(served.url, name)
        state = act(c, "/current")
        for i in range(8):
            shown[name].append(state)
            state = act(c, "/reject" if i % 2 else "/skip", state["key"], [])

    threads = [threading.Thread(target=work, args=(n,)) for n in shown]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pairs = {n: {canonical_pair(*s["files"]) for s in states} for n, states in shown.items()}
    assert len(pairs["bob"]) == 8 and len(pairs["carol"]) == 8
    assert not pairs["bob"] & pairs["carol"]
    assert not {s["wnid"] for s in shown["bob"]} & {s["wnid"] for s in shown["carol"]}


def test_bad_images_are_noted_on_the_page_and_logged(served):
    carol = client(served.url, "carol")
    state = act(carol, "/class", GOLDFISH)
    if state["wnid"] != GOLDFISH:  # someone else holds it: the note says so
        assert any("being worked on" in n for n in state["notes"])
        return
    assert "4 unusable file(s)" in state["class_note"]
    log = (served.project / "curation.log").read_text()
    assert "unusable image skipped: n01443537/edge_n01443537_truncated.JPEG: truncated" in log
    assert not any("edge_n01443537_truncated" in f for f in state["files"] + state["upcoming"])
    act(carol, "/class", "auto")


def test_review_agreement_in_the_app_equals_manifest_stats(served, tmp_path):
    bob = client(served.url, "bob")
    state = act(bob, "/current")
    for verdict in ["/accept", "/accept", "/reject", "/reject", "/reject", "/reject"]:
        state = act(bob, verdict, state["key"], [])
    carol = client(served.url, "carol")
    review = act(carol, "/mode", "review")
    outcomes = []
    while review["files"] and len(outcomes) < 30:
        decision = store_of(served).get(review["review_of"])
        assert decision.annotator != "carol"  # never one's own
        verdict = "/reject" if not outcomes else ("/accept" if decision.verdict == "accept" else "/reject")
        outcomes.append((decision, verdict))
        review = act(carol, verdict, review["key"], [])
    assert outcomes and not review["files"]

    progress = carol.predict(api_name="/progress")[1]
    cli = json.loads(subprocess.run([str(CLI), "manifest", "stats", str(served.project), "--json"],
                                    capture_output=True, text=True, check=True).stdout)
    assert progress["covers_decisions"] == store_of(served).count()
    assert {k: v for k, v in progress.items() if k != "covers_decisions"} == cli
    assert cli["review"]["reviewed"] == len(outcomes) and cli["review"]["kappa"] is not None
    assert cli["per_annotator"]["carol"]["reviews"] == len(outcomes)

    out = tmp_path / "manifest"
    subprocess.run([str(CLI), "manifest", "export", "--project", str(served.project), "--out", str(out)],
                   check=True, capture_output=True)
    rows = {(r["file_a"], r["file_b"]): r for r in pq.read_table(out / "pairs.parquet").to_pylist()}
    refuted = outcomes[0][0]
    confirmed = [d for d, v in outcomes[1:] if d.verdict == "accept" and v == "/accept"]
    if refuted.verdict == "accept":
        assert (refuted.file_a, refuted.file_b) not in rows
    for d in confirmed:
        assert rows[(d.file_a, d.file_b)]["review_status"] == "confirmed"
