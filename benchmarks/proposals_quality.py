"""Proposal quality on the bundled sample (18 classes, 675 real photos), for every embedder available.

    .venv/bin/python benchmarks/proposals_quality.py [--embedder SPEC ...] [--no-random-reference]

For each embedder it runs the real `propose` pipeline and prints:

- **same-class nearest neighbour**: how often an image's nearest other image (cosine of the object
  vectors, standardised over the whole sample the way scoring standardises a class) is of its own
  class, against the chance rate sum_c n_c (n_c - 1) / (N (N - 1));
- **context distance** of the proposed pairs against random same-class pairs (the mean over *all*
  pairs of a class, i.e. the exact expectation of a random pair). Definition, chosen to be
  independent of the features the score uses (opponent-colour moments, chroma-weighted hue and
  gradient histograms): 1 - histogram intersection (Swain & Ballard, "Color indexing", IJCV 1991)
  of the 4x4x4 RGB colour histograms of the outer band (outer eighth of each side) of the 128 px
  decode. 0 = identical colour distributions, 1 = disjoint;
- **object distance**, the same measure on the centre region (middle half of each side), to show
  what the proposals pay for their context diversity;
- both for all proposals and for the best-ranked quarter of each class (what annotators see
  first in verify mode);
- classes where the proposals' mean context distance beats random.

Embedders: `pixels`; the torchvision models whose pretrained weights are in torch's cache
(none are downloaded); any `--embedder SPEC` given; and, unless `--no-random-reference`, a
randomly initialised ResNet-18 as a floor (a reference, not an embedder anyone should use).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from curation_app.proposals.cache import THUMBNAIL_SIDE, EmbeddingCache
from curation_app.proposals.embedders import load_embedder
from curation_app.proposals.output import read_proposals
from curation_app.proposals.propose import propose
from curation_app.proposals.scoring import class_statistics, standardise
from pair_manifest.errors import UserError
from pair_manifest.images import open_rgb

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "imagenet" / "train"
PRETRAINED = ("resnet50", "resnet18", "convnext_tiny", "vit_b_16", "efficientnet_b0")
BINS = 4  # per RGB channel: 64 colour cells
BAND = 0.125
CENTRE = (0.25, 0.75)


def histograms(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (context band, centre) RGB histograms of one image's 128 px decode."""
    rgb = np.asarray(open_rgb(path, max_side=THUMBNAIL_SIDE), dtype=np.int64)
    h, w = rgb.shape[:2]
    cells = (rgb[..., 0] * BINS // 256) * BINS * BINS + (rgb[..., 1] * BINS // 256) * BINS + rgb[..., 2] * BINS // 256
    ys, xs = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
    band = ((ys < BAND) | (ys >= 1 - BAND))[:, None] | ((xs < BAND) | (xs >= 1 - BAND))[None, :]
    centre = ((ys >= CENTRE[0]) & (ys < CENTRE[1]))[:, None] & ((xs >= CENTRE[0]) & (xs < CENTRE[1]))[None, :]
    out = []
    for mask in (band, centre):
        counts = np.bincount(cells[mask], minlength=BINS ** 3).astype(np.float64)
        out.append(counts / counts.sum())
    return out[0], out[1]


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 - float(np.minimum(a, b).sum())


def evaluate(spec: str, project: Path, files: dict[str, list[str]], hist: dict[str, tuple]) -> dict:
    summary = propose(SAMPLE, project, embedder=spec, workers=os.cpu_count())
    model = load_embedder(spec)
    cache = EmbeddingCache.for_project(project)
    vectors, contexts, labels = [], [], []
    for wnid, names in files.items():
        data, _ = cache.load(model.cache_key, wnid, names)
        vectors.append(data.vectors)
        contexts.append(data.context)
        labels += [wnid] * len(data)
    cache.close()
    vectors, contexts, labels = np.concatenate(vectors), np.concatenate(contexts), np.array(labels)
    objects, _ = standardise(vectors, contexts, class_statistics(vectors, contexts, model.standardize))
    similarity = objects @ objects.T
    np.fill_diagonal(similarity, -np.inf)
    nearest_same = float((labels[similarity.argmax(axis=1)] == labels).mean())

    rows = read_proposals(project).to_pylist()
    proposed_ctx, proposed_obj, random_ctx, random_obj, wins, classes = [], [], [], [], 0, 0
    top_ctx, top_obj = [], []
    for wnid, names in files.items():
        pairs = [(r["file_a"], r["file_b"]) for r in rows if r["wnid"] == wnid]  # in rank order
        if not pairs:
            continue
        ctx = [distance(hist[a][0], hist[b][0]) for a, b in pairs]
        top = max(1, len(pairs) // 4)
        top_ctx += ctx[:top]
        top_obj += [distance(hist[a][1], hist[b][1]) for a, b in pairs[:top]]
        every = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        ctx_random = [distance(hist[a][0], hist[b][0]) for a, b in every]
        proposed_ctx += ctx
        random_ctx += ctx_random
        proposed_obj += [distance(hist[a][1], hist[b][1]) for a, b in pairs]
        random_obj += [distance(hist[a][1], hist[b][1]) for a, b in every]
        wins += np.mean(ctx) > np.mean(ctx_random)
        classes += 1
    return {"label": summary.embedder, "pairs": summary.pairs, "nearest_same": nearest_same,
            "ctx": np.mean(proposed_ctx), "ctx_random": np.mean(random_ctx), "ctx_sd": np.std(random_ctx),
            "ctx_top": np.mean(top_ctx), "obj_top": np.mean(top_obj),
            "obj": np.mean(proposed_obj), "obj_random": np.mean(random_obj), "wins": f"{wins}/{classes}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", action="append", default=[], metavar="SPEC", help="another embedder to measure")
    parser.add_argument("--no-random-reference", action="store_true", help="skip the random-init ResNet-18 floor")
    args = parser.parse_args()
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {torch.__version__}, numpy {np.__version__}")
    files = {d.name: sorted(f"{d.name}/{p.name}" for p in d.iterdir()) for d in sorted(SAMPLE.iterdir())}
    hist = {f: histograms(SAMPLE / f) for names in files.values() for f in names}
    sizes = np.array([len(v) for v in files.values()])
    chance = float((sizes * (sizes - 1)).sum() / (sizes.sum() * (sizes.sum() - 1)))

    specs = ["pixels"]
    for name in PRETRAINED:
        try:
            load_embedder(f"torchvision:{name}")
            specs.append(f"torchvision:{name}")
        except UserError as error:
            print(f"unavailable: {error}")
    specs += args.embedder
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_random_reference:
            from torchvision.models import resnet18

            torch.manual_seed(0)
            weights = Path(tmp) / "random-init.pt"
            torch.save(resnet18(weights=None).state_dict(), weights)
            specs.append(f"torchvision:resnet18@{weights}")
        results = [evaluate(spec, Path(tmp) / f"project-{k}", files, hist) for k, spec in enumerate(specs)]

    print(f"\nsample: {sizes.sum()} images in {len(files)} classes; chance of a same-class nearest neighbour "
          f"{100 * chance:.1f} %")
    print("context / object distance = 1 - intersection of 4x4x4 RGB histograms of the outer band / the centre "
          "(128 px decode); 'random' = mean over all same-class pairs\n")
    header = (f"{'embedder':<34} {'pairs':>5} {'NN same class':>13} | {'context: all':>12} {'top 25%':>7} "
              f"{'random':>7} {'(sd)':>6} {'classes won':>11} | {'object: all':>11} {'top 25%':>7} {'random':>7}")
    print(header)
    for r in results:
        print(f"{r['label'][:34]:<34} {r['pairs']:>5} {100 * r['nearest_same']:>12.1f}% | {r['ctx']:>12.3f} "
              f"{r['ctx_top']:>7.3f} {r['ctx_random']:>7.3f} {r['ctx_sd']:>6.3f} {r['wins']:>11} | {r['obj']:>11.3f} "
              f"{r['obj_top']:>7.3f} {r['obj_random']:>7.3f}")
    print("'top 25%': the best-ranked quarter of each class's proposals, what an annotator sees first; "
          "'classes won': classes whose proposals' mean context distance exceeds random")
    if not args.no_random_reference:
        print("(torchvision-resnet18@random-init: random weights, a floor for comparison, not an embedder to use)")


if __name__ == "__main__":
    main()
