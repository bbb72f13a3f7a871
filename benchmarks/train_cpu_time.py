"""CPU time per training step, split into the data side (a step's batch from the decoded cache and
both views' augmentation) and the method's step (forward, backward, optimizer), one thread.

CPU time rather than wall time: on a shared machine other jobs' load stretches wall time by
factors of ten from one minute to the next, while the CPU time a process spends stays put, so two
versions of the code can be compared run by run (`--tree` points at another checkout, e.g. a
`git worktree` of an older commit; run both alternately and take medians).

    python benchmarks/train_cpu_time.py --data REPO_DIR [--tree CHECKOUT] [--methods simclr,swav]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a release folder (or Hub id) with an `sp` config")
    parser.add_argument("--tree", default=str(REPO), help="the checkout whose code is timed (default: this one)")
    parser.add_argument("--methods", default="", help="also time these methods' steps (comma-separated)")
    parser.add_argument("--backbone", default="vit_tiny8")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--cache-dir", default=None, help="decoded cache (default: one per tree under /tmp)")
    args = parser.parse_args()
    sys.path.insert(0, args.tree)

    import torch

    torch.set_num_threads(1)
    from training.augment import PAPER, PairAugment
    from training.data import load_dataset
    from training.data.batches import PairBatches

    cache = args.cache_dir or f"/tmp/train_cpu_time_cache_{abs(hash(os.path.realpath(args.tree)))}"
    data = load_dataset(args.data, "sp", resolution=args.resolution, cache_dir=cache, progress=False, workers=1)
    batches = PairBatches(data, args.batch_size, 0, torch.device("cpu"))
    augment = PairAugment(PAPER, PAPER, args.resolution, 0, torch.device("cpu"))

    def views(step: int):
        batch = batches.batch(step)
        try:
            return augment(batch, step)
        except TypeError:  # checkouts before whole-photo canvases: augment(first, second, step, shards)
            return augment(batch.first, batch.second, step, batch.shard_sizes)

    def cpu_ms(work, steps: int) -> float:
        for step in range(3):
            work(step)
        started = time.process_time()
        for step in range(steps):
            work(step)
        return round(1000 * (time.process_time() - started) / steps, 2)

    report = {"tree": args.tree, "data_side_ms": cpu_ms(views, args.steps)}
    for name in [m for m in args.methods.split(",") if m]:
        report[f"{name}_step_ms"] = method_step_ms(name, args, cpu_ms)
    print(json.dumps(report))
    return 0


def method_step_ms(name: str, args, cpu_ms) -> float:
    import torch

    from training.backbones import BackboneSpec, build_backbone
    from training.methods import method_module
    from training.optim import build_optimizer
    from training.step import EagerStep

    module = method_module(name)
    hp = module.Hyperparameters()
    torch.manual_seed(0)
    backbone, width = build_backbone(BackboneSpec(args.backbone, "imagenet", args.resolution))
    method = module.Method(backbone, width, hp).train()
    scale = args.batch_size / 256
    optimizer = build_optimizer(method, hp.recipe, hp.recipe.base_lr * scale, scale)
    step = EagerStep(method, method, optimizer, None, torch.device("cpu"), clip_grad=hp.recipe.clip_grad)
    a = torch.randn(args.batch_size, 3, args.resolution, args.resolution)
    b = torch.randn_like(a)

    def one(i: int) -> None:
        step(a, b, i)
        method.update_targets(0.5)

    return cpu_ms(one, max(5, args.steps // 3))


if __name__ == "__main__":
    raise SystemExit(main())
