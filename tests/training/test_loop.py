"""The training loop end to end on the bundled photos (CPU, ViT-tiny/8 at 32x32, a few dozen steps):
the loss goes down without collapse, the run directory holds what evaluation needs, a SIGKILLed run
resumes onto exactly the uninterrupted run's path, a non-finite loss stops the run, bad options get
one-line errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from semantic_pairs_cli.main import main
from training.checkpoints import load_checkpoint, load_eval_backbone
from training.config import TrainConfig
from training.data import load_dataset
from training.loop import train
from training.methods import method_module

R = 32
SMALL = dict(resolution=R, backbone="vit_tiny8", batch_size=32, epochs=100)  # 10 steps per epoch here
BYOL_HEADS = {"projection_hidden": 256, "prediction_hidden": 256}  # full 4096-wide heads: unit tests


def _config(sample_repo, training_cache, out, method, **overrides) -> TrainConfig:
    options = dict(SMALL, data=str(sample_repo), config="sp", method=method, out=str(out),
                   cache_dir=str(training_cache / "decoded"), hf_cache_dir=str(training_cache / "hf"), progress=False)
    options.update(overrides)
    return TrainConfig(**options)


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _real_views(sample_repo, training_cache, n=128) -> torch.Tensor:
    data = load_dataset(str(sample_repo), "sp", resolution=R, cache_dir=training_cache / "decoded",
                        hf_cache_dir=str(training_cache / "hf"), progress=False)
    from training.augment import Ops, apply_params

    canvases = torch.from_numpy(np.array(data.images[:n, 0]))
    whole = {"box": torch.tensor([[0.5, 0.5, 1.0, 1.0]]).expand(n, 4), "angle": torch.zeros(n),
             "flip": torch.zeros(n, dtype=torch.bool)}  # each whole photo, resized to R x R
    return apply_params(canvases, whole, R, Ops(jitter=False, gray=False),
                        sizes=torch.from_numpy(np.array(data.sizes[:n, 0])))


@pytest.fixture(scope="module")
def trained(sample_repo, training_cache, tmp_path_factory):
    """30 steps of SimCLR and of BYOL (their papers' learning rates, no warmup) on SP."""
    runs = {}
    for method, hp in (("simclr", {}), ("byol", BYOL_HEADS)):
        out = tmp_path_factory.mktemp("runs") / method
        torch.set_num_threads(1)
        summary = train(_config(sample_repo, training_cache, out, method, steps=30, log_every=10,
                                hp={"warmup_epochs": 0, **hp}, keep_epochs=(2,)))
        runs[method] = (out, summary)
    return runs


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_loss_goes_down_and_embeddings_do_not_collapse(method, trained, sample_repo, training_cache):
    run, summary = trained[method]
    losses = _losses(run)
    assert len(losses) == 30 and summary["step"] == 30
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.95 * first, f"{method}: loss {first:.3f} -> {last:.3f}"
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    config = json.loads((run / "config.json").read_text())
    module = method_module(method)
    from training.backbones import BackboneSpec, build_backbone
    from training.config import build_hyperparameters, parse_hp_overrides

    backbone, width = build_backbone(BackboneSpec(**config["backbone"]))
    hp = build_hyperparameters(module, parse_hp_overrides(module.Hyperparameters, config["hp_overrides"]),
                              backbone=config["backbone"]["name"])
    model = module.Method(backbone, width, hp)
    model.load_state_dict(state["model"])
    model.eval()
    views = _real_views(sample_repo, training_cache)
    with torch.no_grad():
        features = model.backbone(views)
        z = torch.nn.functional.normalize(model.projector(features), dim=1)
    # collapse drives these to 0; a healthy embedding has per-dimension std near 1/sqrt(d)
    floor = 0.2 / z.shape[1] ** 0.5
    assert z.std(dim=0).min() > floor, f"{method}: a projection dimension collapsed"
    assert features.std(dim=0).min() > 0.01, f"{method}: a backbone feature collapsed"


def test_run_directory_holds_what_evaluation_needs(trained):
    run, _ = trained["simclr"]
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == {"name": "vit_tiny8", "stem": "imagenet", "image_size": R}
    assert (config["resolution"], config["method"], config["config"], config["epochs"], config["batch_size"],
            config["aug"]) == (R, "simclr", "sp", 100, 32, "paper")
    assert config["hyperparameters"]["temperature"] == 0.1 and config["hyperparameters"]["warmup_epochs"] == 0
    assert config["schedule"]["steps_per_epoch"] == 10 and config["dataset"]["rows"] == 334
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 31))
    assert all({"step", "epoch", "loss", "lr"} <= set(r) for r in records) and records[-1]["epoch"] == 2
    env = json.loads((run / "env.json").read_text())
    assert env["device"].startswith("cpu") and env["torch"] == torch.__version__
    assert {"torchvision", "python", "host"} <= set(env)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    backbone, loaded_config = load_eval_backbone(run)
    assert loaded_config["method"] == "simclr" and not backbone.training
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state["model"][f"backbone.{key}"])
    kept, _ = load_eval_backbone(run, "epoch-0002")  # --keep-epochs 2: step 20's weights
    assert any(not torch.equal(a, b) for a, b in zip(kept.state_dict().values(), backbone.state_dict().values()))


