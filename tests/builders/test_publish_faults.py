"""A publish whose connection drops at each stage, or whose Hub cannot be reached: one line that
says what happened, what state the remote is in and that a rerun finishes it; the remote never
shows part of a release; the rerun completes and a third run makes no commit. Over real HTTP
against the loopback Hub, which hangs up at the chosen stage."""
from __future__ import annotations

import hashlib
import socket

import pytest

from tests.builders.conftest import run_cli, tree_bytes

REPO = "sp-org/semantic-pairs"


@pytest.mark.parametrize("stage, said, state", [
    ("upload", "the connection dropped while uploading and committing the release",
     "holds either its previous state (commit "),
    ("before-commit", "the connection dropped while uploading and committing the release",
     "holds either its previous state (commit "),
    ("after-commit", "the connection dropped while uploading and committing the release",
     "holds either its previous state (commit "),
    ("settings", "the connection dropped while setting the gating", "holds the release (commit "),
])
def test_a_dropped_connection_leaves_no_partial_release_and_the_rerun_finishes(
        loopback_hub, built_release, tmp_path, stage, said, state):
    env = loopback_hub.client_env(tmp_path / "hf_home")
    release = tree_bytes(built_release)
    # An upload is retried five times with growing waits (huggingface_hub's http_backoff): the
    # connection drops for one shard only, so the test waits for one file's retries, not all.
    shard = hashlib.sha256(release["sp/tier050/train-00000-of-00001.parquet"]).hexdigest()
    loopback_hub.drop(stage, only=shard if stage == "upload" else "")
    failed = run_cli("publish", built_release, "--repo-id", REPO, "--gated", "manual", env=env)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    line = failed.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"error: {REPO}: {said} (")
    assert state in line and line.endswith("run the same publish again to finish it")
    repo = loopback_hub.repo(REPO)
    files = set(repo.head.files) - {".gitattributes"}
    assert files in (set(), set(release))  # never a part of the release
    assert (files == set(release)) == (stage in ("after-commit", "settings"))
    assert not repo.gated

    loopback_hub.drops.clear()
    rerun = run_cli("publish", built_release, "--repo-id", REPO, "--gated", "manual", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert {p: loopback_hub.object_bytes(b.sha256) for p, b in repo.head.files.items() if p != ".gitattributes"} \
        == release
    assert repo.gated == "manual"
    commits = len(repo.commits)
    third = run_cli("publish", built_release, "--repo-id", REPO, "--gated", "manual", env=env)
    assert third.returncode == 0 and "no commit" in third.stdout and len(repo.commits) == commits


def test_an_unreachable_hub_is_one_line_and_changes_nothing(loopback_hub, built_release, tmp_path):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = dict(loopback_hub.client_env(tmp_path / "hf_home"), HF_ENDPOINT=f"http://127.0.0.1:{port}")
    result = run_cli("publish", built_release, "--repo-id", REPO, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {REPO}: the Hub could not be reached (")
    assert "no file of sp-org/semantic-pairs was changed" in result.stderr
    assert loopback_hub.repos == {}
