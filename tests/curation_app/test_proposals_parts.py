"""The parts of the proposals, each against an independent reference: greedy matching against a
direct implementation, pixels features against composite photos whose object and context come
from different images, scores against their formula, the decision-source format against
`manifest stats`' parser."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from curation_app.proposals.duplicates import WINDOWS, crop_similarity, same_photo_groups, window_descriptors
from curation_app.proposals.output import decision_source
from curation_app.proposals import descriptors
from curation_app.proposals.pixels import (FEATURE_WIDTH, OBJECT_BLOCKS, OBJECT_WIDTH, block_weights, object_vector,
                                          region_features)
from curation_app.proposals.scoring import CONTEXT_WEIGHT, class_statistics, pair_scores, standardise
from curation_app.proposals.selection import greedy_matching
from pair_manifest.images import open_rgb, perceptual_hash
from pair_manifest.stats import proposal_source


def reference_greedy(scores, forbidden, limit):
    """The textbook algorithm: repeatedly take the best pair of two free images."""
    n = len(scores)
    candidates = sorted(((-scores[i, j], i, j) for i, j in itertools.combinations(range(n), 2) if not forbidden[i, j]))
    used, chosen = set(), []
    for _, i, j in candidates:
        if i not in used and j not in used and len(chosen) < limit:
            used |= {i, j}
            chosen.append((i, j))
    return chosen


@pytest.mark.parametrize("n, seed", [(2, 0), (7, 1), (40, 2), (301, 3)])
def test_greedy_matching_equals_the_reference(n, seed):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n, n))
    scores = np.round((scores + scores.T) / 2, 1)  # many ties: the tie rule must be deterministic
    forbidden = rng.random((n, n)) < 0.2
    forbidden = forbidden | forbidden.T
    assert greedy_matching(scores, forbidden=forbidden) == reference_greedy(scores, forbidden, n // 2)
    assert greedy_matching(scores, forbidden=forbidden, limit=3) == reference_greedy(scores, forbidden, 3)


def test_greedy_asks_the_veto_only_for_pairs_it_would_take():
    scores = np.array([[0, 9, 8, 1], [9, 0, 7, 2], [8, 7, 0, 3], [1, 2, 3, 0]], dtype=float)
    asked = []

    def veto(i, j):
        asked.append((i, j))
        return (i, j) == (0, 1)

    assert greedy_matching(scores, veto=veto) == [(0, 2), (1, 3)]
    assert asked == [(0, 1), (0, 2), (1, 3)]  # (1, 2) was never asked: 2 was taken by then
    assert greedy_matching(np.zeros((1, 1))) == [] and greedy_matching(scores, limit=0) == []


def composite(centre: Image.Image, border: Image.Image) -> Image.Image:
    """`border`'s photo with the middle 62.5 % of `centre`'s pasted over it: the seam lies between
    the centre region (middle 50 %) and the context band (outer 12.5 %), where no feature looks."""
    out = border.resize((256, 256))
    out.paste(centre.resize((256, 256)).crop((48, 48, 208, 208)), (48, 48))
    return out


def test_object_features_follow_the_centre_and_context_the_border(sample_images):
    photos = [open_rgb(p) for p in sorted((sample_images / "n04557648").iterdir())]
    photos += [open_rgb(p) for p in sorted((sample_images / "n04554684").iterdir())]
    for x, y in [(0, 5), (1, 7), (2, 9), (3, 6)]:
        mixed = region_features(composite(photos[x], photos[y]))
        centre_x, _ = region_features(composite(photos[x], photos[x]))
        centre_y, _ = region_features(composite(photos[y], photos[y]))
        _, border_y = region_features(photos[y].resize((256, 256)))
        _, border_x = region_features(photos[x].resize((256, 256)))
        assert mixed[0].shape == mixed[1].shape == (FEATURE_WIDTH,)
        assert np.abs(mixed[0] - centre_x).sum() < 0.2 * np.abs(mixed[0] - centre_y).sum()
        assert np.abs(mixed[1] - border_y).sum() < 0.2 * np.abs(mixed[1] - border_x).sum()


def test_scores_follow_the_formula():
    rng = np.random.default_rng(0)
    for mode, width in (("zscore", FEATURE_WIDTH), ("center", 8)):
        vectors, context = rng.normal(size=(30, width)), rng.normal(size=(30, FEATURE_WIDTH))
        vectors[0] *= 40  # an outlier: clipped in zscore mode, shortened to unit length in center mode
        stats = class_statistics(vectors, context, mode)
        objects, contexts = standardise(vectors, context, stats)
        scores = pair_scores(objects, contexts, objects, contexts)
        i, j = 3, 17
        other_object, other_context = ((objects[i] - objects[j]) ** 2).sum(), ((contexts[i] - contexts[j]) ** 2).sum()
        expected = (CONTEXT_WEIGHT * (other_context - 1) - (other_object - 1)) / (1 + CONTEXT_WEIGHT)
        assert scores[i, j] == pytest.approx(expected)
        upper = np.triu_indices(30, 1)
        # Both distances are in units of the class's mean pair distance, so a random pair scores 0 on average.
        assert ((objects[:, None] - objects[None]) ** 2).sum(axis=2)[upper].mean() == pytest.approx(1.0)
        assert ((contexts[:, None] - contexts[None]) ** 2).sum(axis=2)[upper].mean() == pytest.approx(1.0)
        assert scores[upper].mean() == pytest.approx(0.0, abs=1e-9)
        # Scoring a subset against the pool statistics gives the same numbers (pick mode = proposals).
        few = pair_scores(objects[[i]], contexts[[i]], objects[[j, 5]], contexts[[j, 5]])[0]
        assert few == pytest.approx(scores[i, [j, 5]], abs=1e-9)
    # Same object, other context beats same object, same context, and other object, other context.
    obj = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    ctx = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    s = pair_scores(obj, ctx, obj, ctx)
    assert s[0, 1] > s[0, 2] and s[0, 1] > s[0, 3]


def test_a_typical_pair_is_not_scored_as_diverse():
    """Two images at the class mean have (almost) equal contexts: their pair must not tie with a pair
    whose contexts really differ, as it did when the score took cosines of standardised vectors (a
    near-zero vector has a direction, but it is noise: here exactly opposite, cosine -1)."""
    rng = np.random.default_rng(1)
    objects, contexts = rng.normal(size=(40, FEATURE_WIDTH)), rng.normal(size=(40, FEATURE_WIDTH))
    mean_context, tiny = contexts[4:].mean(axis=0), 1e-3 * rng.normal(size=FEATURE_WIDTH)
    contexts[0], contexts[1] = mean_context + tiny, mean_context - tiny  # typical contexts
    contexts[3] = 2 * mean_context - contexts[2]  # 2's context mirrored around the class mean
    objects[1], objects[3] = objects[0], objects[2]  # both pairs: the same object
    o, c = standardise(objects, contexts, class_statistics(objects, contexts, "zscore"))
    s = pair_scores(o, c, o, c)
    # Same object, no context difference: the object term alone, nothing for the context.
    assert s[0, 1] == pytest.approx((1 - CONTEXT_WEIGHT) / (1 + CONTEXT_WEIGHT), abs=0.01)
    context_gain = CONTEXT_WEIGHT * ((c[2] - c[3]) ** 2).sum() / (1 + CONTEXT_WEIGHT)
    assert s[2, 3] == pytest.approx(s[0, 1] + context_gain, abs=0.01) and context_gain > 0.05


def test_same_photo_groups_join_bytes_and_phash(sample_images):
    paths = sorted((sample_images / "n04557648").iterdir())
    images = [open_rgb(p, max_side=128) for p in paths]
    hashes = [perceptual_hash(im) for im in images]
    values = np.array([h.value for h in hashes] + [hashes[0].mirrored], dtype=np.uint64)
    mirrored = np.array([h.mirrored for h in hashes] + [hashes[0].value], dtype=np.uint64)
    digests = ["a", "b", "c", "d", "e", "f"]
    assert same_photo_groups(digests, values, mirrored) == [0, 1, 2, 3, 4, 0]  # the mirror image joins photo 0
    assert same_photo_groups(["a", "b", "a", "d", "e", "f"], values, mirrored) == [0, 1, 0, 3, 4, 0]


def test_window_descriptors_catch_crops_of_one_photo_only(sample_images):
    image = open_rgb(sorted((sample_images / "n04557648").iterdir())[0])
    w, h = image.size
    crop = image.crop((int(0.08 * w), 0, w, int(0.93 * h))).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    other = open_rgb(sorted((sample_images / "n04557648").iterdir())[1])
    windows = np.stack([window_descriptors(im.resize((im.width // 4, im.height // 4))) for im in (image, crop, other)])
    assert windows.shape == (3, WINDOWS, windows.shape[2])
    similarity = crop_similarity(windows, np.array([0, 0, 1]), np.array([1, 2, 2]))
    assert similarity[0] > 0.95 and similarity[1] < 0.8 and similarity[2] < 0.8


def test_decision_source_is_what_manifest_stats_parses():
    assert decision_source("torchvision-resnet18@r18", 12) == "proposal:torchvision-resnet18@r18:12"
    assert proposal_source(decision_source("pixels", 0)) == ("pixels", 0)
    assert proposal_source(decision_source("checkpoint-run_1", 250)) == ("checkpoint-run_1", 250)


def test_object_vector_is_a_mirror_invariant_vector_of_its_blocks_and_its_covariances_are_the_direct_ones():
    """The object vector has the blocks `OBJECT_BLOCKS` names, a photo and its mirror image get the
    same one, and the region covariance block equals np.cov of the per-pixel features, logged."""
    rng = np.random.default_rng(5)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mirror = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    vector = object_vector(image, *region_features(image))
    assert vector.shape == (OBJECT_WIDTH,) and OBJECT_WIDTH == sum(width for _, width in OBJECT_BLOCKS)
    assert np.allclose(vector, object_vector(mirror, *region_features(mirror)), atol=1e-5)
    assert len(block_weights(OBJECT_WIDTH)) == OBJECT_WIDTH

    colour = descriptors.lab(np.asarray(image, dtype=np.float64) / 255.0)
    dx, dy = np.zeros((64, 64)), np.zeros((64, 64))
    dx[:, 1:-1], dy[1:-1] = colour[:, 2:, 0] - colour[:, :-2, 0], colour[2:, :, 0] - colour[:-2, :, 0]
    dx[:, 0], dx[:, -1] = colour[:, 1, 0] - colour[:, 0, 0], colour[:, -1, 0] - colour[:, -2, 0]
    dy[0], dy[-1] = colour[1, :, 0] - colour[0, :, 0], colour[-1, :, 0] - colour[-2, :, 0]
    dxx, dyy = descriptors._gradient(dx)[0], descriptors._gradient(dy)[1]
    y, x = np.mgrid[0:64, 0:64] / 64.0
    per_pixel = np.stack([x, y, *np.moveaxis(colour, -1, 0), abs(dx), abs(dy), abs(dxx), abs(dyy)], axis=-1)
    cells = [per_pixel] + [per_pixel[r:r + 32, c:c + 32] for r in (0, 32) for c in (0, 32)]
    expected = []
    for cell in cells:
        values, vectors = np.linalg.eigh(np.cov(cell.reshape(-1, 9), rowvar=False) + 1e-4 * np.eye(9))
        expected.append(((vectors * np.log(values)) @ vectors.T)[np.triu_indices(9)])
    assert np.allclose(descriptors.region_covariances(colour), np.concatenate(expected), atol=1e-6)
