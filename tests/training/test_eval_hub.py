"""`eval --dataset cifar10` takes the Hub path for real: the short name resolves to the Hub id the
code names (uoft-cs/cifar10), `datasets.load_dataset` fetches it over HTTP from the loopback Hub
(a CIFAR-10 slice in that repo's layout: `plain_text/{train,test}-*.parquet`, `img` and `label`),
and the result is written like any other evaluation's."""
from __future__ import annotations

import json
import subprocess
import sys

from training.eval.datasets import KNOWN_DATASETS

from .eval_support import hub_parquet, make_run, seed_hub


def test_short_name_fetches_the_hub_copy_over_http(loopback_hub, cifar10_root, tmp_path):
    spec = KNOWN_DATASETS["cifar10"]
    folder = hub_parquet(cifar10_root, tmp_path / "cifar10_hub", image_column=spec.image_column,
                         label_column=spec.label_column, per_class=8)
    (folder / "README.md").write_text(  # the configs block of uoft-cs/cifar10's card
        "---\nconfigs:\n- config_name: plain_text\n  default: true\n  data_files:\n  - split: train\n"
        "    path: plain_text/train-*\n  - split: test\n    path: plain_text/test-*\n---\n")
    seed_hub(loopback_hub, folder, spec.repo_id)
    run = make_run(tmp_path / "run", resolution=32)
    env = loopback_hub.client_env(tmp_path / "hf_home", token=None)
    done = subprocess.run([sys.executable, "-m", "semantic_pairs_cli", "eval", "knn", "--run", str(run),
                           "--dataset", "cifar10", "--device", "cpu", "--k", "5"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((run / "eval" / "knn-cifar10.json").read_text())
    assert (result["dataset"], result["num_train"], result["num_test"], result["num_classes"]) == ("cifar10", 80, 80, 10)
    fetched = [r.path for r in loopback_hub.requests if "/resolve/" in r.path]
    assert any(f"{spec.repo_id}/resolve/" in path and "plain_text/train" in path for path in fetched), fetched
