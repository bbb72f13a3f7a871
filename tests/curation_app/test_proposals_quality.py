"""The quality measures (`curation_app/proposals/quality.py`) against hand-made images and numbers,
and the properties the score exists for, on the bundled real photos: the objects of the
best-ranked proposals of a class are more alike than random same-class pairs, and the context term
moves them towards different contexts (object-first: see `scoring.py` for the trade-off)."""
from __future__ import annotations

from math import comb

import numpy as np
import pytest
from PIL import Image

from curation_app.proposals.output import read_proposals
from curation_app.proposals.propose import propose
from curation_app.proposals.quality import MEASURES, compare, distances, region_histograms
from tests.curation_app.proposals_support import classes_csv


def framed(border: tuple[int, int, int], centre: tuple[int, int, int], side: int = 96) -> Image.Image:
    """A `border` square with a `centre` square over its middle 62.5 %: the seam lies in the ring
    between the centre region (middle half) and the band (outer eighth), where no measure looks."""
    image = Image.new("RGB", (side, side), border)
    image.paste(Image.new("RGB", (side * 5 // 8, side * 5 // 8), centre), (side * 3 // 16, side * 3 // 16))
    return image


def test_histograms_describe_the_band_and_the_centre_separately():
    red_on_blue, blue_on_red = framed((0, 0, 255), (255, 0, 0)), framed((255, 0, 0), (0, 0, 255))
    h = region_histograms(red_on_blue)
    assert h["context colour"][3] == pytest.approx(1.0)  # (r, g, b) cells (0, 0, 3): pure blue
    assert h["object colour"][48] == pytest.approx(1.0)  # (3, 0, 0): pure red
    # Flat regions: every neighbour equals the centre pixel, all 8 bits set -> riu2 class 8.
    assert h["context texture"][8] == pytest.approx(1.0) and h["object texture"][8] == pytest.approx(1.0)
    stacked = {m: np.stack([h[m], region_histograms(blue_on_red)[m], h[m]]) for m in MEASURES}
    assert distances(stacked["context colour"])[0, 1] == pytest.approx(1.0)  # disjoint
    assert distances(stacked["context colour"])[0, 2] == pytest.approx(0.0)  # equal
    assert distances(stacked["context texture"])[0, 1] == pytest.approx(0.0)  # both flat
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    assert region_histograms(noisy)["context texture"][8] < 0.1  # noise: few flat neighbourhoods


def test_compare_weights_classes_by_their_proposals_and_counts_wins():
    every = {"a": np.array([0.2, 0.4, 0.6]), "b": np.array([0.5, 0.5, 0.5, 0.5]), "c": np.array([0.1, 0.3])}
    proposed = {"a": [0.6, 0.6], "b": [0.4], "c": [0.3]}
    result = compare(proposed, every)
    sd = np.sqrt((0.08 + 0.0 + 0.02) / 9)  # pooled within-class sum of squares / pairs
    assert result.random_sd == pytest.approx(sd)
    assert result.effect == pytest.approx(((0.6 - 0.4) * 2 + (0.4 - 0.5) + (0.3 - 0.2)) / 4 / sd)
    assert (result.above, result.classes, result.pairs) == (2, 3, 4)
    assert result.interval[0] <= result.effect <= result.interval[1]
    assert result.sign_test(larger=True) == pytest.approx((comb(3, 2) + 1) / 8)
    assert result.sign_test(larger=False) == pytest.approx(1 - 1 / 8)


def best_quarter(sample_images, project, wnids):
    """Per measure: the distances of each class's best-ranked quarter of proposals, and of every pair."""
    rows = read_proposals(project).to_pylist()
    best = {m: {} for m in MEASURES}
    every = {m: {} for m in MEASURES}
    for wnid in wnids:
        files = sorted(f"{wnid}/{p.name}" for p in (sample_images / wnid).iterdir())
        index = {f: i for i, f in enumerate(files)}
        histograms = [region_histograms(sample_images / f) for f in files]
        pairs = [(index[r["file_a"]], index[r["file_b"]]) for r in rows if r["wnid"] == wnid]
        top = pairs[:max(1, len(pairs) // 4)]
        for m in MEASURES:
            d = distances(np.stack([h[m] for h in histograms]))
            best[m][wnid], every[m][wnid] = [d[i, j] for i, j in top], d[np.triu_indices(len(files), 1)]
    return {m: compare(best[m], every[m]) for m in MEASURES}


def test_best_ranked_proposals_have_alike_objects_and_the_context_term_diversifies(sample_images, tmp_path):
    wnids = sorted(d.name for d in sample_images.iterdir())
    csv = str(classes_csv(tmp_path / "classes.csv", wnids))
    propose(sample_images, tmp_path / "project", classes=csv, workers=2)
    measured = best_quarter(sample_images, tmp_path / "project", wnids)
    object_colour = measured["object colour"]
    assert object_colour.effect < -0.5 and object_colour.interval[1] < 0.0 and object_colour.above <= 4
    assert measured["object texture"].interval[1] < 0.0  # centres: more alike than random in texture too
    # The context term at work: without it (weight 0) contexts are more alike, with a larger weight
    # (`propose --context-weight`) more different.
    weighted = {}
    for weight in (0.0, 1.0):
        propose(sample_images, tmp_path / f"weight-{weight}", classes=csv, workers=2, context_weight=weight)
        weighted[weight] = best_quarter(sample_images, tmp_path / f"weight-{weight}", wnids)
    for m in ("context colour", "context texture"):
        assert weighted[0.0][m].proposed < measured[m].proposed < weighted[1.0][m].proposed
