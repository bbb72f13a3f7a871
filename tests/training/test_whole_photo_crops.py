"""Views are crops of the WHOLE photo, as the paper's pipeline (torchvision's RandomResizedCrop on
the decoded photo) takes them: the cache keeps each photo whole with its aspect ratio, the crop's
area and ratio relative to the photo follow torchvision's sampler on the photo's original size, at
64 px most views are downsampled from real ILSVRC photos, and a photo's borders appear in views."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp
from torchvision.transforms import RandomResizedCrop

from training import augment as A
from training.data.decode import SOURCE_SCALE, canvas_side, decode_photo

N = 4000


@pytest.fixture(scope="module")
def ilsvrc_photos(sample_images) -> list[tuple[bytes, tuple[int, int]]]:
    """The bundled full-resolution ILSVRC photos (landscape and portrait, 300-555 px): (bytes, size)."""
    photos = []
    for path in sorted(sample_images.rglob("*.JPEG")):
        with Image.open(path) as image:
            if min(image.size) >= 300:
                photos.append((path.read_bytes(), image.size))
    assert len(photos) >= 20 and any(w < h for _, (w, h) in photos) and any(w > h for _, (w, h) in photos)
    return photos


def _draws(photos, resolution: int, seed: int = 0):
    """N views' crop parameters over photos picked at random: (which photo, its cached size, boxes)."""
    cached = [decode_photo(data, None, resolution)[1] for data, _ in photos]
    generator = torch.Generator().manual_seed(seed)
    which = torch.randint(len(photos), (N,), generator=generator)
    sizes = torch.tensor(cached, dtype=torch.float32)[which]
    params = A.sample_params(N, A.PAPER, generator, aspect=sizes[:, 0] / sizes[:, 1])
    return which, sizes, params["box"]


def test_cache_keeps_the_whole_photo_with_its_aspect_ratio(ilsvrc_photos):
    for data, (width, height) in ilsvrc_photos:
        canvas, (w, h) = decode_photo(data, None, 64)
        assert canvas.shape == (canvas_side(64), canvas_side(64), 3)
        assert min(w, h) == SOURCE_SCALE * 64 or max(w, h) == canvas_side(64)  # whole photo, scaled to fit
        assert abs(w / h - width / height) < 0.02
        assert canvas[h:].sum() == 0 and canvas[:, w:].sum() == 0  # the rest of the canvas is empty
        assert canvas[:h, :w].mean() > 5


def test_crop_area_and_ratio_relative_to_the_photo_follow_torchvisions_sampler(ilsvrc_photos):
    which, _, box = _draws(ilsvrc_photos, 64)
    originals = torch.tensor([size for _, size in ilsvrc_photos], dtype=torch.float32)[which]  # (W, H)
    ours_area = (box[:, 2] * box[:, 3]).numpy()
    ours_ratio = (box[:, 2] * originals[:, 0] / (box[:, 3] * originals[:, 1])).numpy()  # width / height in pixels
    ours_centre = box[:, 0].numpy()
    torch.manual_seed(1)
    area, ratio, centre = [], [], []
    sampler = RandomResizedCrop(64, scale=A.PAPER.crop_scale, ratio=A.PAPER.crop_ratio)
    for index in which.tolist():
        width, height = ilsvrc_photos[index][1]
        top, left, h, w = sampler.get_params(torch.empty(1, height, width), sampler.scale, sampler.ratio)
        area.append(h * w / (height * width))
        ratio.append(w / h)
        centre.append((left + w / 2) / width)
    for name, ours, reference in (("area", ours_area, area), ("ratio", ours_ratio, ratio),
                                  ("centre", ours_centre, centre)):
        result = ks_2samp(ours, np.asarray(reference))
        assert result.pvalue > 0.01, f"{name}: KS statistic {result.statistic:.3f}, p = {result.pvalue:.4f}"


def test_most_views_at_64_px_are_downsampled_from_ilsvrc_photos(ilsvrc_photos):
    _, sizes, box = _draws(ilsvrc_photos, 64)
    source_w, source_h = box[:, 2] * sizes[:, 0], box[:, 3] * sizes[:, 1]  # the crop in cached pixels
    downsampled = ((source_w >= 64) & (source_h >= 64)).float().mean().item()
    assert downsampled >= 0.90, f"only {downsampled:.1%} of views have >= 64 source pixels each way"
    assert torch.median(torch.sqrt(source_w * source_h / 64 ** 2)).item() > 1.5  # source pixels per output pixel


def test_a_photos_border_appears_in_views(ilsvrc_photos):
    """A landscape photo with green bands on its left and right tenth: a centre-square cache would
    never show them; crops of the whole photo do, in some views and not in all."""
    data, (width, height) = next(p for p in ilsvrc_photos if p[1][0] >= 1.3 * p[1][1])
    with Image.open(io.BytesIO(data)) as image:
        framed = np.asarray(image.convert("RGB")).copy()
    band = width // 10
    framed[:, :band] = framed[:, -band:] = (0, 255, 0)
    encoded = io.BytesIO()
    Image.fromarray(framed).save(encoded, format="PNG")
    canvas, size = decode_photo(encoded.getvalue(), None, 32)
    images = torch.from_numpy(canvas).unsqueeze(0)
    recipe = A.view_recipes("only_c", "simclr")[0]  # crop only: colours stay as they are
    generator = torch.Generator().manual_seed(0)
    n = 400
    sizes = torch.tensor([size], dtype=torch.float32).expand(n, 2)
    params = A.sample_params(n, recipe, generator, aspect=sizes[:, 0] / sizes[:, 1])
    views = A.apply_params(images, params, 32, A.Ops.of(recipe), normalize=False,
                           index=torch.zeros(n, dtype=torch.long), sizes=sizes)
    green = (views[:, 1] > 0.8) & (views[:, 0] < 0.25) & (views[:, 2] < 0.25)  # (n, 32, 32)
    showing = green.flatten(1).float().mean(1) > 0.02
    assert 0.05 < showing.float().mean().item() < 0.95
