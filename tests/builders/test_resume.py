"""A build killed with SIGKILL in the middle of a shard leaves the output untouched and resumes
where it stopped, to the same bytes as an uninterrupted build."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.builders.conftest import PAIRS_PER_CLASS, cli, tree_bytes

# Runs the real build in a child process that kills itself (SIGKILL: no cleanup, no finally
# blocks) once the second job (an SP shard and the AP shard written with it) has had its first
# row group written.
KILLER = """
import os, signal, sys
from builders import shards
real_write_shard = shards.write_shard
started = []

def write_shard(job, plan, sources, folder, check, on_bytes=lambda n: None, readers=None):
    assert job.kinds == ("sp", "ap"), job
    started.append(job.paths)
    def report(n):
        if len(started) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        on_bytes(n)
    return real_write_shard(job, plan, sources, folder, check, report, readers)

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
    done = sorted(p.name for p in (staging / ".build" / "done").glob("*.json"))
    assert len(done) == 2 and done[0].startswith("ap__") and done[1].startswith("sp__")  # one job, both files
    assert len(list(staging.rglob("*.parquet.partial"))) == 2  # the job being written when the process died

    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 shard(s) kept from an interrupted run" in resumed.stdout
    assert not staging.exists()
    assert tree_bytes(out) == tree_bytes(built_release)
