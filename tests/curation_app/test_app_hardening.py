"""The curation app against what a shared server meets: hard links to its own files in a class
folder, a users file others may read, a class folder it may not read, a project on a read-only
file system, and a disk that fills while annotators decide (a real tmpfs)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from pair_manifest.classes import selection_from_wnids
from pair_manifest.scan import PROTECTED_REASON
from tests.curation_app.app_server import CLI, make_images, make_users
from tests.support.faults import (fill, nobody_command, nobody_env, require_unprivileged_python, resize, tmpfs,
                                  world_writable_dir)

from curation_app.service import Curation

GOLDFISH, KEYBOARD, WASHER, BOTTLE = "n01443537", "n03085013", "n04554684", "n04557648"
WNIDS = [KEYBOARD, WASHER, BOTTLE]


def test_hard_links_to_the_store_and_the_users_file_are_never_opened(tmp_path):
    images = make_images(tmp_path / "images", WNIDS)
    users = make_users(tmp_path / "users.txt", ("alice",))
    project = tmp_path / "project"
    Curation(images, project, selection_from_wnids(WNIDS)).store.close()  # the store exists
    links = {"store.JPEG": project / "decisions.sqlite", "work.JPEG": project / "work.sqlite",
             "users.JPEG": users}
    for name, target in links.items():
        os.link(target, images / KEYBOARD / name)
    app = Curation(images, project, selection_from_wnids(WNIDS), protected_files=(users,))
    files = app.catalog.files(KEYBOARD)
    assert files and not {f"{KEYBOARD}/{name}" for name in links} & set(files)
    bad = app.work.bad_images(KEYBOARD)
    assert all(bad[f"{KEYBOARD}/{name}"] == PROTECTED_REASON for name in links)
    for name in links:
        assert app.catalog.protected((images / KEYBOARD / name).resolve())
    assert not app.catalog.protected((images / KEYBOARD / files[0].split("/")[1]).resolve())


def test_a_users_file_others_may_read_gives_a_warning_naming_the_fix(tmp_path, caplog):
    from curation_app.users import UserBook

    users = make_users(tmp_path / "users.txt", ("alice",))
    with caplog.at_level(logging.WARNING, logger="curation_app"):
        UserBook(users)
    assert not caplog.records  # users add writes 0600: no warning
    users.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="curation_app"):
        UserBook(users)
    assert f"{users} is readable or writable by other users (mode 0644)" in caplog.text
    assert f"chmod 600 {users}" in caplog.text


SERVICE_AS_NOBODY = textwrap.dedent("""
    import json, sys
    from pair_manifest.classes import selection_from_wnids
    from curation_app.service import Curation
    images, project, locked, wnids = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
    app = Curation(images, project, selection_from_wnids(wnids))
    chosen = app.set_class("alice", locked)
    other = app.set_class("alice", None)
    print(json.dumps({"notes": chosen.notes, "item": list(chosen.item.files), "class": chosen.item.wnid,
                      "other": list(other.item.files)}))
