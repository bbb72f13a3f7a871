"""MoCo v2: momentum contrast with a queue of negatives, an MLP head and temperature 0.2.

He, Fan, Wu, Xie & Girshick, "Momentum Contrast for Unsupervised Visual Representation Learning",
CVPR 2020, arXiv:1911.05722; Chen, Fan, Girshick & He, "Improved Baselines with Momentum
Contrastive Learning", arXiv:2003.04297 (v2: MLP head, τ = 0.2, stronger augmentation, cosine lr).
Official code: github.com/facebookresearch/moco, `moco/builder.py` (class MoCo) and `main_moco.py`
run with `--mlp --moco-t 0.2 --aug-plus --cos` (README, "MoCo v2").

What gets evaluated is the query (online) encoder, `self.backbone`, as in the official linear
evaluation (`main_lincls.py` loads `module.encoder_q`); the momentum key encoder only makes keys.

As in builder.py the loss is asymmetric: view_a is the query, view_b the key; the keys of each batch
are pushed into the queue after the loss (gathered from every rank under DDP, so every rank holds the
same queue). The key-encoder momentum update is in `update_targets`, after the optimizer step; the
official code does it at the start of the next forward, which is the same sequence of weights.

Shuffling BN (MoCo §3.3): with BatchNorm in the key encoder, the positive key would share batch
statistics with its query and the model could cheat. The official code shuffles the key batch across
its 8 GPUs (256 images, 32 per GPU). One process emulates that: the key batch is permuted at random,
split into `shuffle_bn_splits` chunks that each get their own BatchNorm statistics, and un-permuted.
The query batch keeps one set of statistics (departure: 32 per GPU in the official run).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.distributed import gather_with_grad, world_size
from training.ema import ema_update_
from training.heads import mlp
from training.precision import float32_loss
from training.recipe import MAX_QUEUE, Recipe, require_count, require_fraction, require_positive
from training.views import check_views


@dataclass(frozen=True)
class Hyperparameters:
    # Queue length K = 65536, key-encoder momentum m = 0.999, output dim 128: the MoCo paper and
    # main_moco.py --moco-k 65536 --moco-m 0.999 --moco-dim 128.
    queue_size: int = 65536
    momentum_ema: float = 0.999
    dim: int = 128
    # Temperature τ = 0.2: the MoCo v2 note (Table 1) and the README's --moco-t 0.2.
    temperature: float = 0.2
    # MLP head 2048 -> 2048 (ReLU) -> 128: the MoCo v2 note and builder.py `mlp=True`. 0 means "the
    # backbone's feature width", as builder.py's dim_mlp.
    head_hidden: int = 0
    # 8 key chunks of 32 = the official 8-GPU shuffling-BN setting at batch 256 (README).
    # 1 disables the emulation. Ignored when the key encoder has no BatchNorm (e.g. a ViT).
    shuffle_bn_splits: int = 8
    # Optimizer: the MoCo v2 note and README: SGD, momentum 0.9, lr 0.03 at batch 256 (--lr 0.03
    # --batch-size 256, scaled linearly with the batch), weight decay 1e-4, cosine decay to 0
    # (--cos), no warm-up, 200 epochs.
    recipe: Recipe = Recipe(optimizer="sgd", base_lr=0.03, weight_decay=1e-4, warmup_epochs=0, momentum=0.9,
                            final_lr_ratio=0.0)

    def __post_init__(self):
        require_positive(self, "temperature")
        require_fraction(self, "momentum_ema")
        require_count(self, "queue_size", maximum=MAX_QUEUE)
        require_count(self, "dim", "shuffle_bn_splits")
        require_count(self, "head_hidden", minimum=0)


@float32_loss
def mocov2_loss(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """InfoNCE: -log( exp(q·k+/τ) / (exp(q·k+/τ) + Σ_j exp(q·n_j/τ)) ), batch-averaged, in float32.

    q: (N, D) queries; k: (N, D) their positive keys (both L2-normalized here; k is detached);
    queue: (K, D) negatives, rows already L2-normalized.
    """
    if q.ndim != 2 or q.shape != k.shape:
        raise ValueError(
            f"q and k must be (N, D) of the same shape, got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must be (K, {q.shape[1]}), got {tuple(queue.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    l_pos = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
    l_neg = q @ queue.detach().T  # (N, K)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)  # the positive is column 0
    return F.cross_entropy(logits, labels)


def _has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class Method(nn.Module):
    """Query encoder (backbone + MLP head, trained) and its momentum copy (keys), with a queue."""

    # No host sync in forward: the queue pointer is a tensor and the key shuffle a device-side
    # permutation, so the loop may capture the step in a CUDA graph.
    capturable = True

    def __init__(self, backbone: nn.Module, feature_dim: int, hp: Hyperparameters = Hyperparameters()):
        super().__init__()
        self.hp = hp
        self.backbone = backbone
        hidden = hp.head_hidden or feature_dim
        # builder.py with mlp=True: Linear(dim_mlp, dim_mlp) -> ReLU -> Linear(dim_mlp, dim).
        self.head = mlp((feature_dim, hidden, True, None, nn.ReLU()), (hidden, hp.dim, True, None, None))
        self.key_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(hp.queue_size, hp.dim), dim=1))  # (K, D)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._key_splits = hp.shuffle_bn_splits if _has_batchnorm(self.key_backbone) else 1

    @torch.no_grad()
    def _keys(self, view: torch.Tensor) -> torch.Tensor:
        n = view.shape[0]
        splits = min(self._key_splits, n // 2) if self._key_splits > 1 else 1
        if splits <= 1:
            return self.key_head(self.key_backbone(view))
        order = torch.rand(n, device=view.device).argsort()  # random permutation (graph-capturable)
        shuffled = torch.cat([self.key_head(self.key_backbone(c)) for c in view[order].tensor_split(splits)])
        return shuffled[order.argsort()]  # undo the shuffle: row i is the key of view[i]

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        n, size = keys.shape[0], self.queue.shape[0]
        slots = (self.queue_ptr + torch.arange(n, device=keys.device)) % size
        self.queue.index_copy_(0, slots, keys.to(self.queue.dtype))
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        check_views(view_a, view_b)
        if view_a.shape[0] * world_size() > self.queue.shape[0]:
            size, batch = self.queue.shape[0], view_a.shape[0] * world_size()
            raise ValueError(f"queue_size {size} is smaller than the global batch {batch}")
        q = self.head(self.backbone(view_a))  # (N, D) queries
        k = F.normalize(self._keys(view_b).float(), dim=1)  # (N, D) positive keys, no gradient
        loss = mocov2_loss(q, k, self.queue.clone(), self.hp.temperature)
        with torch.no_grad():  # every rank's keys in rank order (builder.py concat_all_gather)
            self._enqueue(gather_with_grad(k))
        return loss

    @torch.no_grad()
    def update_targets(self, progress: float) -> None:
        """key ← m·key + (1 - m)·query, constant m = 0.999 (builder.py _momentum_update_key_encoder)."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress: must be in [0, 1], got {progress}")
        ema_update_(self.key_backbone, self.backbone, self.hp.momentum_ema)
        ema_update_(self.key_head, self.head, self.hp.momentum_ema)

    def eval_backbone(self) -> nn.Module:
        return self.backbone
