"""How many proposed pairs an annotator accepts: precision measured against ground truth.

    .venv/bin/python benchmarks/proposals_precision.py --images DIR --truth CSV [--embedder SPEC] [--decisions N]
        [--compare-learning] [--plot PNG] [--workers N] [--offline]

`--truth` is a CSV `file,true_wnid` naming each photo's real class (`file` as `<wnid>/<name>`
under `--images`), for folders that merge several real classes, such as
`merged_siblings/` (two sibling classes per folder): a pair across two real classes is one an
annotator rejects. For each embedder (`--embedder` may be repeated; default `pixels`) the script

1. runs the product's `propose` on the folder (a fresh project in a temporary folder);
2. reports the share of pairs within one real class among the best 50 and the best 157
   proposals of each class, before any decision;
3. lets a simulated annotator work through each class in the real curation service
   (`curation_app.service.Curation`, verify mode: the order the app shows, learning from the
   class's decisions as the app does), accepting a pair when both photos have the same real class
   and rejecting it otherwise, until 157 are accepted or the app has nothing more to show in the
   class; and reports the precision of what the annotator was shown in each block of N decisions,
   after the first N (`--decisions`, default 50), and the pairs shown per accepted pair.

`--compare-learning` runs the annotator twice per embedder, first with proposals shown in rank
order whatever was decided, then as the app does (learning). The last line is
`precision@157 X.XX, shown per accept Y.YY`: the best-157 precision before any decision, and the
pairs shown per accept as the app works, of the last run. Runtime on 2 cores, 10 folders of 1,000
64x64 photos: about 1 minute of `propose` per embedder (pixels) and 1 to 2 minutes per annotator
run.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation_app.proposals.output import read_proposals  # noqa: E402
from curation_app.proposals.propose import propose  # noqa: E402
from pair_manifest.errors import UserError  # noqa: E402
from pair_manifest.protocol import PAIRS_PER_CLASS  # noqa: E402

ANNOTATOR = "simulated"
BEST = (50, PAIRS_PER_CLASS)


@dataclass
class Session:
    """One simulated annotator's run over every class."""

    label: str
    shown: dict[str, list[bool]] = field(default_factory=dict)  # class -> accepted?, in the order shown
    seconds: float = 0.0

    def blocks(self, size: int) -> list[tuple[int, int]]:
        """(accepted, shown) per block of `size` decisions, pooled over classes."""
        longest = max((len(v) for v in self.shown.values()), default=0)
        out = []
        for start in range(0, longest, size):
            chunks = [v[start:start + size] for v in self.shown.values() if len(v) > start]
            out.append((sum(sum(c) for c in chunks), sum(len(c) for c in chunks)))
        return out

    def after(self, warmup: int) -> tuple[int, int]:
        rest = [v[warmup:] for v in self.shown.values()]
        return sum(sum(r) for r in rest), sum(len(r) for r in rest)

    def shown_per_accept(self) -> float:
        accepted = sum(sum(v) for v in self.shown.values())
        return sum(len(v) for v in self.shown.values()) / max(accepted, 1)


def read_truth(path: Path, images: Path) -> dict[str, str]:
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise UserError(f"--truth {path}: {error.strerror or error}") from None
    if not rows or not {"file", "true_wnid"} <= set(rows[0]):
        raise UserError(f"--truth {path}: expected the columns file,true_wnid")
    return {r["file"]: r["true_wnid"] for r in rows}


def class_folders(images: Path, truth: dict[str, str]) -> list[str]:
    folders = sorted({f.split("/", 1)[0] for f in truth if "/" in f})
    present = [w for w in folders if (images / w).is_dir()]
    if not present:
        raise UserError(f"--images {images}: none of the truth file's folders is there")
    return present


def best_precision(project: Path, truth: dict[str, str]) -> dict[int, tuple[int, int]]:
    """(within one real class, pairs) among the best n proposals of each class, pooled."""
    rows = read_proposals(project).to_pylist()
    out = {}
    for n in BEST:
        chosen = [r for r in rows if r["rank"] < n]
        out[n] = (sum(truth.get(r["file_a"]) == truth.get(r["file_b"]) for r in chosen), len(chosen))
    return out


def annotate(images: Path, project: Path, classes_csv: Path, wnids: list[str], truth: dict[str, str], *,
             learning: bool, label: str) -> Session:
    """Work through every class in the real curation service, as an annotator would."""
    from curation_app.service import Curation
    from pair_manifest.classes import load_selection

    curation = Curation(images, project, load_selection(classes_csv), target=PAIRS_PER_CLASS)
    curation.proposals.learning = learning
    session = Session(label)
    started = time.monotonic()
    try:
        curation.set_mode(ANNOTATOR, "verify")
        for wnid in wnids:
            shown = session.shown.setdefault(wnid, [])
            view = curation.set_class(ANNOTATOR, wnid)
            while view.item is not None and view.item.wnid == wnid and view.item.files:
                a, b = view.item.files
                if a not in truth or b not in truth:
                    raise UserError(f"--truth: no real class for {a if a not in truth else b}")
                same = truth[a] == truth[b]
                shown.append(same)
                view = curation.decide(ANNOTATOR, view.item.key, "accept" if same else "reject")
            print(f"  {label}: {wnid}: {sum(shown)} accepted of {len(shown)} shown", file=sys.stderr, flush=True)
    finally:
        curation.store.close()
    session.seconds = time.monotonic() - started
    return session


def fraction(pair: tuple[int, int]) -> str:
    return f"{pair[0] / pair[1]:.2f}" if pair[1] else "-"


