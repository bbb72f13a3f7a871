"""`propose`: scan, embed what the cache lacks, score and match each class, write proposals.parquet.

Embedding runs in a pool of worker processes over images (decode-bound: one core per worker);
results reach the cache in small transactions, so an interrupted run resumes where it stopped and
a re-run embeds only new or changed files. Then, per class: near-duplicates collapsed, images of
accepted pairs (and their same-photo copies) left out, decided pairs (accepted, rejected,
refuted) never proposed again, scores, greedy matching.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curation_app.proposals.cache import EmbeddingCache, Entry
from curation_app.proposals.duplicates import CROP_SIMILARITY, crop_similarity, same_photo_groups
from curation_app.proposals.embedders import DEFAULT_SPEC, Embedder, load_embedder, parse_spec
from curation_app.proposals.output import write_proposals
from curation_app.proposals.scoring import class_statistics, pair_scores, standardise
from curation_app.proposals.selection import greedy_matching
from curation_app.proposals.worker import Outcome, Task, init_worker, process
from pair_manifest.errors import UserError

FLUSH_EVERY = 128  # images per cache transaction
FLUSH_SECONDS = 1.0  # ... or this much time, whichever comes first


@dataclass
class ProposeSummary:
    embedder: str
    classes: int = 0
    images: int = 0
    embedded: int = 0  # decoded and embedded in this run
    reused: int = 0  # taken from the cache (same path and stat, or same bytes under a new name)
    failed: list[str] = field(default_factory=list)
    duplicates: int = 0  # files left out as copies of another file of their class
    used: int = 0  # files left out because they (or a copy) are in an accepted pair
    pairs: int = 0
    seconds: float = 0.0
    path: Path | None = None

    def lines(self) -> list[str]:
        out = [f"{self.classes} classes, {self.images} images: {self.embedded} embedded, {self.reused} from the cache, "
               f"{len(self.failed)} unreadable",
               f"left out: {self.duplicates} near-duplicate copies, {self.used} images already in accepted pairs",
               f"{self.pairs} pairs proposed with {self.embedder} in {self.seconds:.1f} s -> {self.path}"]
        return out + [f"skipped {reason}" for reason in self.failed]


@dataclass
class ClassProposals:
    pairs: list[tuple[str, str, float]]  # (file_a, file_b, score), best first
    duplicates: int
    used: int


def propose_for_class(data, standardize: str, used: set[str], decided: set[tuple[str, str]],
                      limit: int | None, images_root: Path | None = None) -> ClassProposals:
    """Pairs for one class. `data` is the class's `ClassData` (files sorted by name)."""
    if len(data) < 2:
        return ClassProposals([], 0, 0)
    objects, contexts = standardise(data.vectors, data.context,
                                    class_statistics(data.vectors, data.context, standardize))
    members: dict[int, list[int]] = defaultdict(list)
    paths = [images_root / f for f in data.files] if images_root is not None else None
    for index, group in enumerate(same_photo_groups(data.sha256, data.phash, data.phash_mirrored, paths)):
        members[group].append(index)
    keep, used_count, duplicates = [], 0, 0
    for indices in members.values():
        if any(data.files[i] in used for i in indices):
            used_count += sum(data.files[i] in used for i in indices)
            duplicates += sum(data.files[i] not in used for i in indices)
            continue
        # The copy to keep: the biggest file (best quality), then the first name.
        keep.append(min(indices, key=lambda i: (-data.sizes[i], data.files[i])))
        duplicates += len(indices) - 1
    pool = np.array(sorted(keep), dtype=np.int64)
    if len(pool) < 2:
        return ClassProposals([], duplicates, used_count)
    scores = pair_scores(objects[pool], contexts[pool], objects[pool], contexts[pool])
    position = {data.files[i]: k for k, i in enumerate(pool)}
    forbidden = np.zeros((len(pool), len(pool)), dtype=bool)
    for file_a, file_b in decided:
        if file_a in position and file_b in position:
            forbidden[position[file_a], position[file_b]] = forbidden[position[file_b], position[file_a]] = True
    windows = data.windows[pool].astype(np.float32)

    def is_crop(i: int, j: int) -> bool:
        return bool(crop_similarity(windows, np.array([i]), np.array([j]))[0] >= CROP_SIMILARITY)

    chosen = greedy_matching(scores, forbidden=forbidden, veto=is_crop, limit=limit)
    pairs = [(data.files[pool[i]], data.files[pool[j]], float(scores[i, j])) for i, j in chosen]
    return ClassProposals(pairs, duplicates, used_count)


def _plan(report, cache: EmbeddingCache, embedder_key: str) -> tuple[list[Task], int]:
    """Tasks for files the cache cannot answer, and how many it can."""
    known = cache.known_files()
    complete = cache.complete(embedder_key)
    tasks, reused = [], 0
    for wnid in report.classes:
        for file in report.usable_files(wnid):
            path = report.root / file
            try:
                stat = path.stat()
            except OSError:
                continue  # removed since the scan: not in the pool
            row = known.get(file)
            same = row is not None and row[0] == stat.st_size and row[1] == stat.st_mtime_ns
            if same and row[2] in complete:
                reused += 1
            else:
                tasks.append(Task(file, str(path), stat.st_size, stat.st_mtime_ns, row[2] if same else None))
    return tasks, reused


