"""`semantic-pairs eval linear|knn` end to end on a run folder in the training format: the JSON
result, the feature cache (reused, and invalidated when the checkpoint changes), and errors."""
from __future__ import annotations

import json

import pytest
import torch

from semantic_pairs_cli.main import main

from .eval_support import make_run, small_cifar


@pytest.fixture(scope="module")
def dataset(cifar10_root, tmp_path_factory):
    return small_cifar(cifar10_root, tmp_path_factory.mktemp("data") / "cifar10_small", 10, 5)


def test_linear_then_knn_share_cached_features_and_write_results(tmp_path, dataset, capsys):
    run = make_run(tmp_path / "run")
    assert main(["eval", "linear", "--run", str(run), "--dataset", str(dataset), "--device", "cpu",
                 "--weight-decays", "1e-3,1e-1"]) == 0
    linear = json.loads((run / "eval" / "linear-cifar10_small.json").read_text())
    assert 0.0 <= linear["top1"] <= 1.0 and linear["weight_decay"] in (1e-3, 1e-1)
    assert (linear["num_train"], linear["num_test"], linear["feature_dim"]) == (100, 50, 512)
    assert linear["features_from_cache"] is False and linear["resolution"] == 32
    assert linear["torch"] == torch.__version__ and linear["device"] == "cpu"
    assert "cifar10_small: top-1 " in capsys.readouterr().out

    assert main(["eval", "knn", "--run", str(run), "--dataset", str(dataset), "--device", "cpu"]) == 0
    knn = json.loads((run / "eval" / "knn-cifar10_small.json").read_text())
    assert knn["features_from_cache"] is True and knn["k"] == 20
    assert len(list((run / "eval" / "cache").glob("features-cifar10_small-*.pt"))) == 2

    # A new checkpoint (a retrained or resumed run) never reuses the old features.
    make_run(run, seed=1)
    assert main(["eval", "knn", "--run", str(run), "--dataset", str(dataset), "--device", "cpu"]) == 0
    again = json.loads((run / "eval" / "knn-cifar10_small.json").read_text())
    assert again["features_from_cache"] is False
    assert again["checkpoint_sha256"] != knn["checkpoint_sha256"]


def test_errors_are_one_line_with_exit_status_2(tmp_path, dataset, capsys):
    assert main(["eval", "knn", "--run", str(tmp_path / "absent"), "--dataset", str(dataset)]) == 2
    assert "--run" in capsys.readouterr().err

    run = make_run(tmp_path / "run")
    (run / "config.json").write_text("{not json")
    assert main(["eval", "knn", "--run", str(run), "--dataset", str(dataset)]) == 2
    assert "config.json: not valid JSON" in capsys.readouterr().err

    run = make_run(tmp_path / "mismatch", name="resnet18")
    config = json.loads((run / "config.json").read_text())
    config["backbone"]["name"] = "resnet50"
    (run / "config.json").write_text(json.dumps(config))
    assert main(["eval", "knn", "--run", str(run), "--dataset", str(dataset)]) == 2
    assert "eval_backbone does not fit backbone resnet50" in capsys.readouterr().err

    (run / "checkpoints" / "last.pt").write_bytes(b"truncated")
    assert main(["eval", "linear", "--run", str(run), "--dataset", str(dataset)]) == 2
    assert "last.pt: not a readable checkpoint" in capsys.readouterr().err


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from semantic_pairs_cli.main import build_parser; build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
