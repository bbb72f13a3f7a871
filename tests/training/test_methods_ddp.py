"""The cross-rank parts of DINO, VICReg, MoCo v2, SimSiam, Barlow Twins and SwAV (DINO's centre,
VICReg's and Barlow Twins' global statistics, MoCo's gathered keys, SwAV's Sinkhorn sums, global
BatchNorm in every projector): two gloo processes under real DistributedDataParallel, set up as
training/loop.py does, give the same loss, gradients and method state as one process on the same
global batch of real photos.

This file is also the worker: the test starts it twice as a script with torchrun's variables."""
from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SIZE, GLOBAL_BATCH = 32, 16
CONFIGS = {
    "vicreg": dict(projector=(64, 64)),
    "barlow_twins": dict(projector=(64, 64)),
    "simsiam": dict(projector_dim=64, predictor_hidden=16),
    "mocov2": dict(queue_size=48, dim=16),
    "swav": dict(projector_hidden=64, projector_dim=16, prototypes=12, queue_length=0, freeze_prototypes=0.0),
    "dino": dict(out_dim=64, head_hidden=64, head_bottleneck=16),
}


def photos() -> tuple[torch.Tensor, torch.Tensor]:
    """Two views (the photo and its mirror, shifted) of 16 real photos from 16 classes."""
    folders = sorted(p for p in (REPO / "sample_data" / "imagenet" / "train").iterdir() if p.is_dir())[:GLOBAL_BATCH]
    batch = []
    for folder in folders:
        with Image.open(sorted(folder.glob("*.JPEG"))[0]) as im:
            im = im.convert("RGB").resize((SIZE, SIZE), Image.BICUBIC)
            batch.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(SIZE, SIZE, 3))
    x = torch.stack(batch).permute(0, 3, 1, 2).float() / 255
    x = (x - 0.45) / 0.25
    return x, torch.roll(x.flip(3), shifts=3, dims=2)


def build(name: str, distributed: bool):
    from training.backbones import BackboneSpec, build_backbone
    from training.distributed import convert_to_global_batchnorm

    module = importlib.import_module(f"training.methods.{name}")
    torch.manual_seed(0)  # the same initial weights on every rank, as the loop
    backbone, width = build_backbone(BackboneSpec("vit_tiny8", image_size=SIZE))
    method = module.Method(backbone, width, module.Hyperparameters(**CONFIGS[name]))
    if distributed:
        convert_to_global_batchnorm(method)
    method.update_targets(0.5)  # past DINO's frozen first epoch and temperature warm-up
    return method


def state_of(method, name: str) -> dict:
    if name == "dino":
        return {"center": method.center.clone()}
    if name == "mocov2":
        return {"queue": method.queue.clone(), "queue_ptr": method.queue_ptr.clone()}
    return {}


def step(method, name: str, view_a, view_b, forward=None) -> dict:
    loss = (forward or method)(view_a, view_b)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    return {"loss": loss.detach().clone(), "grads": grads, "state": state_of(method, name)}


def worker(out: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from training import distributed

    torch.set_num_threads(1)
    ctx = distributed.setup("cpu")
    view_a, view_b = photos()
    local = slice(ctx.rank * GLOBAL_BATCH // 2, (ctx.rank + 1) * GLOBAL_BATCH // 2)
    results = {}
    for name in CONFIGS:
        method = build(name, distributed=True)
        ddp = DistributedDataParallel(method, broadcast_buffers=False, find_unused_parameters=True)
        result = step(method, name, view_a[local], view_b[local], forward=ddp)
        dist.all_reduce(result["loss"])
        result["loss"] /= ctx.world_size
        results[name] = result
    if ctx.is_main:
        torch.save(results, out)
    distributed.teardown(ctx)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_match_one_process_for_every_method(tmp_path):
    out = tmp_path / "rank0.pt"
    port = free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
               "RANK": str(rank), "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen([sys.executable, __file__, str(out)], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    ranks = torch.load(out)

    view_a, view_b = photos()
    for name in CONFIGS:
        single = step(build(name, distributed=False), name, view_a, view_b)
        two = ranks[name]
        assert torch.allclose(two["loss"], single["loss"], rtol=1e-5, atol=1e-6), name
        assert two["grads"].keys() == single["grads"].keys(), name
        # float32 sums in another order: errors measured against the largest gradient entry
        # (some tensors' exact gradient is 0, e.g. a bias before BatchNorm, and carry only noise)
        scale = max(grad.abs().max().item() for grad in single["grads"].values())
        for key, grad in single["grads"].items():
            error = (two["grads"][key] - grad).abs().max().item()
            assert error <= 1e-5 * scale, f"{name}: {key} off by {error} (largest gradient {scale})"
        for key, value in single["state"].items():
            assert torch.allclose(two["state"][key].float(), value.float(), atol=1e-6), f"{name}: {key}"


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
