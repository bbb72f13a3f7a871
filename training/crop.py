"""The geometric part of a view: a random resized crop of the WHOLE photo, rotated and flipped, read
from the photo's canvas in the decoded cache by one bilinear gather per output pixel.

Photos sit in the cache whole (training/data/decode.py): each at the top-left of a fixed square
canvas, its shorter side at SOURCE_SCALE x the training resolution, with its valid size (w, h)
recorded. So a crop covers what torchvision's `RandomResizedCrop` on the decoded photo covers,
borders included, and most views are downsampled from the source rather than upsampled.

- `sample_boxes`: torchvision's `RandomResizedCrop.get_params` for a photo of aspect w/h, per
  sample, in fractions of the photo: up to 10 tries of (area fraction ~ U(scale), log-uniform
  ratio in pixels); the first box that fits wins; else the whole photo clamped to the ratio range.
- `affine_theta`: output -> flip -> rotate -> crop box, as an affine map in coordinates normalized
  to the photo ([-1, 1] across its valid box; the `F.affine_grid` convention). Rotation acts on the
  output square (torchvision rotates the resized crop), so it is a true rotation there.
- `sample_views`: bilinear interpolation at the mapped points, reading only 4 source pixels per
  output pixel straight from the uint8 cache (no float copy of whole canvases; the canvases are
  height x width x RGB, so one index reads a pixel's three channels); coordinates are
  clamped to the photo's valid box (border padding: a box may end exactly at the photo's edge,
  where the last half pixel would otherwise blend in the empty canvas).
"""
from __future__ import annotations

import math

import torch

CROP_TRIES = 10  # torchvision RandomResizedCrop.get_params


def sample_boxes(n: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator,
                 aspect: torch.Tensor | None = None) -> torch.Tensor:
    """(n, 4) boxes (cx, cy, w, h) in fractions of each photo; `aspect` (n,) is each photo's
    width / height (default 1: square photos)."""
    device = generator.device

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, device=device)

    aspect = torch.ones(n, device=device) if aspect is None else aspect.to(device=device, dtype=torch.float32)
    area = uniform(*scale, n, CROP_TRIES)
    log_ratio = uniform(math.log(ratio[0]), math.log(ratio[1]), n, CROP_TRIES)
    pixel_ratio = torch.exp(log_ratio)  # width / height of the box in pixels
    a = aspect.view(n, 1)
    w_try, h_try = torch.sqrt(area * pixel_ratio / a), torch.sqrt(area * a / pixel_ratio)
    fits = (w_try <= 1.0) & (h_try <= 1.0)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)
    any_fit = fits.any(dim=1)
    low, high = ratio
    # the fallback: the whole photo, cut to the nearest allowed ratio
    fallback_w = torch.where(aspect > high, high / aspect, torch.ones_like(aspect))
    fallback_h = torch.where(aspect < low, aspect / low, torch.ones_like(aspect))
    w = torch.where(any_fit, w_try.gather(1, first).squeeze(1), fallback_w)
    h = torch.where(any_fit, h_try.gather(1, first).squeeze(1), fallback_h)
    cx = w / 2 + (1 - w) * torch.rand(n, generator=generator, device=device)
    cy = h / 2 + (1 - h) * torch.rand(n, generator=generator, device=device)
    return torch.stack([cx, cy, w, h], dim=1)


def affine_theta(box: torch.Tensor, angle: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """(n, 2, 3) maps from output coordinates to photo coordinates (both in [-1, 1], as
    `F.affine_grid`): flip, then rotate, then scale and shift into the crop box."""
    cx, cy, w, h = box.unbind(1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    sign = torch.where(flip, -1.0, 1.0).to(box.dtype)
    return torch.stack([
        torch.stack([w * cos * sign, -w * sin, 2 * cx - 1], dim=1),
        torch.stack([h * sin * sign, h * cos, 2 * cy - 1], dim=1),
    ], dim=1)


def sample_views(source: torch.Tensor, index: torch.Tensor, sizes: torch.Tensor, theta: torch.Tensor,
                 out_size: int) -> torch.Tensor:
    """float (n, 3, out, out) in [0, 1]: view i is photo `source[index[i]]` (uint8 (M, H, W, 3)
    canvases; its valid box `sizes[i]` = (w, h) pixels at the top-left) seen through `theta[i]`,
    bilinear (`F.grid_sample` with align_corners=False and border padding, inside the photo)."""
    if source.dtype != torch.uint8 or source.dim() != 4 or source.shape[-1] != 3:
        raise ValueError(f"source: expected uint8 (M, H, W, 3) canvases, got {source.dtype} {tuple(source.shape)}")
    n, device = index.shape[0], source.device
    height, width = source.shape[1:3]
    centres = (torch.arange(out_size, device=device, dtype=torch.float32) + 0.5) * (2.0 / out_size) - 1.0
    gy, gx = torch.meshgrid(centres, centres, indexing="ij")
    gx, gy = gx.reshape(1, -1), gy.reshape(1, -1)  # (1, P)
    # The map written out element by element (not as a batched matmul, whose rounding would depend
    # on the batch size: a sample must come out the same alone, in a batch, or on another rank).
    t = theta.to(torch.float32).reshape(n, 6).unsqueeze(-1).unbind(1)  # six (n, 1) coefficients
    x = t[0] * gx + t[1] * gy + t[2]  # (n, P) photo-normalized
    y = t[3] * gx + t[4] * gy + t[5]
    w = sizes[:, 0].to(torch.float32).view(n, 1)
    h = sizes[:, 1].to(torch.float32).view(n, 1)
    # Pixel coordinates (pixel centres at integers), clamped to the photo as grid_sample's border
    # padding clamps them; the bilinear weights of the right/lower neighbours are then 0 wherever
    # those neighbours lie outside the photo, so they need no clamp of their own.
    px = torch.minimum(((x + 1) * (0.5 * w) - 0.5).clamp_min_(0), w - 1)
    py = torch.minimum(((y + 1) * (0.5 * h) - 0.5).clamp_min_(0), h - 1)
    x0, y0 = px.floor(), py.floor()
    fx, fy = (px - x0).unsqueeze(1), (py - y0).unsqueeze(1)  # (n, 1, P) bilinear weights
    pixels = source.reshape(-1, 3)  # one row per pixel of every canvas: RGB read with one index
    top_left = index.to(device=device, dtype=torch.long).view(n, 1) * (height * width) \
        + (y0 * width + x0).long()  # (n, P); exact in float32: a canvas has at most 2^24 pixels
    two = torch.arange(2, device=device)  # made on the device: no host-to-device copy per step
    steps = (two.view(2, 1) * width + two.view(1, 2)).view(4, 1, 1)  # 0, 1, width, width + 1
    corners = (top_left + steps).clamp_(max=pixels.shape[0] - 1)  # (4, n, P); weightless neighbours of
    # the very last pixel stay inside the tensor
    rgb = pixels.index_select(0, corners.view(-1)).view(4, n, -1, 3)
    # (4, n, 3, P) float in one copy: the blends then run along P
    rgb = rgb.transpose(2, 3).to(torch.float32, memory_format=torch.contiguous_format)
    top = torch.lerp(rgb[0], rgb[1], fx)
    bottom = torch.lerp(rgb[2], rgb[3], fx)
    return torch.lerp(top, bottom, fy).mul_(1.0 / 255.0).view(n, 3, out_size, out_size)