def _flush(cache: EmbeddingCache, embedder: Embedder, outcomes: list[Outcome], summary: ProposeSummary) -> None:
    fresh = [o for o in outcomes if o.error is None and not o.cached]
    vectors = embedder.embed(np.stack([o.prepared for o in fresh])) if fresh else []
    entries = [Entry(o.task.file, o.task.size, o.task.mtime_ns, o.sha256, o.facts, v) for o, v in zip(fresh, vectors)]
    entries += [Entry(o.task.file, o.task.size, o.task.mtime_ns, o.sha256, None, None) for o in outcomes if o.cached]
    if entries:
        cache.write(embedder.cache_key, entries)
    summary.embedded += len(fresh)
    summary.reused += sum(o.cached for o in outcomes)
    summary.failed += [o.error for o in outcomes if o.error is not None]
    outcomes.clear()


def _embed(tasks: list[Task], cache: EmbeddingCache, embedder: Embedder, workers: int, progress: bool,
           summary: ProposeSummary) -> None:
    from tqdm import tqdm

    if not tasks:
        return
    bar = tqdm(total=len(tasks), desc="embedding", unit="img", disable=not progress, smoothing=0.1)
    init_args = (str(cache.path), embedder.cache_key, embedder.preparer())
    pending: list[Outcome] = []
    last_flush = time.monotonic()
    pool = None
    if workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=init_worker, initargs=init_args)
        outcomes = pool.imap_unordered(process, tasks, chunksize=8)
    else:
        init_worker(*init_args)
        outcomes = map(process, tasks)
    try:
        for outcome in outcomes:
            pending.append(outcome)
            bar.update()
            if len(pending) >= FLUSH_EVERY or time.monotonic() - last_flush > FLUSH_SECONDS:
                _flush(cache, embedder, pending, summary)
                last_flush = time.monotonic()
        _flush(cache, embedder, pending, summary)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()


def _selection(classes_csv: str | None, project: Path):
    from pair_manifest.classes import load_selection, selection_from_wnids
    from pair_manifest.store import STORE_FILE, DecisionStore

    if classes_csv:
        return load_selection(classes_csv)
    if (project / STORE_FILE).is_file():
        store = DecisionStore.for_project(project)
        try:
            wnids = store.class_wnids()
        finally:
            store.close()
        if wnids:
            return selection_from_wnids(wnids, f"{project / STORE_FILE} class list")
    return load_selection()


def propose(images_root: str | Path, project_dir: str | Path, *, classes: str | None = None,
            embedder: str = DEFAULT_SPEC, per_class: int | None = None, workers: int | None = None,
            progress: bool = False) -> ProposeSummary:
    from tqdm import tqdm

    from pair_manifest.scan import scan_root
    from pair_manifest.store import STORE_FILE, DecisionStore

    started = time.monotonic()
    spec = parse_spec(embedder)
    if per_class is not None and per_class < 1:
        raise UserError(f"--per-class: must be at least 1, got {per_class}")
    root, project = Path(images_root), Path(project_dir)
    if not root.is_dir():
        raise UserError(f"--images {root}: not a folder")
    if project.exists() and not project.is_dir():
        raise UserError(f"--project {project}: exists and is not a folder")
    selection = _selection(classes, project)
    model = load_embedder(spec)
    workers = max(1, workers or os.cpu_count() or 1)
    # The project's own files (decision store, embedding cache) are never opened as images.
    report = scan_root(root, selection, workers=workers, progress=progress, protected=(project,))
    if not report.classes:
        raise UserError(f"--images {root}: none of the {len(selection)} selected classes has a folder there")

    summary = ProposeSummary(embedder=model.label)
    cache = EmbeddingCache.for_project(project)
    try:
        tasks, summary.reused = _plan(report, cache, model.cache_key)
        _embed(tasks, cache, model, workers, progress, summary)
        for wnid in report.classes:
            cache.keep_only(wnid, set(report.usable_files(wnid)))
        cache.set_meta({"images_root": str(root.resolve()), "embedder_spec": str(spec)})

        store = DecisionStore.for_project(project) if (project / STORE_FILE).is_file() else None
        rows = []
        for wnid in tqdm(report.classes, desc="matching", unit="class", disable=not progress):
            data, _ = cache.load(model.cache_key, wnid, sorted(report.usable_files(wnid)))
            used = store.used_images(wnid) if store else set()
            decided = store.decided_pairs(wnid) if store else set()
            result = propose_for_class(data, model.standardize, used, decided, per_class, root)
            summary.duplicates += result.duplicates
            summary.used += result.used
            rows += [{"wnid": wnid, "file_a": a, "file_b": b, "score": score, "rank": rank, "embedder": model.label}
                     for rank, (a, b, score) in enumerate(result.pairs)]
        if store:
            store.close()
    finally:
        cache.close()
    summary.classes = len(report.classes)
    summary.images = sum(len(c.usable) for c in report.classes.values())
    summary.pairs = len(rows)
    summary.path = write_proposals(project, rows, {"embedder": str(spec), "label": model.label,
                                                   "per_class": per_class})
    summary.seconds = time.monotonic() - started
    return summary
