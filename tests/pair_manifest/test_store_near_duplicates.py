"""The near-duplicate rule (`pair_manifest.near_duplicates`): a perceptual-hash match is confirmed
by aligned thumbnails before two files are called one photo. Distinct photos whose hashes collide
are kept apart; re-encodes, resizes, mirror images and crops of one photo are still caught."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageOps

from pair_manifest.images import NEAR_DUPLICATE_BITS, image_facts, open_rgb
from pair_manifest.near_duplicates import SAME_PHOTO_SIMILARITY, aligned_similarity, grey_thumbnail, same_photo_files
from pair_manifest.store import DecisionStore, NewDecision, PolicyViolation
from tests.curation_app.proposals_support import VARIANTS

HASH_ALIKE = Path(__file__).parent / "hash_alike"
# Distinct photos found with colliding hashes among 19,440 real development photos.
COLLIDING = [("n03888257_62457.JPEG", "n04366367_215.JPEG"),  # a parachute and a bridge, 6 bits
             ("n01440764_457.JPEG", "n01440764_5785.JPEG"),  # two anglers with a tench, 6 bits
             ("n03888257_17387.JPEG", "n03888257_20324.JPEG")]  # two parachutes, 8 bits
WNID = "n03085013"


@pytest.mark.parametrize("first,second", COLLIDING)
def test_distinct_photos_with_colliding_hashes_are_kept_apart(first, second):
    a, b = image_facts(HASH_ALIKE / first), image_facts(HASH_ALIKE / second)
    assert a.phash.distance(b.phash) < NEAR_DUPLICATE_BITS  # the hash alone would call them one photo
    assert not same_photo_files(a, b, HASH_ALIKE / first, HASH_ALIKE / second)
    assert aligned_similarity(grey_thumbnail(HASH_ALIKE / first), grey_thumbnail(HASH_ALIKE / second)) \
        < SAME_PHOTO_SIMILARITY


@pytest.fixture(scope="module")
def planted(tmp_path_factory, sample_images):
    """Every variant of the proposals tests (same bytes, JPEG quality 20, half size, mirror, crop,
    one side cut, mirrored crop at quality 30) of 3 full-resolution and 3 64x64 photos."""
    root = tmp_path_factory.mktemp("planted")
    originals = []
    for path in sorted((sample_images / WNID).iterdir()):
        with Image.open(path) as image:
            big = image.width > 200
        if sum(1 for _, b in originals if b == big) < 3:
            originals.append((path, big))
    copies = []
    for path, _ in originals:
        data = path.read_bytes()
        image = open_rgb(data)
        (root / path.name).write_bytes(data)
        for variant, make in VARIANTS.items():
            copy = root / f"{path.stem}_{variant}.JPEG"
            copy.write_bytes(make(data, image))
            copies.append((root / path.name, copy))
    return copies


def test_planted_copies_caught_by_the_hash_are_all_confirmed(planted):
    caught = set()
    for original, copy in planted:
        a, b = image_facts(original), image_facts(copy)
        if a.phash.distance(b.phash) < NEAR_DUPLICATE_BITS or a.sha256 == b.sha256:
            caught.add(copy.name)
            assert same_photo_files(a, b, original, copy), copy.name
    # Whole-photo copies always match the hash; crops only sometimes (the proposals' window test
    # covers the rest), and every one the hash matches is confirmed.
    whole = {c.name for _, c in planted if c.stem.rsplit("_", 1)[-1] in ("copy", "q20", "half", "mirror")}
    assert whole <= caught and len(caught) > len(whole)


def test_the_store_refuses_copies_and_accepts_hash_alike_distinct_photos(tmp_path, sample_images):
    root = tmp_path / "images"
    (root / WNID).mkdir(parents=True)
    source = sorted((sample_images / WNID).iterdir())[0]
    image = open_rgb(source)
    (root / WNID / "photo.JPEG").write_bytes(source.read_bytes())
    ImageOps.mirror(image).resize((image.width // 2, image.height // 2)).save(root / WNID / "copy.JPEG", quality=40)
    for first, second in COLLIDING[:1]:
        for name in (first, second):
            (root / WNID / name).write_bytes((HASH_ALIKE / name).read_bytes())
    store = DecisionStore(tmp_path / "decisions.sqlite", images_root=root)
    with pytest.raises(PolicyViolation, match="near-duplicates"):
        store.record(NewDecision("k1", WNID, f"{WNID}/photo.JPEG", f"{WNID}/copy.JPEG", "accept", "alice"))
    first, second = COLLIDING[0]
    recorded = store.record(NewDecision("k2", WNID, f"{WNID}/{first}", f"{WNID}/{second}", "accept", "alice"))
    assert recorded.decision.verdict == "accept" and store.count() == 1


def test_proposals_group_only_confirmed_matches(planted):
    """The proposals' same-photo groups use the same rule: a colliding pair of distinct photos
    stays two groups, a copy joins its original."""
    import numpy as np

    from curation_app.proposals.duplicates import same_photo_groups

    original, mirror = next((o, c) for o, c in planted if c.stem.endswith("_mirror"))
    paths = [HASH_ALIKE / name for name in COLLIDING[0]] + [original, mirror]
    facts = [image_facts(p) for p in paths]
    values = np.array([f.phash.value for f in facts], dtype=np.uint64)
    mirrored = np.array([f.phash.mirrored for f in facts], dtype=np.uint64)
    digests = [f.sha256 for f in facts]
    assert same_photo_groups(digests, values, mirrored)[:2] == [0, 0]  # the hash alone joins them
    assert same_photo_groups(digests, values, mirrored, paths) == [0, 1, 2, 2]