def report(session: Session, best: dict[int, tuple[int, int]], size: int) -> list[str]:
    blocks = session.blocks(size)
    accepted = sum(sum(v) for v in session.shown.values())
    shown = sum(len(v) for v in session.shown.values())
    reached = sum(sum(v) >= PAIRS_PER_CLASS for v in session.shown.values())
    lines = [f"== {session.label}",
             f"before any decision: best 50 per class {fraction(best[50])} ({best[50][1]} pairs), "
             f"best {PAIRS_PER_CLASS} {fraction(best[PAIRS_PER_CLASS])} ({best[PAIRS_PER_CLASS][1]} pairs)",
             f"shown per block of {size} decisions: " + " | ".join(
                 f"{k * size + 1}-{(k + 1) * size} {fraction(b)}" for k, b in enumerate(blocks)),
             f"after the first {size} decisions of each class: precision {fraction(session.after(size))} "
             f"({session.after(size)[0]} of {session.after(size)[1]})",
             f"pairs shown per accepted pair: {session.shown_per_accept():.2f} ({shown} shown, {accepted} accepted, "
             f"{reached} of {len(session.shown)} classes reached {PAIRS_PER_CLASS}; annotator run {session.seconds:.0f} s)"]
    return lines


def plot(sessions: list[Session], size: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for session in sessions:
        values = [a / n for a, n in session.blocks(size) if n]
        axis.plot(np.arange(1, len(values) + 1) * size, values, marker="o", label=session.label)
    classes = [sum(len(v) > k * size for v in sessions[-1].shown.values()) for k in range(len(sessions[-1].blocks(size)))]
    axis.set_title(f"classes still short of {PAIRS_PER_CLASS} in each block ({sessions[-1].label}): "
                   + " ".join(map(str, classes)), fontsize=8)
    axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel(f"decisions in the class (end of each block of {size})")
    axis.set_ylabel("precision of the pairs shown")
    axis.set_ylim(0.3, 1.0)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, type=Path, metavar="DIR", help="images root, one folder per class")
    parser.add_argument("--truth", required=True, type=Path, metavar="CSV", help="file,true_wnid of every photo")
    parser.add_argument("--embedder", action="append", metavar="SPEC", help="repeatable (default: pixels)")
    parser.add_argument("--decisions", type=int, default=50, metavar="N",
                        help="block size of the shown precision, and the first decisions the 'after' figure leaves out")
    parser.add_argument("--compare-learning", action="store_true",
                        help="also run the annotator with proposals in rank order (no learning), first")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="draw the precision per block of each run")
    parser.add_argument("--workers", type=int, default=None, help="propose's decoding processes (default: all cores)")
    parser.add_argument("--offline", action="store_true", default=None, help="download no weights")
    args = parser.parse_args(argv)
    if args.decisions < 1:
        parser.error("--decisions must be at least 1")
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return int(error.exit_code)


def run(args) -> int:
    import torch

    truth = read_truth(args.truth, args.images)
    wnids = class_folders(args.images, truth)
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"# {platform.node()}: {os.cpu_count()} cores, load {load[0]:.2f}; python {platform.python_version()}, "
          f"numpy {np.__version__}, torch {torch.__version__}; {len(wnids)} class folders, {len(truth)} photos with truth")
    sessions: list[Session] = []
    last = ""
    with tempfile.TemporaryDirectory(prefix="proposals-precision-") as scratch:
        classes_csv = Path(scratch) / "classes.csv"
        classes_csv.write_text("wnid\n" + "".join(f"{w}\n" for w in wnids))
        for number, spec in enumerate(args.embedder or ["pixels"]):
            started = time.monotonic()
            project = Path(scratch) / f"project-{number}"
            summary = propose(args.images, project, classes=str(classes_csv), embedder=spec, workers=args.workers,
                              progress=False, offline=args.offline)
            print(f"# propose {spec}: {summary.images} images, {summary.pairs} pairs in {time.monotonic() - started:.0f} s")
            best = best_precision(project, truth)
            runs = [False, True] if args.compare_learning else [True]
            for learning in runs:
                label = f"{short(spec)}, {'learning from decisions' if learning else 'rank order'}"
                run_project = Path(scratch) / f"project-{number}-{int(learning)}"
                _copy_project(project, run_project)
                session = annotate(args.images, run_project, classes_csv, wnids, truth, learning=learning, label=label)
                sessions.append(session)
                print("\n".join(report(session, best, args.decisions)), flush=True)
                last = (f"precision@{PAIRS_PER_CLASS} {fraction(best[PAIRS_PER_CLASS])}, "
                        f"shown per accept {session.shown_per_accept():.2f}")
    if args.plot:
        plot(sessions, args.decisions, args.plot)
        print(f"# plot: {args.plot}")
    print(last)
    return 0


def short(spec: str) -> str:
    """The SPEC as a label: a checkpoint by its run folder's name, not its whole path."""
    kind, _, rest = spec.partition(":")
    return f"checkpoint:{Path(rest).name}" if kind == "checkpoint" else spec


def _copy_project(source: Path, target: Path) -> None:
    """A fresh decision store per annotator run; the proposals and the embedding cache are shared.
    The cache is copied with SQLite's backup API: a connection may still hold part of it in its
    write-ahead log (with one worker, `propose` embeds in this process), which a file copy misses."""
    import shutil
    import sqlite3

    target.mkdir(parents=True)
    if (source / "proposals.parquet").exists():
        shutil.copy2(source / "proposals.parquet", target / "proposals.parquet")
    if (source / "embeddings.sqlite").exists():
        origin, copy = sqlite3.connect(source / "embeddings.sqlite"), sqlite3.connect(target / "embeddings.sqlite")
        try:
            origin.backup(copy)
        finally:
            origin.close()
            copy.close()


if __name__ == "__main__":
    raise SystemExit(main())