""")


def test_an_unreadable_class_folder_is_reported_and_the_rest_works(tmp_path):
    """Run as `nobody`: root reads every folder whatever its mode."""
    home = world_writable_dir()
    require_unprivileged_python(home)
    images = make_images(home / "images", WNIDS)
    for path in [images, *images.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (images / WASHER).chmod(0o000)
    result = subprocess.run(nobody_command(sys.executable, "-c", SERVICE_AS_NOBODY, str(images), str(home / "project"),
                                           WASHER, ",".join(WNIDS)),
                            capture_output=True, text=True, env=nobody_env(home), cwd=home, timeout=300)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert any(f"({WASHER}): its folder cannot be read (Permission denied)" in n for n in shown["notes"])
    assert shown["item"] and shown["class"] != WASHER and shown["other"]


@pytest.mark.parametrize("how", ["a new project", "an existing project"])
def test_curate_on_a_read_only_file_system_is_one_line(tmp_path, how):
    images = make_images(tmp_path / "images", WNIDS)
    with tmpfs(tmp_path / "disk", "8m") as disk:
        if how == "an existing project":
            app = Curation(images, disk / "project", selection_from_wnids(WNIDS))
            app.store.close()
            app.work.close()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        result = subprocess.run([str(CLI), "curate", "--images", str(images), "--project", str(disk / "project"),
                                 "--port", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: --project {disk / 'project'}: cannot write the project folder here (")
    assert "Read-only file system" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_full_disk_never_loses_an_acknowledged_decision_and_says_what_happened(tmp_path):
    """The project on a 4 MB tmpfs, filled while alice decides: every press is answered with
    "Saved (decision N)" only if decision N is in the log, "Not saved" only if it is not (the
    disk may refuse the decision, or only the next item's write after the decision committed);
    once space is freed the same page goes on."""
    from curation_app.progress import ProgressBoard
    from curation_app.ui import Handlers

    images = make_images(tmp_path / "images", WNIDS)
    with tmpfs(tmp_path / "disk", "4m") as disk:
        app = Curation(images, disk / "project", selection_from_wnids(WNIDS))
        handlers = Handlers(app, ProgressBoard(app.store, target=app.target), local_user="alice")
        state = handlers.current(None)[3]
        fill(disk, leave=400 * 1024)  # a few decisions fit, then the disk is full
        outcomes = []
        for i in range(40):
            key = state["key"]
            state = (handlers.accept(key, [], None) if i % 3 == 0 else handlers.reject(key, [], None))[3]
            outcomes.append((key, state["notes"]))
        for key, notes in outcomes:
            recorded = app.store.decision_for_key(key)
            saved = [n for n in notes if n.startswith(("Saved", "Already saved"))]
            if any(n.startswith("Not saved") for n in notes):
                assert recorded is None, notes
            elif saved:
                assert recorded is not None and f"decision {recorded.seq}" in saved[0], notes
        full = sum(any("disk is full" in n for n in notes) for _, notes in outcomes)
        assert full, "the disk never filled"
        assert full < len(outcomes), "nothing was saved before the disk filled"
        assert all(app.store.decision_for_key(k) is None or any(n.startswith(("Saved", "Already saved")) for n in ns)
                   for k, ns in outcomes), "a decision was stored without being acknowledged"
        (disk / "filler").unlink()
        resize(disk, "8m")
        before = app.store.count()
        for _ in range(3):
            state = handlers.reject(state["key"], [], None)[3]
        assert app.store.count() > before and any(n.startswith("Saved") for n in state["notes"])
        app.store.close()
        app.work.close()


def test_a_decision_saved_before_a_later_write_failed_is_acknowledged(tmp_path, monkeypatch):
    """The decision commits, then the work-state write for the next item is refused (simulated
    here: a real disk cannot be made to fail between the two files on demand). The page says the
    decision was saved, with its number, and the same press after recovery moves on."""
    from curation_app.progress import ProgressBoard
    from curation_app.ui import Handlers
    from pair_manifest.sqlite_db import StorageError

    images = make_images(tmp_path / "images", WNIDS)
    app = Curation(images, tmp_path / "project", selection_from_wnids(WNIDS))
    handlers = Handlers(app, ProgressBoard(app.store, target=app.target), local_user="alice")
    first = handlers.current(None)[3]
    real = app.work.set_current

    def refused(*args, **kwargs):
        raise StorageError("work.sqlite: cannot write the work-state file: the disk is full", "the disk is full")

    monkeypatch.setattr(app.work, "set_current", refused)
    state = handlers.reject(first["key"], [], None)[3]
    decision = app.store.decision_for_key(first["key"])
    assert decision is not None and decision.verdict == "reject"
    assert state["notes"][0] == (f"Saved: reject (decision {decision.seq}). The server then could not prepare your "
                                 "next item: the disk is full.")
    assert state["key"] == first["key"]  # the page still shows the decided pair
    monkeypatch.setattr(app.work, "set_current", real)
    again = handlers.reject(state["key"], [], None)[3]
    assert again["key"] != first["key"] and app.store.count() == 1
