"""Per-sample GPU augmentation (run here on CPU): each op does what it says, parameters are drawn per
sample, and the presets turn exactly the paper's ops on or off."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from training import augment as A
from training.data.batches import Batch


def _real_images(sample_images, n=8, size=32) -> torch.Tensor:
    files = sorted(sample_images.rglob("*.JPEG"))[:: max(1, 600 // n)][:n]
    arrays = [np.asarray(Image.open(f).convert("RGB").resize((size, size))) for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _identity_params(n: int) -> dict:
    params = A.sample_params(n, A.PAPER, torch.Generator().manual_seed(0))
    params.update(box=torch.tensor([[0.5, 0.5, 1.0, 1.0]] * n), angle=torch.zeros(n),
                  flip=torch.zeros(n, dtype=torch.bool), jitter=torch.zeros(n, dtype=torch.bool),
                  gray=torch.zeros(n, dtype=torch.bool), blur=torch.zeros(n, dtype=torch.bool),
                  solarize=torch.zeros(n, dtype=torch.bool))
    return params


ALL_OPS = A.Ops(jitter=True, gray=True, blur=True, solarize=True)


def hwc(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, H, W, 3): the layout of the decoded cache the augmentation reads."""
    return images.permute(0, 2, 3, 1).contiguous()


def _batch(images: torch.Tensor, shard_sizes) -> Batch:
    """A batch whose photos are whole square images (no canvas margin)."""
    n = images.shape[0]
    sizes = torch.tensor([[images.shape[-1], images.shape[-2]]]).expand(n, 2)
    return Batch(hwc(images), torch.arange(n), torch.arange(n), sizes, sizes, torch.arange(n), shard_sizes)


def test_identity_parameters_reproduce_the_image(sample_images):
    images = _real_images(sample_images)
    out = A.apply_params(hwc(images), _identity_params(len(images)), 32, ALL_OPS, normalize=False)
    assert torch.allclose(out, images.float() / 255, atol=1e-5)


def test_flip_mirrors_exactly_the_flipped_samples(sample_images):
    images = _real_images(sample_images)
    params = _identity_params(len(images))
    params["flip"] = torch.arange(len(images)) % 2 == 0
    out = A.apply_params(hwc(images), params, 32, ALL_OPS, normalize=False)
    source = images.float() / 255
    assert torch.allclose(out[0::2], source[0::2].flip(-1), atol=1e-5)
    assert torch.allclose(out[1::2], source[1::2], atol=1e-5)


def test_rotation_by_90_degrees_is_rot90(sample_images):
    images = _real_images(sample_images)
    params = _identity_params(len(images))
    params["angle"] = torch.full((len(images),), math.pi / 2)
    out = A.apply_params(hwc(images), params, 32, ALL_OPS, normalize=False)
    assert torch.allclose(out, torch.rot90(images.float() / 255, 1, (-2, -1)), atol=1e-5)


def test_crop_box_matches_torchvision_resized_crop(sample_images):
    images = _real_images(sample_images, size=48)
    top, left, height, width = 6, 10, 20, 30  # pixels of the 48x48 source
    params = _identity_params(len(images))
    params["box"] = torch.tensor([[(left + width / 2) / 48, (top + height / 2) / 48, width / 48, height / 48]] * len(images))
    out = A.apply_params(hwc(images), params, 32, ALL_OPS, normalize=False)
    reference = TF.resized_crop(images.float() / 255, top, left, height, width, [32, 32], antialias=False)
    # interior pixels: torchvision clamps at the crop edge, the affine map reads the real neighbours
    assert torch.allclose(out[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], atol=1e-5)


