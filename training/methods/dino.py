"""DINO: self-distillation with no labels (student matches a centred, sharpened EMA teacher).

Caron, Touvron, Misra, Jégou, Mairal, Bojanowski & Joulin, "Emerging Properties in
Self-Supervised Vision Transformers", ICCV 2021, arXiv:2104.14294. Official code:
github.com/facebookresearch/dino, `main_dino.py` (DINOLoss, train_one_epoch, argument defaults and
help texts), `vision_transformer.py` (DINOHead), `utils.py` (cosine_scheduler, clip_gradients,
cancel_gradients_last_layer, get_params_groups).

Two global views only, no multi-crop: the semantic-pairs paper's §4.4.2 setting ("using only two
global views"). Both views go through student and teacher; the loss is the two-crop case of
DINOLoss, (H(t_a, s_b) + H(t_b, s_a)) / 2.

What gets evaluated is the teacher backbone (`eval_backbone`), as DINO's k-NN and linear evaluations
use `--checkpoint_key teacher`.

What the training loop applies from the recipe (the method cannot): AdamW, which spares biases and
1-D parameters from weight decay as get_params_groups does, the weight-decay cosine schedule
0.04 -> 0.4 (`weight_decay_end`), per-tensor gradient clipping at 3.0 (`clip_grad`), the absolute
final lr `min_lr`.
Schedules inside the method follow `update_targets(progress)`: teacher momentum 0.996 -> 1 (cosine),
teacher temperature warm-up, and the last layer's freezing during the first epoch, which is done
by detaching it in the student's forward (its gradient is then None, exactly what
cancel_gradients_last_layer does). Departure: torchvision's ViT has no stochastic depth, so
DINO's drop_path_rate 0.1 for ViT-S is not applied.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from training.distributed import all_reduce_mean_
from training.ema import cosine_momentum, ema_update_
from training.heads import mlp
from training.precision import float32_loss
from training.recipe import Recipe, require_bool, require_count, require_fraction, require_positive
from training.views import check_views


@dataclass(frozen=True)
class Hyperparameters:
    # Head: 3-layer MLP (GELU, no BN) 2048 -> bottleneck 256 -> L2-normalize -> weight-normalized
    # linear to K = 65536 (paper §3.1 "Network architecture", DINOHead defaults, --out_dim 65536,
    # --use_bn_in_head false). Tests override out_dim and the widths.
    out_dim: int = 65536
    head_hidden: int = 2048
    head_bottleneck: int = 256
    head_layers: int = 3
    # Last layer's norm g fixed to 1 (--norm_last_layer, default True: the help says False is
    # better but "can make the training unstable"; the released ViT-S runs used False).
    norm_last_layer: bool = True
    # Temperatures: student τs = 0.1; teacher τt linear warm-up 0.04 -> 0.07 over the first 30
    # epochs (paper §3.2 "Implementation details"; README "--teacher_temp 0.07
    # --warmup_teacher_temp_epochs 30"). The warm-up is a fraction of training because
    # update_targets gets progress: 30 of the paper's 300 epochs (§4.4.2 here: 300 epochs).
    student_temp: float = 0.1
    teacher_temp_start: float = 0.04
    teacher_temp: float = 0.07
    teacher_temp_warmup: float = 30 / 300
    # Teacher EMA momentum 0.996 -> 1 with a cosine schedule (paper §3.1, --momentum_teacher 0.996).
    # The code's help suggests 0.9995 for batch 256; the paper's protocol keeps DINO's value.
    teacher_momentum: float = 0.996
    # Centre EMA rate m = 0.9 (paper §3.1 "Avoiding collapse", DINOLoss center_momentum=0.9).
    center_momentum: float = 0.9
    # Last layer frozen for the first epoch (--freeze_last_layer 1): 1 of 300 epochs.
    freeze_last_layer: float = 1 / 300
    # Optimizer: paper §3.2 "Implementation details" and main_dino.py: AdamW (default betas), lr
    # 0.0005 x batch/256 (--lr 0.0005), 10 linear warm-up epochs, cosine decay to --min_lr 1e-6,
    # weight decay cosine 0.04 -> 0.4 (--weight_decay, --weight_decay_end), no decay on biases and
    # norms (get_params_groups), per-tensor gradient clipping 3.0 (--clip_grad 3.0).
    # ResNet backbones get RESNET_HYPERPARAMETERS below (the README's convnet recipe).
    # momentum: SGD only (the ResNet recipe), main_dino.py SGD(momentum=0.9).
    recipe: Recipe = Recipe(optimizer="adamw", base_lr=5e-4, weight_decay=0.04, weight_decay_end=0.4,
                            warmup_epochs=10, min_lr=1e-6, momentum=0.9, clip_grad=3.0)

    def __post_init__(self):
        require_count(self, "out_dim", "head_hidden", "head_bottleneck")
        require_count(self, "head_layers", maximum=16)
        require_bool(self, "norm_last_layer")
        require_positive(self, "student_temp", "teacher_temp_start", "teacher_temp")
        require_fraction(self, "teacher_momentum", "center_momentum", "teacher_temp_warmup", "freeze_last_layer")

    def teacher_temp_at(self, progress: float) -> float:
        """Linear warm-up from teacher_temp_start to teacher_temp over the first teacher_temp_warmup."""
        if self.teacher_temp_warmup <= 0 or progress >= self.teacher_temp_warmup:
            return self.teacher_temp
        start, end = self.teacher_temp_start, self.teacher_temp
        return start + (end - start) * progress / self.teacher_temp_warmup


# The DINO README's ResNet-50 command: "main_dino.py --arch resnet50 --optimizer sgd --lr 0.03
# --weight_decay 1e-4 --weight_decay_end 1e-4 --global_crops_scale 0.14 1 --local_crops_scale
# 0.05 0.14" (the crop scales are the augmentation's business). It names no teacher temperature, so
# main_dino.py's argument defaults hold: --warmup_teacher_temp 0.04, --teacher_temp 0.04,
# --warmup_teacher_temp_epochs 0, i.e. a constant 0.04 without warm-up (lightly's ResNet-50 DINO
# benchmark, benchmarks/imagenet/resnet50/dino.py, keeps DINOLoss at 0.04 -> 0.04 too). The 0.04 ->
# 0.07 warm-up above is the ViT recipe of the paper's §3.2. Departure: main_dino.py spares biases and
# norms from weight decay under SGD too; the loop's SGD decays every tensor.
RESNET_HYPERPARAMETERS = Hyperparameters(
    teacher_temp_start=0.04, teacher_temp=0.04, teacher_temp_warmup=0.0,
    recipe=replace(Hyperparameters().recipe, optimizer="sgd", base_lr=0.03, weight_decay=1e-4,
                   weight_decay_end=1e-4))


def default_hyperparameters(backbone: str) -> Hyperparameters:
    """The paper trains DINO on ResNet-50 (Figure 4) and on ViT-S/8 (Table 4): each with the
    recipe the DINO authors published for that architecture."""
    return RESNET_HYPERPARAMETERS if backbone.startswith("resnet") else Hyperparameters()


@float32_loss
def dino_loss(
    student_a: torch.Tensor, student_b: torch.Tensor, teacher_a: torch.Tensor, teacher_b: torch.Tensor,
    center: torch.Tensor, student_temp: float = 0.1, teacher_temp: float | torch.Tensor = 0.04,
) -> torch.Tensor:
    """(H(t_a, s_b) + H(t_b, s_a)) / 2 with H(t, s) = -Σ_k t_k log s_k, batch-averaged, in float32.

    student_*, teacher_*: (N, K) head outputs of the two views; center: (K,) or (1, K).
    s = softmax(student / τs); t = softmax((teacher - center) / τt), no gradient.
    """
    if student_a.ndim != 2 or not (student_a.shape == student_b.shape == teacher_a.shape == teacher_b.shape):
        raise ValueError(
            "student_a, student_b, teacher_a, teacher_b must be (N, K) of one shape, got "
            f"{[tuple(t.shape) for t in (student_a, student_b, teacher_a, teacher_b)]}"
        )
    if center.numel() != student_a.shape[1]:
        raise ValueError(f"center must hold K = {student_a.shape[1]} values, got {tuple(center.shape)}")
    if student_temp <= 0 or (not isinstance(teacher_temp, torch.Tensor) and teacher_temp <= 0):
        raise ValueError(f"temperatures must be > 0, got student {student_temp} and teacher {teacher_temp}")
    center = center.reshape(1, -1)
    log_s_a = F.log_softmax(student_a / student_temp, dim=-1)
    log_s_b = F.log_softmax(student_b / student_temp, dim=-1)
    t_a = F.softmax((teacher_a.detach() - center) / teacher_temp, dim=-1)
    t_b = F.softmax((teacher_b.detach() - center) / teacher_temp, dim=-1)
    return 0.5 * ((-t_a * log_s_b).sum(dim=-1).mean() + (-t_b * log_s_a).sum(dim=-1).mean())


class DINOHead(nn.Module):
    """vision_transformer.py DINOHead: MLP -> L2-normalize -> weight-normalized linear (no bias).

    The last layer is w = g · v / ‖v‖ row-wise (nn.utils.weight_norm with dim=0), written out so the
    EMA and the freezing see two plain parameters; its output is computed in float32 (logits)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, bottleneck: int, layers: int,
                 norm_last_layer: bool):
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [bottleneck]
        last = len(dims) - 2
        self.mlp = mlp(*[(dims[i], dims[i + 1], True, None, None if i == last else nn.GELU())
                         for i in range(len(dims) - 1)])
        for m in self.mlp.modules():  # DINOHead._init_weights
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # (K, bottleneck), nn.Linear's default initialization as in DINOHead
        self.last_layer_v = nn.Parameter(nn.Linear(bottleneck, out_dim, bias=False).weight.detach().clone())
        self.last_layer_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not norm_last_layer)

    def forward(self, x: torch.Tensor, freeze_last_layer: bool = False) -> torch.Tensor:
        x = F.normalize(self.mlp(x).float(), dim=-1)  # (N, bottleneck)
        v, g = self.last_layer_v, self.last_layer_g
        if freeze_last_layer:
            v, g = v.detach(), g.detach()
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x, g.float() * F.normalize(v.float(), dim=1))  # (N, K)


