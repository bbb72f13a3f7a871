"""Nothing acknowledged is lost: a writer killed with SIGKILL, and 8 writers at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from pair_manifest.store import DecisionStore

WRITER = Path(__file__).with_name("store_writer.py")
WNID = "n03085013"


def start_writer(store_path, images_root, annotator, seed, count):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(store_path), str(images_root), WNID, annotator, str(seed), str(count)],
        stdout=subprocess.PIPE, text=True, env=env)


def warm_store(path, images_root):
    """Hash every image once so the writers spend their time committing, not decoding."""
    store = DecisionStore(path, images_root=images_root)
    for name in sorted(os.listdir(Path(images_root) / WNID)):
        store.image_facts(f"{WNID}/{name}")
    store.close()


def test_sigkill_mid_stream_loses_no_acknowledged_decision(tmp_path, sample_images):
    path = tmp_path / "decisions.sqlite"
    warm_store(path, sample_images)
    writer = start_writer(path, sample_images, "killed", seed=1, count=100_000)
    acknowledged = []
    for line in writer.stdout:
        if line.startswith("ack "):
            acknowledged.append(line.split()[1])
        if len(acknowledged) >= 150:
            writer.send_signal(signal.SIGKILL)
            break
    writer.wait()
    assert writer.returncode == -signal.SIGKILL
    store = DecisionStore(path, images_root=sample_images)
    keys = {d.idempotency_key for d in store.decisions()}
    assert set(acknowledged) <= keys
    # The derived state survived the kill consistent with the log.
    before = (store.decided_pairs(), store.used_images())
    store.rebuild_state()
    assert (store.decided_pairs(), store.used_images()) == before


def test_eight_writers_lose_nothing_and_break_no_policy(tmp_path, sample_images):
    path = tmp_path / "decisions.sqlite"
    warm_store(path, sample_images)
    writers = [start_writer(path, sample_images, f"annotator{i}", seed=i, count=40) for i in range(8)]
    acknowledged = set()
    for writer in writers:
        out, _ = writer.communicate(timeout=300)
        assert writer.returncode == 0
        acknowledged |= {line.split()[1] for line in out.splitlines() if line.startswith("ack ")}
    store = DecisionStore(path, images_root=sample_images)
    decisions = store.decisions()
    assert {d.idempotency_key for d in decisions} == acknowledged
    uses = Counter(f for p in store.accepted_pairs() for f in (p.decision.file_a, p.decision.file_b))
    assert uses and max(uses.values()) == 1  # each image in at most one accepted pair
    assert len(store.accepted_pairs()) >= 5
