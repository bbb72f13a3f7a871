"""A `propose` run killed with SIGKILL mid-embedding resumes: nothing it committed is embedded
again, and the result is the same as an uninterrupted run's."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from curation_app.proposals.propose import propose
from tests.curation_app.proposals_support import copy_classes


def _vectors(cache_path) -> int:
    if not cache_path.exists():
        return 0
    try:
        connection = sqlite3.connect(f"file:{cache_path}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def test_sigkill_mid_run_resumes_without_re_embedding(tmp_path, sample_images, repo_root):
    root = copy_classes(sample_images, tmp_path / "images", sorted(os.listdir(sample_images)))
    total = sum(len(os.listdir(root / wnid)) for wnid in os.listdir(root))
    project = tmp_path / "project"
    command = [sys.executable, "-m", "semantic_pairs_cli", "propose", "--images", str(root),
               "--project", str(project), "--workers", "1"]
    process = subprocess.Popen(command, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cache = project / "embeddings.sqlite"
    deadline = time.monotonic() + 120
    while _vectors(cache) == 0 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    committed = _vectors(cache)
    assert 0 < committed < total
    assert not (project / "proposals.parquet").exists()

    resumed = propose(root, project, workers=1)
    assert resumed.reused == committed  # everything committed before the kill is reused ...
    assert resumed.embedded == total - committed  # ... and only the rest is embedded
    assert _vectors(cache) == total

    propose(root, tmp_path / "uninterrupted", workers=2)
    assert (project / "proposals.parquet").read_bytes() == (tmp_path / "uninterrupted" / "proposals.parquet").read_bytes()
