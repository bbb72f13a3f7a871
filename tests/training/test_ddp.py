"""DistributedDataParallel: a real 2-process gloo run under `torchrun` computes the same gradients as one
process over the same global batch (SimCLR: negatives gathered across ranks; BYOL: BatchNorm over the
global batch). That each rank holds only its shard of the cache is checked in test_data.py.

This file is also the worker script: `torchrun --nproc-per-node 2 test_ddp.py OUT REPO CACHE METHOD...`
runs the real training loop in each process and saves the first steps' gradients."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

STEPS = 3
METHODS = ("simclr", "byol")


def _config(method: str, out: Path, repo: str, cache: str):
    from training.config import TrainConfig

    hp = {"warmup_epochs": 0}
    if method == "byol":
        hp.update(projection_hidden=128, prediction_hidden=128)
    return TrainConfig(data=repo, config="sp", method=method, out=str(out), epochs=100, batch_size=32, resolution=32,
                       backbone="vit_tiny8", steps=STEPS, log_every=1, shards=2, hp=hp, cache_dir=f"{cache}/decoded",
                       hf_cache_dir=f"{cache}/hf", progress=False)


def _run(method: str, out: Path, repo: str, cache: str) -> dict[int, dict[str, torch.Tensor]]:
    """Train STEPS steps; return {step: {parameter: gradient}} as seen after backward (DDP-averaged)."""
    from training.loop import train

    grads: dict[int, dict[str, torch.Tensor]] = {}

    def keep(step, method_module):
        grads[step] = {n: p.grad.detach().clone() for n, p in method_module.named_parameters() if p.grad is not None}

    train(_config(method, out, repo, cache), on_gradients=keep)
    return grads


def worker(out: str, repo: str, cache: str, methods: list[str]) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo")  # one group for both runs; the loop reuses it
    try:
        for method in methods:
            grads = _run(method, Path(out) / f"ddp-{method}", repo, cache)
            torch.save(grads, Path(out) / f"grads-{method}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(sample_repo, training_cache, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__,
               str(tmp_path), str(sample_repo), str(training_cache), *METHODS]
    # decode the cache first (once), so both ranks start from it
    reference = {method: _run(method, tmp_path / f"one-{method}", str(sample_repo), str(training_cache))
                 for method in METHODS}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for method in METHODS:
        ranks = [torch.load(tmp_path / f"grads-{method}-rank{r}.pt") for r in range(2)]
        assert sorted(ranks[0]) == sorted(reference[method]) == list(range(STEPS))
        for step in range(STEPS):
            one = reference[method][step]
            assert set(ranks[0][step]) == set(one), method
            for name, grad in one.items():
                assert grad.abs().max() > 0 or name.endswith("bias"), f"{method} {name}: no gradient at all"
                # DDP leaves the averaged gradient on every rank. After the first update the weights
                # differ by float rounding (a mean over ranks rounds differently from one process's
                # sum), so a near-zero entry may differ by a few 1e-6 absolute; atol allows that.
                for r in range(2):
                    torch.testing.assert_close(ranks[r][step][name], grad, rtol=2e-4, atol=1e-5,
                                               msg=f"{method} step {step} rank {r} {name}")
        losses_one = [json.loads(l)["loss"] for l in (tmp_path / f"one-{method}" / "metrics.jsonl").read_text().splitlines()]
        losses_ddp = [json.loads(l)["loss"] for l in (tmp_path / f"ddp-{method}" / "metrics.jsonl").read_text().splitlines()]
        torch.testing.assert_close(torch.tensor(losses_ddp), torch.tensor(losses_one), rtol=1e-5, atol=1e-6)
        config = json.loads((tmp_path / f"ddp-{method}" / "config.json").read_text())
        assert config["world_size"] == 2 and config["shards"] == 2


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
