"""Two `curate` servers on one project (two terminals, a restart beside a running one) are normal
use: they share the decision store and the work state, so no acknowledged decision is lost and no
pair is shown to annotators of both."""
from __future__ import annotations

import threading

from pair_manifest.file_ids import canonical_pair
from pair_manifest.store import DecisionStore
from tests.curation_app.app_server import AppServer, act, client, make_images, make_users, write_classes

WNIDS = ["n03085013", "n04554684", "n04557648", "n02123045"]


def test_two_servers_on_one_project_lose_nothing_and_never_share_a_pair(tmp_path):
    images = make_images(tmp_path / "images", WNIDS)
    users = make_users(tmp_path / "users.txt", ("alice", "bob"))
    classes = write_classes(tmp_path / "classes.csv", WNIDS)
    servers = [AppServer(images, tmp_path / "project", users=users, classes=classes).start() for _ in range(2)]
    shown: dict[str, list[dict]] = {"alice": [], "bob": []}
    acknowledged: dict[str, list[str]] = {"alice": [], "bob": []}
    errors: list[str] = []

    def work(name: str, server: AppServer) -> None:
        try:
            c = client(server.url, name)
            state = act(c, "/current")
            for i in range(12):
                shown[name].append(state)
                after = act(c, ["/reject", "/skip", "/accept"][i % 3], state["key"], [])
                if any(n.startswith("Saved") for n in after["notes"]):
                    acknowledged[name].append(state["key"])
                state = after
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"{name}: {error!r}")

    try:
        threads = [threading.Thread(target=work, args=(n, s)) for n, s in zip(shown, servers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for server in servers:
            server.stop()
    assert not errors
    store = DecisionStore.for_project(tmp_path / "project")
    for name, keys in acknowledged.items():
        assert len(keys) == 12, name
        assert all(store.decision_for_key(k) is not None for k in keys)
    assert store.count() == 24
    pairs = {n: {canonical_pair(*s["files"]) for s in states} for n, states in shown.items()}
    assert not pairs["alice"] & pairs["bob"]
    assert not {s["wnid"] for s in shown["alice"]} & {s["wnid"] for s in shown["bob"]}
