"""Every real-world bad file gets its documented outcome (sample_data/edge_cases)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from pair_manifest import images
from pair_manifest.images import ImageReadError

CLASS = "n01443537"

# file name -> None (read correctly) or the reason code of the typed error
OUTCOMES = {
    "n01443537_2625.JPEG": None,
    "n01443537_cmyk.JPEG": None,  # CMYK -> RGB
    "n01443537_gray.JPEG": None,  # L -> RGB
    "n01443537_png_bytes.JPEG": None,  # PNG bytes behind a .JPEG name: read by content
    "n01443537_exif_rot90.JPEG": None,  # read; transposed for display only
    "n01443537_truncated.JPEG": images.TRUNCATED,
    "n01443537_empty.JPEG": images.EMPTY,
    "n01443537_garbage.JPEG": images.NOT_AN_IMAGE,
    "n01443537_bomb.JPEG": images.TOO_LARGE,
}


@pytest.mark.parametrize("name,reason", sorted(OUTCOMES.items()))
def test_probe_and_decode_give_the_documented_outcome(edge_cases_root, name, reason):
    path = edge_cases_root / CLASS / name
    if reason is None:
        info = images.probe(path)
        rgb = images.open_rgb(path)
        assert rgb.mode == "RGB" and rgb.size == (info.width, info.height)
        grey = images.open_grey(path, min_side=32)  # the perceptual hash's own decode
        assert grey.mode == "L" and min(grey.size) >= min(32, info.width, info.height)
        return
    for read in (images.probe, images.open_rgb, images.open_grey, images.image_facts):
        with pytest.raises(ImageReadError) as caught:
            read(path)
        assert caught.value.reason == reason
        assert name in str(caught.value)  # the message names the file


def test_cmyk_is_converted_to_the_same_colours_as_its_rgb_original(edge_cases_root):
    # The CMYK file is a re-encoding of n01443537_11099: a wrong (e.g. un-inverted Adobe) decode
    # would be its negative and correlate negatively.
    cmyk = np.asarray(images.open_rgb(edge_cases_root / CLASS / "n01443537_cmyk.JPEG"), dtype=np.float64)
    rgb = np.asarray(images.open_rgb(edge_cases_root / CLASS / "n01443537_11099.JPEG"), dtype=np.float64)
    assert cmyk.shape == rgb.shape
    assert np.corrcoef(cmyk.ravel(), rgb.ravel())[0, 1] > 0.99


def test_png_bytes_report_their_real_format(edge_cases_root):
    assert images.probe(edge_cases_root / CLASS / "n01443537_png_bytes.JPEG").format == "PNG"


def test_exif_rotation_is_applied_for_display_only(edge_cases_root):
    path = edge_cases_root / CLASS / "n01443537_exif_rot90.JPEG"
    stored = images.open_rgb(path)
    shown = images.open_rgb(path, exif_transpose=True)
    assert stored.size == (400, 300)
    assert shown.size == (300, 400)


def test_decompression_bomb_is_refused_before_decoding(edge_cases_root):
    with pytest.raises(ImageReadError) as caught:
        images.open_rgb(edge_cases_root / CLASS / "n01443537_bomb.JPEG")
    assert "400 megapixels exceeds the limit of 89 megapixels" in str(caught.value)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's own limit stays in force for other code


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest resets filters
def test_images_between_the_limit_and_twice_it_are_refused_by_size(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (10_000, 9_500)).save(path)  # 95 MP: Pillow only warns, we refuse
    with pytest.raises(ImageReadError) as caught:
        images.probe(path)
    assert caught.value.reason == images.TOO_LARGE
    assert "10000x9500 = 95 megapixels" in str(caught.value)


def test_draft_mode_decodes_small_but_keeps_aspect(sample_images):
    path = next((sample_images / "n04554684").iterdir())
    full = images.open_rgb(path)
    small = images.open_rgb(path, max_side=64)
    assert max(small.size) == 64
    assert abs(small.size[0] / small.size[1] - full.size[0] / full.size[1]) < 0.05


def test_decode_from_bytes_matches_decode_from_file(sample_images):
    path = next((sample_images / "n04554684").iterdir())
    assert images.open_rgb(path.read_bytes()).tobytes() == images.open_rgb(path).tobytes()
    with pytest.raises(ImageReadError) as caught:
        images.open_rgb(b"", name="x.JPEG")
    assert caught.value.reason == images.EMPTY


def test_sha256_is_of_the_bytes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert images.sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def _reencode(image: Image.Image, **save) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **save)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_perceptual_hash_catches_copies_and_separates_different_photos(sample_images):
    files = sorted((sample_images / "n04554684").iterdir())
    base = images.open_rgb(files[0])
    h = images.perceptual_hash(base)
    w, height = base.size
    copies = {
        "low quality": _reencode(base, quality=15),
        "resized": base.resize((w // 3, height // 3)),
        "mirrored": ImageOps.mirror(base),
        "cropped": base.crop((8, 6, w - 8, height - 6)),
    }
    for what, copy in copies.items():
        assert h.distance(images.perceptual_hash(copy)) < images.NEAR_DUPLICATE_BITS, what
    for other in files[1:]:
        assert h.distance(images.perceptual_hash(images.open_rgb(other))) >= images.NEAR_DUPLICATE_BITS


def test_image_facts_read_the_file_once_for_both_hashes(sample_images):
    """The store's facts: the file's SHA-256, and a perceptual hash from a small grey decode that
    agrees with the hash of the full RGB decode to a few bits."""
    for path in sorted((sample_images / "n04554684").iterdir()):
        facts = images.image_facts(path)
        assert facts.sha256 == images.sha256_file(path)
        assert facts.phash.distance(images.perceptual_hash(images.open_rgb(path, max_side=128))) <= 4
