"""Per-sample data augmentation on the GPU, in batches.

torchvision's v2 transforms applied to a batch tensor draw ONE set of random parameters for the
whole batch (every image cropped, flipped and jittered alike), which would make the two views of a
batch share their augmentation and weaken every method. Here every parameter is drawn per sample,
and the work is a handful of batched kernels:

- geometry (training/crop.py): random resized crop of the whole photo, rotation and horizontal
  flip are one affine map per sample (output -> flip -> rotate -> crop box in the photo), read by
  one bilinear gather from the uint8 cache. Where torchvision's sequential pipeline fills the
  corners of a rotated crop with black (fill=0), the folded map reads the real pixels around the
  crop, and beyond the photo's edge it repeats the edge pixels (border padding). Same distribution
  of crops (relative to the photo), angles and flips;
- colour jitter: torchvision's ColorJitter per sample, exactly (same formulas, a random order of
  the four ops per sample, a clamp to [0, 1] after each). Brightness, contrast and saturation are
  per-sample 3x3 colour matrices (plus an offset for contrast) applied by one batched matmul per
  stage; hue is torchvision's HSV shift, in closed form with a per-sample shift;
- grayscale by a per-sample mask (torchvision's ITU-R 601-2 weights), Gaussian blur with a
  per-sample sigma (one grouped convolution), solarization by a per-sample mask;
- normalization with the ImageNet mean and std, output in channels_last.

Presets (paper §3.2 and the ablations of §4.4.1, Fig. 5):
- `paper`: random resized crop, rotation, horizontal flip, colour jitter, grayscale;
- `gray_s`: `paper` without grayscale; `color_jitter`: without colour jitter and grayscale;
- `only_c`: random resized crop only;
- `method`: `paper` plus the Gaussian blur and solarization of the method's own recipe, per view
  (BYOL, DINO, VICReg, Barlow Twins: blur 1.0 / 0.1, solarize 0 / 0.2; SimCLR, MoCo v2, SimSiam,
  SwAV: blur 0.5 on both views).
Values follow MoCo v2 / SimCLR (the paper: "consistent with ... MoCo-v2 and SimCLR"): crop scale
(0.08, 1), ratio (3/4, 4/3); jitter (0.4, 0.4, 0.4, 0.1) with p = 0.8; grayscale p = 0.2; flip 0.5.
Rotation: the paper names it but gives no range. We draw the angle uniformly in [-15, 15] degrees,
every view: small enough that objects stay upright (the transfer sets, CIFAR and STL-10, are upright
photographs, and large rotations change what an image shows), large enough to be a real
geometric nuisance beyond crop and flip; 15 degrees is the usual torchvision `RandomRotation`
setting for natural images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from pair_manifest.protocol import AUGMENTATIONS
from training.crop import affine_theta, sample_boxes, sample_views

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision.transforms.functional.rgb_to_grayscale
_CONSTANTS: dict[tuple, torch.Tensor] = {}


def constant(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """A small constant on `like`'s device, made once: a fresh `torch.tensor(..., device="cuda")` per
    step is a pageable host-to-device copy, which waits for the GPU and would stall the pipeline."""
    key = (values, like.device, like.dtype)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return _CONSTANTS[key]


@dataclass(frozen=True)
class ViewRecipe:
    """Probabilities and ranges for one view. A probability of 0 turns an op off."""

    crop_scale: tuple[float, float] = (0.08, 1.0)  # fraction of the source area
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # width / height of the crop box
    rotation: float = 15.0  # degrees, uniform in [-rotation, rotation]; 0 = off
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1  # fraction of a full turn, at most 0.5
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # pixels of a 224-pixel image (SimCLR App. A); scaled to the output
    solarize_p: float = 0.0

    def __post_init__(self):
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale: {self.crop_scale} must satisfy 0 < low <= high <= 1")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio: {self.crop_ratio} must satisfy 0 < low <= high")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: {getattr(self, name)} is not a probability")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue: {self.hue} must be in [0, 0.5]")
        if min(self.brightness, self.contrast, self.saturation, self.rotation) < 0:
            raise ValueError("brightness, contrast, saturation and rotation must be >= 0")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma: {self.blur_sigma} must satisfy 0 < low <= high")


PAPER = ViewRecipe()
PRESETS = {
    "paper": PAPER,
    "gray_s": replace(PAPER, grayscale_p=0.0),
    "color_jitter": replace(PAPER, jitter_p=0.0, grayscale_p=0.0),
    "only_c": replace(PAPER, rotation=0.0, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0),
}
# (blur_p, solarize_p) of view 1 and view 2 in each method's own recipe.
METHOD_BLUR_SOLARIZE = {
    "simclr": ((0.5, 0.0), (0.5, 0.0)),  # SimCLR App. A (ImageNet): blur p = 0.5
    "mocov2": ((0.5, 0.0), (0.5, 0.0)),  # MoCo v2 `--aug-plus`: GaussianBlur([.1, 2.]) p = 0.5
    "simsiam": ((0.5, 0.0), (0.5, 0.0)),  # SimSiam main_simsiam.py, as MoCo v2
    "swav": ((0.5, 0.0), (0.5, 0.0)),  # SwAV PILRandomGaussianBlur(p=0.5)
    "byol": ((1.0, 0.0), (0.1, 0.2)),  # BYOL Table 6
    "dino": ((1.0, 0.0), (0.1, 0.2)),  # DINO DataAugmentationDINO, global crops 1 and 2
    "vicreg": ((1.0, 0.0), (0.1, 0.2)),  # VICReg augmentations.TrainTransform
    "barlow_twins": ((1.0, 0.0), (0.1, 0.2)),  # Barlow Twins main.py Transform
}
AUG_CHOICES = AUGMENTATIONS  # the presets above and "method"
if set(PRESETS) | {"method"} != set(AUGMENTATIONS):
    raise ImportError(f"training.augment defines {sorted(PRESETS)} + method, the protocol names {AUGMENTATIONS}")


def view_recipes(preset: str, method: str) -> tuple[ViewRecipe, ViewRecipe]:
    """The recipes of view 1 and view 2 for an `--aug` preset and a method."""
    if preset in PRESETS:
        return PRESETS[preset], PRESETS[preset]
    if preset == "method":
        if method not in METHOD_BLUR_SOLARIZE:
            raise ValueError(f"aug: no blur/solarization recipe is known for method '{method}'")
        (blur_a, sol_a), (blur_b, sol_b) = METHOD_BLUR_SOLARIZE[method]
        return (replace(PAPER, blur_p=blur_a, solarize_p=sol_a), replace(PAPER, blur_p=blur_b, solarize_p=sol_b))
    raise ValueError(f"aug: '{preset}' is not one of {', '.join(AUG_CHOICES)}")


def seed_for(*numbers: int) -> int:
    """A well-mixed 63-bit seed from integers (run seed, step, shard ...): numpy's SeedSequence."""
    state = np.random.SeedSequence([int(n) for n in numbers]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def sample_params(n: int, recipe: ViewRecipe, generator: torch.Generator,
                  aspect: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Random parameters of n views, drawn on the generator's device; `aspect` (n,) is each photo's
    width / height (the crop follows torchvision's sampler on the photo). Every draw happens whatever
    the recipe (a disabled op draws and ignores), so the stream of random numbers is fixed per call."""
    device = generator.device

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, device=device)

    box = sample_boxes(n, recipe.crop_scale, recipe.crop_ratio, generator, aspect)  # torchvision's crop
    angle = uniform(-recipe.rotation, recipe.rotation, n) * (math.pi / 180.0)
    flip = torch.rand(n, generator=generator, device=device) < recipe.flip_p
    jitter = torch.rand(n, generator=generator, device=device) < recipe.jitter_p
    factors = torch.stack([
        uniform(max(0.0, 1 - recipe.brightness), 1 + recipe.brightness, n),
        uniform(max(0.0, 1 - recipe.contrast), 1 + recipe.contrast, n),
        uniform(max(0.0, 1 - recipe.saturation), 1 + recipe.saturation, n),
        uniform(-recipe.hue, recipe.hue, n),
    ], dim=1)  # (n, 4): brightness, contrast, saturation, hue
    order = torch.rand(n, 4, generator=generator, device=device).argsort(dim=1)  # ColorJitter's random order
    gray = torch.rand(n, generator=generator, device=device) < recipe.grayscale_p
    blur = torch.rand(n, generator=generator, device=device) < recipe.blur_p
    sigma = uniform(*recipe.blur_sigma, n)
    solarize = torch.rand(n, generator=generator, device=device) < recipe.solarize_p
    return dict(box=box, angle=angle, flip=flip, jitter=jitter,
                factors=factors, order=order, gray=gray, blur=blur, sigma=sigma, solarize=solarize)


def concat_params(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_hue (HSV hue + shift, modulo one turn) with a per-sample shift, written
    in closed form: max and min of each pixel stay, the hue sextant moves. x: (n, 3, H, W) in [0, 1]."""
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    r, g, b = x.unbind(dim=1)
    hue = torch.where(maxc == r, torch.remainder((g - b) / safe, 6.0),
                      torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))  # sextants, [0, 6)
    hue = torch.remainder(hue + 6.0 * shift.view(-1, 1, 1), 6.0)
    k = torch.remainder(constant((5.0, 3.0, 1.0), x).view(1, 3, 1, 1)
                        + hue.unsqueeze(1), 6.0)
    return maxc.unsqueeze(1) - chroma.unsqueeze(1) * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


def color_jitter(x: torch.Tensor, jitter: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """x: (n, 3, H, W) in [0, 1]. Four stages; at stage k sample i applies op order[i, k]."""
    n = x.shape[0]
    weights = constant(GRAY_WEIGHTS, x)
    eye = torch.eye(3, dtype=x.dtype, device=x.device).expand(n, 3, 3)
    to_gray = weights.expand(3, 3)  # every row = the gray weights: M @ rgb = gray in all channels
    b, c, s, hue = (f.view(n, 1, 1) for f in factors.unbind(1))
    # hue's matrix is the identity: it is applied after the matrix step, where chosen
    candidates = torch.stack([b * eye, c * eye, s * eye + (1 - s) * to_gray, eye], dim=1)
    pixels = x.reshape(n, 3, -1)
    for k in range(4):
        op = order[:, k]
        matrix = candidates[torch.arange(n, device=x.device), op]  # (n, 3, 3)
        matrix = torch.where(jitter.view(n, 1, 1), matrix, eye)
        # contrast blends with the mean gray level of the image as it is at this stage
        mean_gray = torch.einsum("c,ncp->n", weights, pixels) / pixels.shape[-1]
        offset = torch.where(jitter & (op == 1), (1 - c.view(n)) * mean_gray, torch.zeros_like(mean_gray))
        pixels = torch.baddbmm(offset.view(n, 1, 1).expand(n, 3, 1), matrix, pixels).clamp_(0.0, 1.0)
        shifted = adjust_hue(pixels.view_as(x), hue.view(n)).reshape(n, 3, -1)
        pixels = torch.where((jitter & (op == 3)).view(n, 1, 1), shifted, pixels)
    return pixels.view_as(x)


def grayscale(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = constant(GRAY_WEIGHTS, x).view(1, 3, 1, 1)
    gray = (x * weights).sum(dim=1, keepdim=True).expand_as(x)
    return torch.where(mask.view(-1, 1, 1, 1), gray, x)


def blur_kernel_size(out_size: int) -> int:
    """SimCLR App. A: a kernel 10% of the image side, odd, at least 3."""
    return max(3, 2 * round(0.05 * out_size) + 1)


def gaussian_blur(x: torch.Tensor, mask: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma (pixels), reflect padding (torchvision's);
    samples outside `mask` get a unit impulse kernel, i.e. are left as they are."""
    n, ch, height, width = x.shape
    size = blur_kernel_size(height)
    radius = size // 2
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-offsets.view(1, -1) ** 2 / (2 * sigma.view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    impulse = (offsets == 0).to(x.dtype).expand(n, size)
    kernel = torch.where(mask.view(n, 1), kernel, impulse).repeat_interleave(ch, dim=0)  # (n*ch, K)
    padded = F.pad(x.reshape(1, n * ch, height, width), (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(n * ch, 1, 1, size), groups=n * ch)
    out = F.conv2d(out, kernel.view(n * ch, 1, size, 1), groups=n * ch)
    return out.view(n, ch, height, width)


def solarize(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Invert pixels >= 0.5 (PIL/torchvision solarize, threshold 128/255 as BYOL)."""
    return torch.where(mask.view(-1, 1, 1, 1) & (x >= 0.5), 1.0 - x, x)


@dataclass(frozen=True)
class Ops:
    """Which ops run at all for a batch (static per run: a preset turns ops off entirely)."""

    jitter: bool = True
    gray: bool = True
    blur: bool = False
    solarize: bool = False

    @staticmethod
    def of(*recipes: ViewRecipe) -> "Ops":
        return Ops(jitter=any(r.jitter_p > 0 for r in recipes), gray=any(r.grayscale_p > 0 for r in recipes),
                   blur=any(r.blur_p > 0 for r in recipes), solarize=any(r.solarize_p > 0 for r in recipes))


def apply_params(images: torch.Tensor, params: dict[str, torch.Tensor], out_size: int, ops: Ops,
                 normalize: bool = True, index: torch.Tensor | None = None,
                 sizes: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (M, H, W, 3) photos -> float (n, 3, out_size, out_size) augmented views.

    View i is taken from `images[index[i]]` (default: image i) whose valid box is `sizes[i]` =
    (w, h) pixels at its top-left (default: the whole image): the cache's canvases, or plain images
    (height x width x RGB, as Pillow and the cache hold them)."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"images: expected uint8 (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
    n = params["box"].shape[0]
    if index is None:
        index = torch.arange(n, device=images.device)
    if sizes is None:
        sizes = torch.tensor([[images.shape[2], images.shape[1]]], device=images.device).expand(n, 2)
    theta = affine_theta(params["box"], params["angle"], params["flip"])
    x = sample_views(images, index, sizes, theta, out_size)
    if ops.jitter:
        x = color_jitter(x, params["jitter"], params["factors"], params["order"])
    if ops.gray:
        x = grayscale(x, params["gray"])
    if ops.blur:
        x = gaussian_blur(x, params["blur"], params["sigma"] * (out_size / 224.0))
    if ops.solarize:
        x = solarize(x, params["solarize"])
    if normalize:
        mean = constant(IMAGENET_MEAN, x).view(1, 3, 1, 1)
        std = constant(IMAGENET_STD, x).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last)


class PairAugment:
    """Turns a step's batch (rows of the decoded cache) into two normalized views.

    Randomness is a function of (seed, step, shard) only: a resumed run draws exactly what the
    uninterrupted run drew, and a run split over W processes draws what one process holding the
    same shards draws."""

    def __init__(self, recipe_a: ViewRecipe, recipe_b: ViewRecipe, out_size: int, seed: int,
                 device: torch.device):
        self.recipe_a, self.recipe_b = recipe_a, recipe_b
        self.ops = Ops.of(recipe_a, recipe_b)
        self.out_size, self.seed = out_size, seed
        self.generator = torch.Generator(device=device)

    def params(self, step: int, shard_sizes: list[tuple[int, int]], aspect_a: torch.Tensor | None = None,
               aspect_b: torch.Tensor | None = None) -> tuple[dict, dict]:
        """Parameters of both views for shards [(shard id, rows in this batch), ...]; `aspect_*`
        (rows,) are the photos' width / height, in batch order."""
        parts_a, parts_b, start = [], [], 0
        for shard, size in shard_sizes:
            rows = slice(start, start + size)
            start += size
            self.generator.manual_seed(seed_for(self.seed, 1, step, shard))
            parts_a.append(sample_params(size, self.recipe_a, self.generator,
                                         None if aspect_a is None else aspect_a[rows]))
            parts_b.append(sample_params(size, self.recipe_b, self.generator,
                                         None if aspect_b is None else aspect_b[rows]))
        return concat_params(parts_a), concat_params(parts_b)

    def __call__(self, batch, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Both views of a `training.data.batches.Batch`."""
        sizes = torch.cat([batch.size_a, batch.size_b]).to(self.generator.device, torch.float32)
        aspect = sizes[:, 0] / sizes[:, 1]
        n = batch.index_a.shape[0]
        params_a, params_b = self.params(step, batch.shard_sizes, aspect[:n], aspect[n:])
        both = apply_params(batch.source, concat_params([params_a, params_b]), self.out_size, self.ops,
                            index=torch.cat([batch.index_a, batch.index_b]), sizes=sizes)
        return both[:n], both[n:]
