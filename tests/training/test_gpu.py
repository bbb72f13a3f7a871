"""GPU-only paths, checked where CUDA is present (skipped elsewhere): the decoded cache placed on
the GPU, the CUDA-graph step equal to the eager step, bf16 autocast training.

    python -m pytest tests/training/test_gpu.py -q   # on a GPU machine
"""
from __future__ import annotations

import json

import pytest
import torch

from training.config import TrainConfig
from training.data import load_dataset
from training.data.batches import PairBatches
from training.loop import train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (GPU-only code paths)")]


def _config(sample_repo, training_cache, out, method, **overrides):
    options = dict(data=str(sample_repo), config="sp", method=method, out=str(out), epochs=100, batch_size=32,
                   resolution=32, backbone="resnet18", steps=6, log_every=1, device="cuda",
                   cache_dir=str(training_cache / "decoded"), hf_cache_dir=str(training_cache / "hf"), progress=False,
                   hp={"warmup_epochs": 0})
    options.update(overrides)
    return TrainConfig(**options)


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_decoded_cache_lives_on_the_gpu(sample_repo, training_cache):
    data = load_dataset(str(sample_repo), "sp", resolution=32, cache_dir=training_cache / "decoded",
                        hf_cache_dir=str(training_cache / "hf"), progress=False)
    batches = PairBatches(data, batch_size=32, seed=0, device=torch.device("cuda"))
    assert batches.on_gpu and batches.images.is_cuda
    batch = batches.batch(0)
    assert batch.first.is_cuda and batch.second.is_cuda and batch.first.dtype == torch.uint8


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_cuda_graph_step_trains_like_the_eager_step(method, sample_repo, training_cache, tmp_path):
    eager = tmp_path / "eager"
    graphed = tmp_path / "graphed"
    # fp32 autocast off in both (the loop still allows TF32 on CUDA, alike for both); cuDNN may pick
    # different kernels per run, hence tolerances rather than equality
    train(_config(sample_repo, training_cache, eager, method, precision="fp32"))
    train(_config(sample_repo, training_cache, graphed, method, precision="fp32", cuda_graphs=True))
    torch.testing.assert_close(torch.tensor(_losses(graphed)), torch.tensor(_losses(eager)), rtol=2e-3, atol=2e-3)
    a = torch.load(eager / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(graphed / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(b[key], a[key], rtol=1e-2, atol=1e-3, msg=key)


def test_bf16_training_runs_with_finite_decreasing_loss(sample_repo, training_cache, tmp_path):
    run = tmp_path / "bf16"
    summary = train(_config(sample_repo, training_cache, run, "simclr", steps=20, precision="bf16",
                            cuda_graphs=True))
    losses = _losses(run)
    assert summary["step"] == 20 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) < sum(losses[:5])
