"""A build killed with SIGKILL in the middle of a shard leaves the output untouched and resumes
where it stopped, to the same bytes as an uninterrupted build."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.builders.conftest import PAIRS_PER_CLASS, cli, tree_bytes

# Runs the real build in a child process that kills itself (SIGKILL: no cleanup, no finally
# blocks) once the third shard has had its first row group written.
KILLER = """
import os, signal, sys
from builders import shards
real_write_shard = shards.write_shard
started = []

def write_shard(job, plan, sources, target, check, on_bytes=lambda n: None):
    started.append(job.path)
    def report(n):
        if len(started) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        on_bytes(n)
    return real_write_shard(job, plan, sources, target, check, report)

shards.write_shard = write_shard
import builders.build
builders.build.write_shard = write_shard
from semantic_pairs_cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_build_resumes_to_identical_bytes(built_release, release_inputs, tmp_path):
    out = tmp_path / "semantic_pairs"
    args = ["build", "--manifest", release_inputs.manifest, "--images", release_inputs.images, "--out", out,
            "--pairs-per-class", PAIRS_PER_CLASS, "--allow-short", "--workers", "1"]
    killed = subprocess.run([sys.executable, "-c", KILLER, *map(str, args)], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, HF_UPDATE_DOWNLOAD_COUNTS="false"))
    assert killed.returncode == -9, killed.stderr
    assert not out.exists()  # never a half-written release
    staging = tmp_path / ".semantic_pairs.partial"
    assert len(list((staging / ".build" / "done").glob("*.json"))) == 2
    assert list(staging.rglob("*.parquet.partial"))  # the shard being written when the process died

    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 shard(s) kept from an interrupted run" in resumed.stdout
    assert not staging.exists()
    assert tree_bytes(out) == tree_bytes(built_release)
