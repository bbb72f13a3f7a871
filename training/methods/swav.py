"""SwAV: swapped prediction of online cluster assignments (Sinkhorn-Knopp codes over prototypes).

Caron, Misra, Mairal, Goyal, Bojanowski & Joulin, "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", NeurIPS 2020, arXiv:2006.09882. Official code:
github.com/facebookresearch/swav, `main_swav.py` (train, distributed_sinkhorn), `src/resnet50.py`
(projection head, prototypes), and `scripts/swav_200ep_bs256_pretrain.sh`, the official recipe for
exactly this project's setting (batch 256, 200 epochs), whose values are used below.

Two crops only: the semantic-pairs protocol gives two views per sample (§3.2 there), so SwAV's
multi-crop (2x224 + 6x96 in the script) is not used; the loss is the two-crop case of main_swav.py,
(ℓ(z_b, q_a) + ℓ(z_a, q_b)) / 2, with the codes q computed without gradient.

Queue: from `queue_start` (15 of the 200 epochs) the embeddings of past batches are kept, 3840 per
crop as in the script, and once it is full they are prepended to the scores that Sinkhorn-Knopp
balances, so the equipartition holds over 256 + 3840 samples rather than 256 (the paper's training
with small batches). `queue_length = 0` turns it off. Under DDP each rank keeps
queue_length / world_size rows (build the Method after init_process_group) and the Sinkhorn sums are
all-reduced, as the official code. The queue is a buffer, so checkpoints keep it.

Schedules that depend on training progress (prototype freezing during the first epoch, the queue
start) are held as the last `progress` given to `update_targets`, which is saved in the state dict.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from training.distributed import is_distributed, world_size
from training.heads import mlp
from training.precision import float32_loss
from training.recipe import MAX_QUEUE, Recipe, require_count, require_fraction, require_positive
from training.views import check_views


@dataclass(frozen=True)
class Hyperparameters:
    # Sinkhorn-Knopp: ε = 0.05, 3 iterations (paper's implementation details; script --epsilon 0.05
    # --sinkhorn_iterations 3). Temperature τ = 0.1 of the swapped prediction (--temperature 0.1).
    epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    temperature: float = 0.1
    # Projection head 2048 (BN, ReLU) -> 128, L2-normalized; 3000 prototypes (paper,
    # src/resnet50.py hidden_mlp=2048, --feat_dim 128, --nmb_prototypes 3000).
    projector_hidden: int = 2048
    projector_dim: int = 128
    prototypes: int = 3000
    # Queue of 3840 embeddings per crop, used from epoch 15 of 200 (script --queue_length 3840
    # --epoch_queue_starts 15); as a fraction of training because update_targets gets progress.
    queue_length: int = 3840
    queue_start: float = 15 / 200
    # Prototypes get no gradient for the first 5005 iterations = one ImageNet epoch at batch 256
    # (script --freeze_prototypes_niters 5005), i.e. the first 1/200 of the 200-epoch run.
    freeze_prototypes: float = 1 / 200
    # Optimizer: script and main_swav.py: SGD momentum 0.9 wrapped in LARC (trust coefficient 0.001,
    # clip=False, applied to every parameter, biases and BN included, and so is the weight decay),
    # lr 0.6 at batch 256 (--base_lr 0.6), cosine to 0.0006 (--final_lr), no warm-up
    # (--warmup_epochs 0), weight decay 1e-6 (--wd 0.000001).
    recipe: Recipe = Recipe(optimizer="lars", base_lr=0.6, weight_decay=1e-6, warmup_epochs=0, momentum=0.9,
                            lars_eta=0.001, lars_exclude_bias_and_norm=False, final_lr_ratio=0.001)

    def __post_init__(self):
        require_positive(self, "epsilon", "temperature")
        require_count(self, "sinkhorn_iterations", maximum=1000)
        require_count(self, "projector_hidden", "projector_dim", "prototypes")
        require_count(self, "queue_length", minimum=0, maximum=MAX_QUEUE)
        require_fraction(self, "queue_start", "freeze_prototypes")


def _all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In place over every rank (Sinkhorn's sums run over the global batch); identity alone."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Codes Q (B, K): rows sum to 1, prototypes used equally (main_swav.py distributed_sinkhorn).

    scores: (B, K) similarities of B samples to K prototypes. Q ∝ exp(scores / ε), then
    `iterations` alternations of normalizing the prototype marginals to 1/K and the sample marginals
    to 1/B; the result is scaled so each sample's code sums to 1. Sums run over every rank.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (B, K), got {tuple(scores.shape)}")
    if epsilon <= 0 or iterations < 1:
        raise ValueError(f"epsilon must be > 0 and iterations >= 1, got {epsilon} and {iterations}")
    with torch.autocast(scores.device.type, enabled=False):
        s = scores.float()
        shift = _all_reduce(s.max().clone(), "max")
        q = torch.exp((s - shift) / epsilon).T  # (K, B); the shift cancels in the normalizations
        k, b = q.shape[0], q.shape[1] * world_size()
        q /= _all_reduce(q.sum())
        for _ in range(iterations):
            q /= _all_reduce(q.sum(dim=1, keepdim=True))  # each prototype gets 1/K of the mass
            q /= k
            q /= q.sum(dim=0, keepdim=True)  # each sample gets 1/B
            q /= b
        q *= b  # each sample's code sums to 1
        return q.T


@float32_loss
def swav_loss(
    scores_a: torch.Tensor, scores_b: torch.Tensor, temperature: float = 0.1, epsilon: float = 0.05,
    sinkhorn_iterations: int = 3, queue_scores_a: torch.Tensor | None = None,
    queue_scores_b: torch.Tensor | None = None,
) -> torch.Tensor:
    """(H(q_a, p_b) + H(q_b, p_a)) / 2, batch-averaged, in float32.

    scores_*: (N, K) prototype scores of the two views (cosines); p = softmax(scores / τ); q the
    Sinkhorn codes of the other view's detached scores, balanced together with the optional
    queue_scores_* (M, K) of past embeddings.
    """
    if scores_a.ndim != 2 or scores_a.shape != scores_b.shape:
        raise ValueError(
            "scores_a and scores_b must be (N, K) of the same shape, got "
            f"{tuple(scores_a.shape)} and {tuple(scores_b.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    n = scores_a.shape[0]
    codes = []
    for scores, queued in ((scores_a, queue_scores_a), (scores_b, queue_scores_b)):
        s = scores.detach()
        if queued is not None:
            if queued.ndim != 2 or queued.shape[1] != s.shape[1]:
                raise ValueError(f"queue scores must be (M, {s.shape[1]}), got {tuple(queued.shape)}")
            s = torch.cat([queued.detach(), s])
        codes.append(sinkhorn_knopp(s, epsilon, sinkhorn_iterations)[-n:])  # (N, K), no gradient
    log_p_a = F.log_softmax(scores_a / temperature, dim=1)
    log_p_b = F.log_softmax(scores_b / temperature, dim=1)
    return -0.5 * ((codes[0] * log_p_b).sum(dim=1).mean() + (codes[1] * log_p_a).sum(dim=1).mean())


class Method(nn.Module):
    """Backbone + projection head + prototypes; the backbone is what gets evaluated."""

    # forward reads Python flags (prototypes frozen, queue filling, queue in use) that flip a few
    # times per run: a CUDA graph captured before a flip would be wrong after it, so no capture.
    capturable = False

    def __init__(self, backbone: nn.Module, feature_dim: int, hp: Hyperparameters = Hyperparameters()):
        super().__init__()
        self.hp = hp
        self.backbone = backbone
        hidden = hp.projector_hidden
        # src/resnet50.py projection_head: Linear -> BatchNorm1d -> ReLU -> Linear.
        self.projector = mlp((feature_dim, hidden, True, nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)),
                             (hidden, hp.projector_dim, True, None, None))
        self.prototypes = nn.Linear(hp.projector_dim, hp.prototypes, bias=False)
        # (crop, M, D): past embeddings of each crop, newest first
        self.register_buffer("queue", torch.zeros(2, hp.queue_length // world_size(), hp.projector_dim))
        self._normalize_prototypes()
        # Plain flags, read by forward and changed by update_targets only a few times per run (a
        # compiled step recompiles when one flips, never every step).
        self._progress = 0.0
        self._freeze_prototypes = hp.freeze_prototypes > 0
        self._fill_queue = self.queue.shape[1] > 0 and hp.queue_start == 0
        self._use_queue = False

    @torch.no_grad()
    def _normalize_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        check_views(view_a, view_b)
        n = view_a.shape[0]
        if self._fill_queue and n > self.queue.shape[1]:
            raise ValueError(f"queue_length per rank {self.queue.shape[1]} is smaller than the batch {n}")
        # One pass for both crops (main_swav.py runs same-resolution crops together).
        z = F.normalize(self.projector(self.backbone(torch.cat([view_a, view_b]))).float(), dim=1)  # (2N, D)
        weight = self.prototypes.weight.float()
        if self._freeze_prototypes:  # main_swav.py sets their grad to None for the first iterations
            weight = weight.detach()
        with torch.autocast(z.device.type, enabled=False):
            scores_a, scores_b = (z @ weight.T).chunk(2)  # (N, K) each
            queued = (None, None)
            if self._use_queue:
                queued = tuple(self.queue[i].float() @ weight.detach().T for i in range(2))
        hp = self.hp
        loss = swav_loss(scores_a, scores_b, hp.temperature, hp.epsilon, hp.sinkhorn_iterations, *queued)
        if self._fill_queue:
            with torch.no_grad():  # newest first, as main_swav.py: queue[i, bs:] = queue[i, :-bs]
                newest = z.detach().view(2, n, -1).to(self.queue.dtype)
                self.queue.copy_(torch.cat([newest, self.queue[:, : self.queue.shape[1] - n]], dim=1))
        return loss

    @torch.no_grad()
    def update_targets(self, progress: float) -> None:
        """Re-normalize the prototypes (main_swav.py does it before every step); advance the schedules."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress: must be in [0, 1], got {progress}")
        self._normalize_prototypes()
        self._progress = float(progress)
        self._freeze_prototypes = self._progress < self.hp.freeze_prototypes
        self._fill_queue = self.queue.shape[1] > 0 and self._progress >= self.hp.queue_start
        if self._fill_queue and not self._use_queue:
            # main_swav.py: used once its oldest row is written (embeddings are unit vectors, never 0).
            self._use_queue = bool(self.queue[:, -1].abs().sum() > 0)

    def eval_backbone(self) -> nn.Module:
        return self.backbone

    def get_extra_state(self):
        return {"progress": self._progress, "use_queue": self._use_queue}

    def set_extra_state(self, state) -> None:
        self._progress = float(state["progress"])
        self._freeze_prototypes = self._progress < self.hp.freeze_prototypes
        self._fill_queue = self.queue.shape[1] > 0 and self._progress >= self.hp.queue_start
        self._use_queue = bool(state["use_queue"])
