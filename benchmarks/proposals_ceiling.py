"""How far learning from decisions could take the shown precision with a given embedder.

    .venv/bin/python benchmarks/proposals_ceiling.py --images DIR --truth CSV [--embedder SPEC] [--decisions N]

Learning re-orders each class's proposals by a split of the class fitted to the annotator's
decisions (`curation_app/proposals/learning.py`). This script asks what the best such split would
give: it runs the product's `propose`, takes each class's pool exactly as the learning reads it
(`load_class_pool`: the principal components the split is fitted on), and fits a logistic
regression to the *true* classes of all its images (5-fold cross-fitting: each image's probability
comes from a model that did not see it). The class's proposals are then shown in the order of
that model's "same side" probability, and a simulated annotator accepts or rejects them as in
`proposals_precision.py`, until 157 are accepted. Printed per class: the share of all its
proposals within one true class (what any re-ordering chooses from) and the precision after the
first N decisions; last line `ceiling after N: X.XX` (pooled over classes). If that is below a
goal, no re-ordering of these proposals by a split of these vectors reaches it: the embedder is
what must change. Runtime: `propose` (about 10-20 s on 2 cores for 10,000 photos with `pixels`)
and a second.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.proposals_precision import class_folders, read_truth  # noqa: E402
from curation_app.proposals.learning import load_class_pool  # noqa: E402
from curation_app.proposals.output import proposals_path, read_info, read_proposals  # noqa: E402
from curation_app.proposals.propose import propose  # noqa: E402
from pair_manifest.errors import UserError  # noqa: E402
from pair_manifest.protocol import PAIRS_PER_CLASS  # noqa: E402

FOLDS = 5
L2 = 1.0


def logistic(x: np.ndarray, y: np.ndarray, iterations: int = 25) -> np.ndarray:
    """Weights (offset last) of an L2-penalised logistic regression, by Newton's method."""
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    penalty = np.full(len(w), L2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        gradient = x.T @ (p - y) + penalty * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-6)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def cross_fitted(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each row's probability of y from a model fitted on the other folds."""
    folds = np.arange(len(y)) % FOLDS
    np.random.default_rng(0).shuffle(folds)
    out = np.zeros(len(y))
    for k in range(FOLDS):
        test = folds == k
        w = logistic(z[~test], y[~test].astype(float))
        out[test] = 1.0 / (1.0 + np.exp(-np.clip(np.hstack([z[test], np.ones((test.sum(), 1))]) @ w, -30, 30)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, type=Path, metavar="DIR")
    parser.add_argument("--truth", required=True, type=Path, metavar="CSV", help="file,true_wnid of every photo")
    parser.add_argument("--embedder", default="pixels", metavar="SPEC")
    parser.add_argument("--decisions", type=int, default=50, metavar="N")
    parser.add_argument("--offline", action="store_true", default=None, help="download no weights")
    args = parser.parse_args(argv)
    try:
        truth = read_truth(args.truth, args.images)
        wnids = class_folders(args.images, truth)
        with tempfile.TemporaryDirectory(prefix="proposals-ceiling-") as scratch:
            csv = Path(scratch) / "classes.csv"
            csv.write_text("wnid\n" + "".join(f"{w}\n" for w in wnids))
            project = Path(scratch) / "project"
            propose(args.images, project, classes=str(csv), embedder=args.embedder, offline=args.offline)
            return report(project, truth, wnids, args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return int(error.exit_code)


def report(project: Path, truth: dict[str, str], wnids: list[str], args) -> int:
    info = read_info(proposals_path(project))
    rows = read_proposals(project).to_pylist()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {args.embedder}: split fitted to the true classes of every image, {FOLDS}-fold cross-fitted; "
          f"load {load:.2f}")
    pooled = [0, 0]
    for wnid in wnids:
        pool = load_class_pool(project, wnid, info["vectors"], info["standardize"])
        proposals = [r for r in rows if r["wnid"] == wnid]
        if pool is None or not proposals:
            continue
        labels = np.array([truth.get(f, "") for f in pool.files])
        kinds = sorted(set(labels))
        p = cross_fitted(pool.components, labels == kinds[0]) if len(kinds) == 2 else np.full(len(labels), 0.5)
        a, b = pool.rows([r["file_a"] for r in proposals]), pool.rows([r["file_b"] for r in proposals])
        same_side = p[a] * p[b] + (1 - p[a]) * (1 - p[b])
        good = np.array([truth.get(r["file_a"]) == truth.get(r["file_b"]) for r in proposals])
        shown = good[np.argsort(-same_side, kind="stable")]
        enough = int(np.searchsorted(np.cumsum(shown), PAIRS_PER_CLASS)) + 1
        after = shown[args.decisions:enough]
        pooled[0] += int(after.sum())
        pooled[1] += len(after)
        note = "" if len(kinds) == 2 else f" ({len(kinds)} true classes: no split fitted)"
        print(f"{wnid}: all {len(proposals)} proposals {good.mean():.2f} within one class; in the best split's order "
              f"{min(enough, len(shown))} shown for {PAIRS_PER_CLASS} accepts, after the first {args.decisions} "
              f"{after.mean() if len(after) else float('nan'):.2f}{note}")
    print(f"ceiling after {args.decisions}: {pooled[0] / max(pooled[1], 1):.2f} ({pooled[0]} of {pooled[1]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
