"""One real curation server shared by the HTTP tests (API, image route, login): started once per
session on 127.0.0.2, which the app treats as "beyond 127.0.0.1" (login required) while staying
reachable from this machine only.

Its layout is deliberately hostile: the project folder and the users file sit *inside* the images
root (in a class folder), and the class folders hold symlinks leading out of the root and back to
the project's database, so the image route's refusals are tested against files that really are
there (symlinks and hard links).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.curation_app.app_server import AppServer, make_images, make_users, write_classes

GOLDFISH, KEYBOARD, WASHER, BOTTLE = "n01443537", "n03085013", "n04554684", "n04557648"
WNIDS = [GOLDFISH, KEYBOARD, WASHER, BOTTLE]


@dataclass
class Served:
    server: AppServer
    images: Path
    project: Path
    users: Path
    outside: Path  # a real JPEG outside the images root

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> Served:
    base = tmp_path_factory.mktemp("served")
    images = make_images(base / "images", WNIDS, edge_cases_into=GOLDFISH)
    project = images / BOTTLE / "project_inside_the_root"
    users = make_users(images / WASHER / "users.txt", ("alice", "bob", "carol", "dora"))
    outside = base / "outside.JPEG"
    outside.write_bytes((images / WASHER / sorted(os.listdir(images / WASHER))[0]).read_bytes())
    (images / KEYBOARD / "escape.JPEG").symlink_to(outside)
    (images / KEYBOARD / "passwd.JPEG").symlink_to("/etc/passwd")
    server = AppServer(images, project, users=users, host="127.0.0.2",
                       classes=write_classes(base / "classes.csv", WNIDS)).start()
    # Links that stay inside the root but reach the project database and the users file: symbolic,
    # and hard (the same files under another name: only their device and inode give them away).
    (images / KEYBOARD / "store.JPEG").symlink_to(project / "decisions.sqlite")
    (images / KEYBOARD / "users.JPEG").symlink_to(users)
    os.link(project / "decisions.sqlite", images / KEYBOARD / "hard_store.JPEG")
    os.link(users, images / KEYBOARD / "hard_users.JPEG")
    yield Served(server, images, project, users, outside)
    server.stop()