class Method(nn.Module):
    """Student (backbone + head, trained) and teacher (their EMA); the teacher backbone is evaluated."""

    # forward reads a Python flag (last layer frozen during the first epoch) that flips once: a CUDA
    # graph captured before the flip would keep the layer frozen, so the loop must not capture.
    capturable = False

    def __init__(self, backbone: nn.Module, feature_dim: int, hp: Hyperparameters = Hyperparameters()):
        super().__init__()
        self.hp = hp
        self.backbone = backbone
        self.head = DINOHead(feature_dim, hp.out_dim, hp.head_hidden, hp.head_bottleneck, hp.head_layers,
                             hp.norm_last_layer)
        # The teacher starts as a copy of the student (main_dino.py load_state_dict) and gets no gradient.
        self.teacher_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, hp.out_dim))
        self.register_buffer("teacher_temp", torch.tensor(hp.teacher_temp_at(0.0)))
        # A plain flag read by forward (a compiled step recompiles once when it flips).
        self._progress = 0.0
        self._freeze_last_layer = hp.freeze_last_layer > 0

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor) -> torch.Tensor:
        check_views(view_a, view_b)
        both = torch.cat([view_a, view_b])  # (2N, C, H, W): main_dino.py runs the global crops together
        student = self.head(self.backbone(both), freeze_last_layer=self._freeze_last_layer)  # (2N, K)
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone(both))  # (2N, K)
        s_a, s_b = student.chunk(2)
        t_a, t_b = teacher.chunk(2)
        loss = dino_loss(s_a, s_b, t_a, t_b, self.center, self.hp.student_temp, self.teacher_temp)
        self._update_center(teacher)
        return loss

    @torch.no_grad()
    def _update_center(self, teacher: torch.Tensor) -> None:
        """center ← m·center + (1 - m)·mean teacher output, global batch (DINOLoss.update_center)."""
        batch_center = all_reduce_mean_(teacher.float().mean(dim=0, keepdim=True))
        self.center.mul_(self.hp.center_momentum).add_(batch_center, alpha=1 - self.hp.center_momentum)

    @torch.no_grad()
    def update_targets(self, progress: float) -> None:
        """Teacher EMA with the cosine momentum at `progress`; the next step's temperature and freezing."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress: must be in [0, 1], got {progress}")
        momentum = cosine_momentum(self.hp.teacher_momentum, progress)
        ema_update_(self.teacher_backbone, self.backbone, momentum)
        ema_update_(self.teacher_head, self.head, momentum)
        self._set_progress(progress)

    def _set_progress(self, progress: float) -> None:
        self._progress = float(progress)
        self.teacher_temp.fill_(self.hp.teacher_temp_at(self._progress))
        self._freeze_last_layer = self._progress < self.hp.freeze_last_layer

    def eval_backbone(self) -> nn.Module:
        return self.teacher_backbone

    def get_extra_state(self):
        return {"progress": self._progress}

    def set_extra_state(self, state) -> None:
        self._set_progress(state["progress"])