def test_resume_after_sigkill_continues_the_same_schedule(sample_repo, training_cache, tmp_path):
    options = ["--data", str(sample_repo), "--config", "sp", "--method", "byol", "--epochs", "100",
               "--batch-size", "32", "--resolution", str(R), "--backbone", "vit_tiny8", "--checkpoint-every", "10",
               "--log-every", "1", "--cache-dir", str(training_cache / "decoded"), "--no-progress",
               "--hp", "projection_hidden=256", "--hp", "prediction_hidden=256"]
    reference = tmp_path / "reference"
    assert main(["train", *options, "--out", str(reference), "--steps", "30"]) == 0

    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_DATASETS_CACHE=str(training_cache / "hf"))
    process = subprocess.Popen([sys.executable, "-m", "semantic_pairs_cli", "train", *options, "--out", str(killed),
                                "--steps", "1000"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:
            lines = (killed / "metrics.jsonl").read_text().count("\n") if (killed / "metrics.jsonl").exists() else 0
            if (killed / "checkpoints" / "last.pt").exists() and lines >= 13:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        process.send_signal(signal.SIGKILL)  # mid-run: no chance to clean up
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    checkpoint_step = load_checkpoint(killed / "checkpoints" / "last.pt")["step"]
    logged = _losses(killed)
    assert checkpoint_step % 10 == 0 and len(logged) > checkpoint_step  # steps past the checkpoint were lost

    assert main(["train", "--out", str(killed), "--resume", "--steps", "30", "--no-progress"]) == 0
    resumed_records = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed_records] == list(range(1, 31))  # lost steps redone, none twice
    assert [r["lr"] for r in resumed_records] == [json.loads(l)["lr"] for l in
                                                  (reference / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([r["loss"] for r in resumed_records], _losses(reference), rtol=1e-5)
    final, expected = load_checkpoint(killed / "checkpoints" / "last.pt"), load_checkpoint(reference / "checkpoints" / "last.pt")
    for key, value in expected["model"].items():  # online, target (EMA) and BatchNorm statistics
        torch.testing.assert_close(final["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert len(json.loads((killed / "env.json").read_text())["previous"]) == 1


def test_non_finite_loss_stops_with_a_clear_message(sample_repo, training_cache, tmp_path, capsys):
    out = tmp_path / "diverged"
    code = main(["train", "--data", str(sample_repo), "--config", "sp", "--method", "simclr", "--out", str(out),
                 "--epochs", "100", "--batch-size", "32", "--resolution", str(R), "--backbone", "vit_tiny8",
                 "--steps", "20", "--log-every", "1", "--checkpoint-every", "100", "--no-progress",
                 "--cache-dir", str(training_cache / "decoded"),
                 "--hp", "optimizer=sgd", "--hp", "base_lr=1e30", "--hp", "warmup_epochs=0"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 3
    assert error.startswith("error: loss is nan at step") or error.startswith("error: loss is inf at step"), error
    assert "Last checkpoint: none written yet" in error
    assert not (out / "checkpoints" / "last.pt").exists()  # no checkpoint of diverged weights


@pytest.mark.parametrize("extra, expected", [
    (["--hp", "temprature=0.2"], "--hp temprature: not a hyperparameter of this method"),
    (["--hp", "temperature=warm"], "--hp temperature=warm: not a number"),
    (["--hp", "temperature"], "--hp temperature: expected KEY=VALUE"),
    (["--backbone", "vit_tiny8", "--resolution", "36"], "--resolution 36: a ViT with 8x8 patches needs a multiple of 8"),
    (["--batch-size", "4096"], "--batch-size 4096: the dataset has 334 rows"),
    (["--config", "sp_manifest"], "--config sp_manifest: a manifest config"),
])
def test_bad_options_get_one_line_errors(extra, expected, sample_repo, training_cache, tmp_path, capsys):
    base = ["train", "--data", str(sample_repo), "--config", "sp", "--method", "simclr", "--out", str(tmp_path / "run"),
            "--resolution", "16", "--cache-dir", str(training_cache / "decoded"), "--no-progress"]
    code = main(base + extra)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and expected in err, err


def test_an_existing_run_is_neither_overwritten_nor_resumed_with_other_settings(trained, capsys):
    run, _ = trained["simclr"]
    assert main(["train", "--data", "x/y", "--config", "sp", "--method", "simclr", "--out", str(run)]) == 2
    assert "holds a run already" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume", "--epochs", "400"]) == 2
    assert "--epochs 400: differs from" in capsys.readouterr().err
    assert main(["train", "--out", str(run.parent / "nothing-here"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "--out", str(run)]) == 2
    assert "--data, --config, --method: required for a new run" in capsys.readouterr().err


def test_resume_refuses_data_that_changed_since_the_run_started(sample_repo, tmp_path, capsys):
    import shutil

    import datasets

    repo = tmp_path / "repo"
    shutil.copytree(sample_repo, repo)
    run = tmp_path / "run"
    args = ["train", "--data", str(repo), "--config", "sp", "--method", "simclr", "--out", str(run), "--resolution", "16",
            "--backbone", "vit_tiny8", "--batch-size", "16", "--epochs", "10", "--steps", "2", "--no-progress",
            "--cache-dir", str(tmp_path / "decoded")]
    assert main(args) == 0
    parquet = next((repo / "sp" / "tier050").glob("*.parquet"))
    table = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(tmp_path / "hf"))
    table.select(range(100)).to_parquet(str(parquet))
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
    assert "changed since this run started" in capsys.readouterr().err
