"""DistributedDataParallel under `torchrun`, and the cross-rank pieces self-supervised losses need.

One process per GPU (NCCL) or, in tests, per CPU process (gloo). The same code runs on one process,
where every helper here is the identity. Three things make a W-process run compute the same
gradients as one process over the same global batch:

- batch statistics over the global batch: `GlobalBatchNorm` (torch's SyncBatchNorm refuses CPU
  tensors, so tests could not exercise it; this one works on both and is the one used everywhere);
- losses over the global batch (SimCLR's negatives, VICReg's covariance): `gather_with_grad`;
- DDP's gradient averaging, which the two above are written to agree with: every rank computes the
  same global loss L, the backward of the gather sums the W copies of dL/dz, and DDP divides by W.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None: a single process, no process group
    owns_group: bool = False  # setup() created the process group, so teardown() destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> DistContext:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and join the process group.

    `device`: "auto" (CUDA when present, else CPU), "cuda" or "cpu". NCCL on CUDA, gloo on CPU."""
    if device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device: '{device}' is not one of auto, cuda, cpu")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but torch sees no CUDA device")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device("cpu")
    backend, owns = None, False
    if world_size > 1:
        if dist.is_initialized():  # created by the caller (e.g. several runs in one process): reuse it
            backend = dist.get_backend()
        else:
            backend, owns = ("nccl" if use_cuda else "gloo"), True
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, torch_device, backend, owns)


def teardown(ctx: DistContext) -> None:
    """Destroy the process group if `setup` made it (a group is never re-created in one process:
    a second rendezvous on torchrun's store can read the first one's stale addresses)."""
    if ctx.owns_group and dist.is_available() and dist.is_initialized():
        # Every rank leaves together: a gloo rank destroying its group while a peer still has
        # collectives in flight can abort the peer ("terminate called without an active exception").
        dist.barrier()
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over ranks and keeps this rank's slice
    (all_reduce + slice: gloo has no reduce_scatter)."""

    @staticmethod
    def forward(ctx, x):
        ctx.rank, ctx.batch = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.batch:(ctx.rank + 1) * ctx.batch]


class _AllReduceSumWithGrad(torch.autograd.Function):
    """Sum over ranks; the backward is the same sum (each rank's loss depends on every rank's input)."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(N, ...) on each rank -> (W*N, ...) in rank order, differentiable; identity on one process."""
    return _GatherWithGrad.apply(x) if is_distributed() else x


def all_reduce_sum_with_grad(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSumWithGrad.apply(x) if is_distributed() else x


@torch.no_grad()
def all_reduce_mean_(x: torch.Tensor) -> torch.Tensor:
    """In-place mean over ranks of a statistic that needs no gradient (DINO's centre, SwAV's
    Sinkhorn sums); identity on one process."""
    if is_distributed():
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm over the batch of all ranks, on CPU (gloo) and GPU alike.

    Same parameters and buffers as `nn.BatchNorm1d/2d` (state dicts are interchangeable). On one
    process, or in eval mode, it is plain `F.batch_norm`. Statistics are exact: the mean is summed
    over ranks first, then the squared deviations from it (two small all_reduces per layer), in
    float32 whatever the input dtype."""

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        local_count = torch.full((1,), x.numel() / x.shape[1], dtype=torch.float32, device=x.device)  # no H2D copy
        sums = all_reduce_sum_with_grad(torch.cat([xf.sum(dims), local_count]))
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centered = xf - mean.view(shape)
        var = all_reduce_sum_with_grad((centered * centered).sum(dims)) / count
        y = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return y.to(x.dtype)


def convert_to_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer by a GlobalBatchNorm holding the same tensors."""
    converted = module
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
        if module.affine:
            converted.weight = module.weight
            converted.bias = module.bias
        if module.track_running_stats:
            converted.running_mean = module.running_mean
            converted.running_var = module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, convert_to_global_batchnorm(child))
    return converted
