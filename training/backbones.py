"""Backbones: ResNet-50 (the paper's, §4) and ViT-S/8 (DINO's ablation, §4.4.2), plus small
variants of each so CPU tests run in seconds.

Stem. The reproduction uses torchvision's ImageNet stem (7x7 stride-2 conv + max-pool): the paper
says "ResNet50 ... input 64x64" and nothing about changing it, so 64x64 inputs reach layer 4 at
2x2. The small-image stem (3x3 stride-1 conv, no max-pool, as SimCLR's CIFAR variant) keeps 8x8
there and costs about 16x the compute; it is an option (`stem="small"`), not the default.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.vision_transformer import VisionTransformer

from pair_manifest.protocol import BACKBONE, BACKBONES, RESOLUTION, STEMS

RESNETS = {"resnet50": (resnet50, 2048), "resnet18": (resnet18, 512)}
# name -> (patch, hidden, depth, heads, mlp). ViT-S/8 as in DINO (Caron et al. 2021, Table 8).
VITS = {"vit_s8": (8, 384, 12, 6, 1536), "vit_tiny8": (8, 64, 2, 2, 128)}
if set(RESNETS) | set(VITS) != set(BACKBONES):
    raise ImportError(f"training.backbones builds {sorted({*RESNETS, *VITS})}, the protocol names {BACKBONES}")


@dataclass(frozen=True)
class BackboneSpec:
    name: str = BACKBONE
    stem: str = "imagenet"  # ResNets only
    image_size: int = RESOLUTION  # ViTs only: the position embedding is sized for it


def build_backbone(spec: BackboneSpec) -> tuple[nn.Module, int]:
    """The backbone without its classifier, and the width of the features it returns (N, D)."""
    if spec.name in RESNETS:
        if spec.stem not in STEMS:
            raise ValueError(f"stem: '{spec.stem}' is not one of {', '.join(STEMS)}")
        constructor, width = RESNETS[spec.name]
        model = constructor(weights=None)
        if spec.stem == "small":
            model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            model.maxpool = nn.Identity()
        model.fc = nn.Identity()
        return model, width
    if spec.name in VITS:
        patch, hidden, depth, heads, mlp = VITS[spec.name]
        if spec.image_size % patch:
            raise ValueError(f"image_size: {spec.image_size} is not a multiple of the patch size {patch}")
        model = VisionTransformer(
            image_size=spec.image_size, patch_size=patch, num_layers=depth, num_heads=heads,
            hidden_dim=hidden, mlp_dim=mlp,
        )
        model.heads = nn.Identity()  # forward returns the class token, (N, hidden)
        return model, hidden
    raise ValueError(f"backbone: '{spec.name}' is not one of {', '.join([*RESNETS, *VITS])}")


@torch.no_grad()
def feature_width(model: nn.Module, image_size: int) -> int:
    """Width of the features a backbone returns, found by running it once."""
    was_training = model.training
    model.eval()
    width = model(torch.zeros(1, 3, image_size, image_size)).shape[1]
    model.train(was_training)
    return int(width)
