"""Proposal quality on the bundled real photos, for every embedder available.

    .venv/bin/python benchmarks/proposals_quality.py [--embedder SPEC ...] [--no-random-reference]

Two sets: `sample_data/imagenet/train` (18 classes, 675 photos; the scoring was designed on it)
and `sample_data/tiny_imagenet/train` (30 classes of 10 photos: a second set); then a **scale
check**: both sets copied into one folder as if they were one class of 975 photos, of which
`propose --per-class 157` takes the 157 best pairs, as it will from a real 1,300-image class (the
photos are of 41 classes, so "same object" is looser here; what it shows is whether the extreme
top of a large ranking stays context-diverse). For each set and embedder it runs the real
`propose` pipeline and prints:

- **same-class nearest neighbour**: how often an image's nearest other image by the score's
  object distance (vectors standardised over the whole set the way scoring standardises a class)
  is of its own class, against the chance rate sum_c n_c (n_c - 1) / (N (N - 1));
- for **all proposals** and for the **best-ranked quarter** of each class (what an annotator sees
  first in verify mode; with 1,300 images a class needs only its best 157 pairs), four distances
  that the score never sees (`curation_app/proposals/quality.py`): colour (4x4x4 RGB histogram)
  and texture (LBP histogram) of the context band and of the centre, each 1 - histogram
  intersection; against random same-class pairs (every pair of the class), as an effect size in
  units of the within-class sd of random pairs with a 95 % bootstrap interval over classes, and
  the classes where the proposals are farther (context: wanted) or closer (object: wanted) than
  random, with a one-sided sign-test p-value.

Embedders: `pixels`; the torchvision models whose pretrained weights are in torch's cache
(none are downloaded); any `--embedder SPEC` given; and, unless `--no-random-reference`, a
randomly initialised ResNet-18 as a floor (a reference, not an embedder anyone should use).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np

from curation_app.proposals.cache import EmbeddingCache
from curation_app.proposals.embedders import load_embedder
from curation_app.proposals.output import read_proposals
from curation_app.proposals.propose import propose
from curation_app.proposals.quality import MEASURES, compare, distances, region_histograms
from curation_app.proposals.scoring import class_statistics, squared_distances, standardise
from pair_manifest.errors import UserError

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
SETS = (SAMPLE / "imagenet" / "train", SAMPLE / "tiny_imagenet" / "train")
PRETRAINED = ("resnet50", "resnet18", "convnext_tiny", "vit_b_16", "efficientnet_b0")
TOP_FRACTION = 0.25


def nearest_same_class(spec: str, project: Path, files: dict[str, list[str]]) -> float:
    model = load_embedder(spec, offline=True)
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
    distance = squared_distances(objects, objects)
    np.fill_diagonal(distance, np.inf)
    return float((labels[distance.argmin(axis=1)] == labels).mean())


SCALE_PAIRS = 157  # the pairs a class contributes to the dataset


def evaluate(spec: str, root: Path, project: Path, files: dict[str, list[str]], measures: dict, csv: Path,
             per_class: int | None = None) -> dict:
    summary = propose(root, project, embedder=spec, classes=str(csv), workers=os.cpu_count(), per_class=per_class,
                      offline=True)
    rows = read_proposals(project).to_pylist()
    chosen = {"all": {m: {} for m in MEASURES}, "top 25%": {m: {} for m in MEASURES}}
    for wnid, names in files.items():
        index = {f: i for i, f in enumerate(names)}
        pairs = [(index[r["file_a"]], index[r["file_b"]]) for r in rows if r["wnid"] == wnid]  # rank order
        top = max(1, int(len(pairs) * TOP_FRACTION))
        for m in MEASURES:
            d = [float(measures[m][wnid][i, j]) for i, j in pairs]
            chosen["all"][m][wnid], chosen["top 25%"][m][wnid] = d, d[:top]
    every = {m: {wnid: measures[m][wnid][np.triu_indices(len(names), 1)] for wnid, names in files.items()}
             for m in MEASURES}
    return {"label": summary.embedder, "pairs": summary.pairs,
            "nearest_same": nearest_same_class(spec, project, files),
            "rows": {(subset, m): compare(chosen[subset][m], every[m]) for subset in chosen for m in MEASURES}}


def report(result: dict, nearest: bool = True) -> None:
    same = (f"; an image's nearest neighbour is of its class {100 * result['nearest_same']:.1f} % of the time"
            if nearest else "")
    print(f"\n{result['label']}: {result['pairs']} pairs{same}")
    print(f"  {'measure':<16} {'pairs':<8} {'distance':>8} {'random':>7} {'(sd)':>6} {'effect':>7} "
          f"{'95% interval':>16}   classes where wanted (sign test)")
    for (subset, m), c in result["rows"].items():
        larger = m.startswith("context")
        wins = c.above if larger else c.classes - c.above
        classes = (f"{wins:>2}/{c.classes} {'farther' if larger else 'closer'} (p = {c.sign_test(larger):.2g})"
                   if c.classes > 1 else "(one class: interval over pairs)")
        print(f"  {m:<16} {subset:<8} {c.proposed:>8.3f} {c.random:>7.3f} {c.random_sd:>6.3f} {c.effect:>+7.2f} "
              f"[{c.interval[0]:+.2f}, {c.interval[1]:+.2f}]   {classes}")


def describe(files: dict[str, list[str]]) -> str:
    sizes = np.array([len(v) for v in files.values()])
    chance = float((sizes * (sizes - 1)).sum() / (sizes.sum() * (sizes.sum() - 1)))
    return (f"{sizes.sum()} images in {len(files)} classes; chance of a same-class nearest neighbour "
            f"{100 * chance:.1f} %")


def measure_set(specs: list[str], root: Path, files: dict[str, list[str]], work: Path,
                per_class: int | None = None) -> None:
    work.mkdir(parents=True, exist_ok=True)
    csv = work / "classes.csv"
    csv.write_text("wnid\n" + "\n".join(files) + "\n")
    histograms = {f: region_histograms(root / f) for names in files.values() for f in names}
    measures = {m: {wnid: distances(np.stack([histograms[f][m] for f in names])) for wnid, names in files.items()}
                for m in MEASURES}
    for k, spec in enumerate(specs):
        result = evaluate(spec, root, work / f"project-{k}", files, measures, csv, per_class)
        report(result, nearest=len(files) > 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", action="append", default=[], metavar="SPEC", help="another embedder to measure")
    parser.add_argument("--no-random-reference", action="store_true", help="skip the random-init ResNet-18 floor")
    args = parser.parse_args()
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {torch.__version__}, numpy {np.__version__}")
    specs = ["pixels"]
    for name in PRETRAINED:
        try:
            load_embedder(f"torchvision:{name}", offline=True)
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
        for number, root in enumerate(SETS):
            files = {d.name: sorted(f"{d.name}/{p.name}" for p in d.iterdir()) for d in sorted(root.iterdir())}
            print(f"\n== {root.relative_to(SAMPLE.parent)}: {describe(files)} ==")
            measure_set(specs, root, files, Path(tmp) / f"set-{number}")
        pool = Path(tmp) / "pool" / "images"
        wnid = sorted(SETS[0].iterdir())[0].name
        (pool / wnid).mkdir(parents=True)
        for number, root in enumerate(SETS):
            for path in sorted(root.glob("*/*")):
                shutil.copy2(path, pool / wnid / f"set{number}_{path.parent.name}_{path.name}")
        files = {wnid: sorted(f"{wnid}/{p.name}" for p in (pool / wnid).iterdir())}
        print(f"\n== scale check: both sets as one class of {len(files[wnid])} photos, the best {SCALE_PAIRS} pairs ==")
        measure_set([s for s in specs if "random-init" not in s], pool, files, Path(tmp) / "pool", SCALE_PAIRS)
    print("\ndistance: mean 1 - histogram intersection of the proposed pairs (context band / centre; colour: "
          "4x4x4 RGB, texture: LBP riu2); random: every same-class pair; effect: (distance - random) / within-class "
          "sd of random pairs, 95 % bootstrap interval over classes (over pairs for the scale check); 'top 25%': the "
          "best-ranked quarter of each class's proposals")
    if not args.no_random_reference:
        print("(torchvision-resnet18@random-init: random weights, a floor for comparison, not an embedder to use)")


if __name__ == "__main__":
    main()