def test_color_jitter_equals_torchvision_per_sample_in_each_samples_order(sample_images):
    images = _real_images(sample_images, n=16, size=16).float() / 255
    n = len(images)
    g = torch.Generator().manual_seed(3)
    factors = torch.stack([0.5 + torch.rand(n, generator=g), 0.5 + torch.rand(n, generator=g),
                           0.5 + torch.rand(n, generator=g), 0.4 * torch.rand(n, generator=g) - 0.2], dim=1)
    order = torch.rand(n, 4, generator=g).argsort(dim=1)
    jitter = torch.rand(n, generator=g) < 0.75
    out = A.color_jitter(images.clone(), jitter, factors, order)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(n):
        expected = images[i]
        if jitter[i]:
            for op in order[i].tolist():
                expected = ops[op](expected, float(factors[i, op]))
        assert torch.allclose(out[i], expected, atol=1e-5), f"sample {i}"
    assert not torch.allclose(out[jitter], images[jitter], atol=1e-3)  # it did change the jittered ones


def test_grayscale_gives_equal_channels_only_where_drawn(sample_images):
    images = _real_images(sample_images)
    params = _identity_params(len(images))
    params["gray"] = torch.tensor([True, False] * (len(images) // 2))
    out = A.apply_params(hwc(images), params, 32, ALL_OPS, normalize=False)
    gray = out[params["gray"]]
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    assert torch.allclose(gray[:, 0], TF.rgb_to_grayscale(images[params["gray"]].float() / 255)[:, 0], atol=1e-5)
    color = out[~params["gray"]]
    assert (color[:, 0] - color[:, 1]).abs().max() > 0.05  # real photos are not gray


def test_blur_keeps_flat_images_and_spreads_an_impulse_symmetrically():
    x = torch.zeros(2, 3, 33, 33)
    x[:, :, 16, 16] = 1.0
    out = A.gaussian_blur(x, torch.tensor([True, False]), torch.tensor([1.0, 1.0]))
    assert torch.allclose(out[1], x[1])  # not drawn: untouched
    blurred = out[0, 0]
    assert blurred[16, 16] < 1.0 and blurred[16, 17] > 0
    assert torch.allclose(blurred, blurred.flip(0)) and torch.allclose(blurred, blurred.t())
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(A.gaussian_blur(flat, torch.tensor([True]), torch.tensor([2.0])), flat, atol=1e-6)


def test_solarize_inverts_bright_pixels_of_drawn_samples():
    x = torch.linspace(0, 1, 2 * 3 * 4 * 4).view(2, 3, 4, 4)
    out = A.solarize(x, torch.tensor([True, False]))
    assert torch.equal(out[0], torch.where(x[0] >= 0.5, 1 - x[0], x[0]))
    assert torch.equal(out[1], x[1])


def test_parameters_are_drawn_per_sample_and_each_sample_sees_only_its_own(sample_images):
    image = _real_images(sample_images, n=1)
    batch = image.expand(64, -1, -1, -1).contiguous()
    params = A.sample_params(64, A.PAPER, torch.Generator().manual_seed(1))
    out = A.apply_params(hwc(batch), params, 32, A.Ops.of(A.PAPER), normalize=False)
    flat = out.flatten(1)
    distinct = torch.cdist(flat, flat)[~torch.eye(64, dtype=torch.bool)]
    assert distinct.min() > 1e-3  # no two views of the same image came out alike
    for key in ("angle", "factors", "box"):
        assert params[key].std(dim=0).min() > 0
    for i in (0, 17, 63):  # a sample's output does not depend on its neighbours in the batch
        alone = {k: v[i:i + 1] for k, v in params.items()}
        single = A.apply_params(hwc(batch[i:i + 1]), alone, 32, A.Ops.of(A.PAPER), normalize=False)
        assert torch.allclose(single, out[i:i + 1], atol=1e-5)


def test_probabilities_and_ranges_follow_the_recipe():
    n = 4000
    params = A.sample_params(n, A.PAPER, torch.Generator().manual_seed(2))
    assert params["flip"].float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert params["jitter"].float().mean().item() == pytest.approx(0.8, abs=0.03)
    assert params["gray"].float().mean().item() == pytest.approx(0.2, abs=0.03)
    degrees = params["angle"] * 180 / math.pi
    assert degrees.abs().max() <= 15 and degrees.abs().max() > 14
    cx, cy, w, h = params["box"].unbind(1)
    area = w * h
    assert area.min() >= 0.08 - 1e-6 and area.max() <= 1 + 1e-6
    assert (w <= 1).all() and (h <= 1).all() and (cx - w / 2 >= -1e-6).all() and (cx + w / 2 <= 1 + 1e-6).all()
    ratio = w / h
    assert ratio.min() >= 3 / 4 - 1e-5 and ratio.max() <= 4 / 3 + 1e-5


def test_only_c_changes_no_colours(sample_images):
    recipe_a, recipe_b = A.view_recipes("only_c", "simclr")
    ops = A.Ops.of(recipe_a, recipe_b)
    assert ops == A.Ops(jitter=False, gray=False, blur=False, solarize=False)
    flat = torch.empty(16, 3, 32, 32, dtype=torch.uint8)
    flat[:, 0], flat[:, 1], flat[:, 2] = 200, 40, 90
    out = A.apply_params(hwc(flat), A.sample_params(16, recipe_a, torch.Generator().manual_seed(0)), 32, ops,
                         normalize=False)
    assert torch.allclose(out, flat.float() / 255, atol=1e-6)  # crops of a flat colour stay that colour
    params = A.sample_params(1000, recipe_a, torch.Generator().manual_seed(0))
    assert (params["angle"] == 0).all() and not params["flip"].any()
    images = _real_images(sample_images)
    out = A.apply_params(hwc(images), A.sample_params(len(images), recipe_a, torch.Generator().manual_seed(4)), 32, ops,
                         normalize=False)
    for i in range(len(images)):  # values stay within the source's own range per channel (bilinear mixes only)
        source = images[i].float() / 255
        assert (out[i].amax((1, 2)) <= source.amax((1, 2)) + 1e-6).all()
        assert (out[i].amin((1, 2)) >= source.amin((1, 2)) - 1e-6).all()


def test_presets_switch_exactly_the_papers_ops():
    assert A.Ops.of(*A.view_recipes("paper", "simclr")) == A.Ops(jitter=True, gray=True, blur=False, solarize=False)
    assert A.Ops.of(*A.view_recipes("gray_s", "simclr")) == A.Ops(jitter=True, gray=False, blur=False, solarize=False)
    assert A.Ops.of(*A.view_recipes("color_jitter", "simclr")) == A.Ops(jitter=False, gray=False, blur=False,
                                                                          solarize=False)
    paper = A.view_recipes("paper", "simclr")[0]
    assert A.view_recipes("color_jitter", "simclr")[0].rotation == paper.rotation > 0
    byol_a, byol_b = A.view_recipes("method", "byol")
    assert (byol_a.blur_p, byol_a.solarize_p, byol_b.blur_p, byol_b.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    with pytest.raises(ValueError, match="aug: 'bogus'"):
        A.view_recipes("bogus", "simclr")


def test_pair_augment_is_a_function_of_seed_step_and_shard(sample_images):
    images = _real_images(sample_images)
    augment = A.PairAugment(A.PAPER, A.PAPER, 32, seed=5, device=torch.device("cpu"))
    both = _batch(images, [(0, 4), (1, 4)])
    a1, b1 = augment(both, step=3)
    a2, b2 = augment(both, step=3)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.allclose(a1, b1)  # the two views of a row differ
    a3, _ = augment(both, step=4)
    assert not torch.allclose(a1, a3)
    # shard 1's half is what a process holding only shard 1 draws (DDP and one process agree)
    a_half, _ = augment(_batch(images[4:], [(1, 4)]), step=3)
    assert torch.allclose(a_half, a1[4:])
    assert a1.is_contiguous(memory_format=torch.channels_last)
