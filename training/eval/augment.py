"""Per-sample random resized crop + horizontal flip of a whole batch, on the batch's device.

Fine-tuning needs augmentation at GPU speed. torchvision's v2 transforms applied to a batch draw
one set of parameters for the whole batch (DESIGN.md, "Speed"), so each sample's crop box is drawn
here and all boxes are resampled in one `roi_align` call (one bilinear sample per output pixel, as a
plain bilinear resize).
Crop parameters follow torchvision's RandomResizedCrop: area fraction ~ U(scale), log aspect
ratio ~ U(log 3/4, log 4/3), the box clamped to the image instead of retried.
"""
from __future__ import annotations

import math

import torch
from torchvision.ops import roi_align


def random_resized_crop_flip(images: torch.Tensor, size: int, scale: tuple[float, float] = (0.25, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3),
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, 3, H, W) float -> (N, 3, size, size) float, each sample with its own crop and flip."""
    n, _, height, width = images.shape
    device = images.device

    def uniform(low, high):
        return low + (high - low) * torch.rand(n, device=device, generator=generator)

    area = uniform(*scale) * height * width
    log_ratio = uniform(math.log(ratio[0]), math.log(ratio[1]))
    aspect = log_ratio.exp()
    crop_w = (area * aspect).sqrt().clamp(1, width)
    crop_h = (area / aspect).sqrt().clamp(1, height)
    x0 = uniform(0, 1) * (width - crop_w)
    y0 = uniform(0, 1) * (height - crop_h)
    boxes = torch.stack([torch.arange(n, device=device, dtype=images.dtype), x0, y0, x0 + crop_w, y0 + crop_h], 1)
    crops = roi_align(images, boxes.to(images.dtype), output_size=(size, size), spatial_scale=1.0,
                      sampling_ratio=1, aligned=True)
    flip = torch.rand(n, device=device, generator=generator) < 0.5
    return torch.where(flip.view(n, 1, 1, 1), crops.flip(-1), crops)
