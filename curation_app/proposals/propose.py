"""`propose`: scan, embed what the cache lacks, score and match each class, write proposals.parquet.

Embedding runs in a pool of worker processes over images (decode-bound: one core per worker);
results reach the cache in small transactions, so an interrupted run resumes where it stopped and
a re-run embeds only new or changed files. Then, per class: near-duplicates collapsed, images of
accepted pairs (and their same-photo copies) left out, decided pairs (accepted, rejected,
refuted) never proposed again, scores, greedy matching. A class whose pool (files and bytes),
decisions and settings are those of the previous run keeps its proposals without being matched
again (`class_fingerprint`).

One `propose` per project at a time (`.propose.lock` inside the project; a second one is refused
at once, naming the first). A full disk or a read-only project is one line naming the path; the
cache keeps every batch committed before, proposals.parquet is replaced whole or not at all, so a
re-run after space is freed carries on.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sqlite3
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curation_app.proposals.cache import EmbeddingCache, Entry
from curation_app.proposals.duplicates import CROP_SIMILARITY, crop_similarity, same_photo_groups
from curation_app.proposals.embedders import DEFAULT_SPEC, Embedder, load_embedder, parse_spec
from curation_app.proposals.output import proposals_path, read_info, read_table, write_proposals
from curation_app.proposals.reporting import Progress, progress_mode
from curation_app.proposals import scoring
from curation_app.proposals.scoring import Z_CLIP, class_statistics, pair_scores, standardise
from curation_app.proposals.selection import greedy_matching
from curation_app.proposals.worker import Outcome, Task, init_worker, process
from pair_manifest.errors import UserError
from pair_manifest.images import NEAR_DUPLICATE_BITS
from pair_manifest.locks import lock_inside, one_writer

FLUSH_EVERY = 128  # images per cache transaction
FLUSH_SECONDS = 1.0  # ... or this much time, whichever comes first
LOCK_FILE = ".propose.lock"  # its own name: the app and other commands lock the project folder too
LISTED_PROBLEMS = 20  # skipped files listed one per line; the rest are counted
# Everything besides the class's pool and decisions that changes a class's proposals.
MATCHING_VERSION = f"score-v3/clip-{Z_CLIP}/crop-{CROP_SIMILARITY}/phash-{NEAR_DUPLICATE_BITS}"
MAX_CONTEXT_WEIGHT = 10.0


@dataclass
class ProposeSummary:
    embedder: str
    classes: int = 0
    images: int = 0
    embedded: int = 0  # decoded and embedded in this run
    reused: int = 0  # taken from the cache (same path and stat, or same bytes under a new name)
    failed: list[str] = field(default_factory=list)  # "<file>: <why>" of images left out as unreadable
    unreadable_classes: list[str] = field(default_factory=list)  # "<wnid>/: <why>"
    duplicates: int = 0  # files left out as copies of another file of their class
    used: int = 0  # files left out because they (or a copy) are in an accepted pair
    matched: int = 0  # classes matched in this run
    kept: int = 0  # classes whose proposals were kept from the previous run (nothing changed)
    pairs: int = 0
    seconds: float = 0.0
    path: Path | None = None

    def lines(self) -> list[str]:
        out = [f"{self.classes} classes, {self.images} images: {self.embedded} embedded, {self.reused} from the cache, "
               f"{len(self.failed)} unreadable",
               f"left out: {self.duplicates} near-duplicate copies, {self.used} images already in accepted pairs",
               f"matched {self.matched} class(es), kept the proposals of {self.kept} unchanged class(es)",
               f"{self.pairs} pairs proposed with {self.embedder} in {self.seconds:.1f} s -> {self.path}"]
        out += [f"unreadable class folder {line} (its images are left out)" for line in self.unreadable_classes]
        out += [f"skipped {reason}" for reason in self.failed[:LISTED_PROBLEMS]]
        if len(self.failed) > LISTED_PROBLEMS:
            out.append(f"... and {len(self.failed) - LISTED_PROBLEMS} more unreadable image(s)")
        return out


@dataclass
class ClassProposals:
    pairs: list[tuple[str, str, float]]  # (file_a, file_b, score), best first
    duplicates: int
    used: int


def propose_for_class(data, standardize: str, used: set[str], decided: set[tuple[str, str]],
                      limit: int | None, images_root: Path | None = None,
                      context_weight: float | None = None) -> ClassProposals:
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
    scores = pair_scores(objects[pool], contexts[pool], objects[pool], contexts[pool], context_weight)
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


def _plan(report, cache: EmbeddingCache, embedder_key: str, summary: ProposeSummary) -> list[Task]:
    """Tasks for files the cache cannot answer (those it can are counted as reused). A file gone
    or unreadable since the scan is counted as unreadable, with its reason."""
    known = cache.known_files()
    complete = cache.complete(embedder_key)
    tasks, reused = [], 0
    for wnid in report.classes:
        for file in report.usable_files(wnid):
            path = report.root / file
            try:
                stat = path.stat()
            except OSError as error:
                summary.failed.append(f"{file}: gone since the scan ({error.strerror or error})")
                continue
            row = known.get(file)
            same = row is not None and row[0] == stat.st_size and row[1] == stat.st_mtime_ns
            if same and row[2] in complete:
                reused += 1
            else:
                tasks.append(Task(file, str(path), stat.st_size, stat.st_mtime_ns, row[2] if same else None))
    summary.reused = reused
    return tasks


def _write_cache(cache: EmbeddingCache, key: str, entries: list[Entry]) -> None:
    """Commit a batch; a full disk or a read-only file system is one line naming the cache, and
    every batch committed before stays (SQLite rolls the failed transaction back)."""
    try:
        cache.write(key, entries)
    except sqlite3.OperationalError as error:
        text = str(error).lower()
        if "full" in text:
            cause = "the disk is full: free space and run again"
        elif "readonly" in text or "read-only" in text:
            cause = "the file system is read-only or the file is not writable"
        else:
            cause = "cannot be written"
        raise UserError(f"{cache.path}: {error} ({cause}); images embedded before are kept, a re-run carries on") from None


def _flush(cache: EmbeddingCache, embedder: Embedder, outcomes: list[Outcome], summary: ProposeSummary) -> set[str]:
    """Embed and commit a batch; returns the files that failed."""
    fresh = [o for o in outcomes if o.error is None and not o.cached]
    vectors = embedder.embed(np.stack([o.prepared for o in fresh])) if fresh else []
    entries = [Entry(o.task.file, o.task.size, o.task.mtime_ns, o.sha256, o.facts, v) for o, v in zip(fresh, vectors)]
    entries += [Entry(o.task.file, o.task.size, o.task.mtime_ns, o.sha256, None, None) for o in outcomes if o.cached]
    if entries:
        _write_cache(cache, embedder.cache_key, entries)
    summary.embedded += len(fresh)
    summary.reused += sum(o.cached for o in outcomes)
    failed = [o for o in outcomes if o.error is not None]
    summary.failed += [o.error for o in failed]
    outcomes.clear()
    return {o.task.file for o in failed}


def _embed(tasks: list[Task], cache: EmbeddingCache, embedder: Embedder, workers: int, mode: str,
           summary: ProposeSummary) -> set[str]:
    """Embed `tasks` into the cache; returns the files that could not be read."""
    if not tasks:
        return set()
    progress = Progress(len(tasks), "embedding", "img", mode)
    init_args = (str(cache.path), embedder.cache_key, embedder.preparer())
    pending: list[Outcome] = []
    failed: set[str] = set()
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
            progress.update()
            if len(pending) >= FLUSH_EVERY or time.monotonic() - last_flush > FLUSH_SECONDS:
                failed |= _flush(cache, embedder, pending, summary)
                last_flush = time.monotonic()
        failed |= _flush(cache, embedder, pending, summary)
    finally:
        progress.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return failed


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


def class_fingerprint(settings: str, files: list[str], digests: dict[str, str], used: set[str],
                      decided: set[tuple[str, str]]) -> str:
    """What a class's proposals depend on: the run's settings, its pool (names and bytes), the
    images in accepted pairs and the decided pairs. Equal fingerprints, equal proposals."""
    text = json.dumps([settings, [(f, digests.get(f, "")) for f in sorted(files)], sorted(used),
                       sorted(map(list, decided))], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class _Previous:
    """The previous run's proposals per class, with what they were computed from."""

    fingerprints: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)
    left_out: dict = field(default_factory=dict)  # wnid -> [near-duplicate copies, images in accepted pairs]

    @classmethod
    def read(cls, project: Path, label: str) -> "_Previous":
        path = proposals_path(project)
        if not path.is_file():
            return cls()
        info = read_info(path)
        fingerprints, left_out = info.get("fingerprints"), info.get("left_out")
        if not isinstance(fingerprints, dict) or not isinstance(left_out, dict):
            return cls()
        try:
            table = read_table(path)
        except UserError:
            return cls()
        rows: dict[str, list[dict]] = defaultdict(list)
        for row in table.to_pylist():
            if row["embedder"] == label:
                rows[row["wnid"]].append(row)
        return cls(fingerprints, rows, left_out)

    def kept(self, wnid: str, fingerprint: str) -> list[dict] | None:
        """The class's rows, best first, if they were computed from the same fingerprint."""
        if self.fingerprints.get(wnid) != fingerprint or wnid not in self.left_out:
            return None
        return sorted(self.rows.get(wnid, []), key=lambda r: r["rank"])


def propose(images_root: str | Path, project_dir: str | Path, *, classes: str | None = None,
            embedder: str = DEFAULT_SPEC, per_class: int | None = None, workers: int | None = None,
            progress: bool | str = False, offline: bool | None = None,
            context_weight: float | None = None) -> ProposeSummary:
    """`progress`: False/'off', True (a bar on a terminal, log lines elsewhere), 'bar' or 'lines';
    `context_weight`: the score's context term (default `scoring.CONTEXT_WEIGHT`)."""
    started = time.monotonic()
    spec = parse_spec(embedder)
    if per_class is not None and per_class < 1:
        raise UserError(f"--per-class: must be at least 1, got {per_class}")
    weight = scoring.CONTEXT_WEIGHT if context_weight is None else float(context_weight)
    if not 0.0 <= weight <= MAX_CONTEXT_WEIGHT:
        raise UserError(f"--context-weight: must be between 0 and {MAX_CONTEXT_WEIGHT:g}, got {context_weight}")
    root, project = Path(images_root), Path(project_dir)
    if not root.is_dir():
        raise UserError(f"--images {root}: not a folder")
    if project.exists() and not project.is_dir():
        raise UserError(f"--project {project}: exists and is not a folder")
    mode = progress if isinstance(progress, str) else progress_mode(progress)
    with one_writer(lock_inside(project, LOCK_FILE), project, "project's proposals"):
        return _propose(root, project, spec, classes, per_class, workers, mode, offline, weight, started)


def _propose(root: Path, project: Path, spec, classes, per_class, workers, mode: str, offline, weight: float,
             started) -> ProposeSummary:
    from pair_manifest.scan import scan_root
    from pair_manifest.store import STORE_FILE, DecisionStore

    selection = _selection(classes, project)
    model = load_embedder(spec, offline=offline)
    workers = max(1, workers or os.cpu_count() or 1)
    if mode == "lines":
        print(f"scanning the {len(selection)} selected classes under {root}", file=sys.stderr, flush=True)
    # The project's own files (decision store, embedding cache) are never opened as images.
    report = scan_root(root, selection, workers=workers, progress=mode == "bar", protected=(project,))
    if not report.classes:
        raise UserError(f"--images {root}: none of the {len(selection)} selected classes has a folder there")

    summary = ProposeSummary(embedder=model.label)
    summary.unreadable_classes = [f"{folder}: {reason}" for folder, reason in report.unreadable]
    summary.failed += [f"{file}: {reason}" for file, reason in report.rejected]
    cache = EmbeddingCache.for_project(project)
    settings = json.dumps([MATCHING_VERSION, weight, model.cache_key, model.standardize, per_class,
                           str(root.resolve())])
    previous = _Previous.read(project, model.label)
    try:
        tasks = _plan(report, cache, model.cache_key, summary)
        unreadable = _embed(tasks, cache, model, workers, mode, summary)
        for wnid in report.classes:
            try:
                cache.keep_only(wnid, set(report.usable_files(wnid)) - unreadable)
            except sqlite3.OperationalError as error:
                raise UserError(f"{cache.path}: {error}; images embedded are kept, a re-run carries on") from None
        try:
            cache.set_meta({"images_root": str(root.resolve()), "embedder_spec": str(spec),
                            "context_weight": repr(weight)})
        except sqlite3.OperationalError as error:
            raise UserError(f"{cache.path}: {error}; images embedded are kept, a re-run carries on") from None

        digests = {file: row[2] for file, row in cache.known_files().items()}
        store = DecisionStore.for_project(project) if (project / STORE_FILE).is_file() else None
        rows, fingerprints, left_out = [], {}, {}
        matching = Progress(len(report.classes), "matching", "class", mode)
        try:
            for wnid in report.classes:
                files = sorted(set(report.usable_files(wnid)) - unreadable)
                used = store.used_images(wnid) if store else set()
                decided = store.decided_pairs(wnid) if store else set()
                fingerprint = class_fingerprint(settings, files, digests, used, decided)
                fingerprints[wnid] = fingerprint
                kept = previous.kept(wnid, fingerprint)
                if kept is not None:
                    rows += kept
                    left_out[wnid] = previous.left_out[wnid]
                    summary.kept += 1
                else:
                    data, _ = cache.load(model.cache_key, wnid, files)
                    result = propose_for_class(data, model.standardize, used, decided, per_class, root, weight)
                    left_out[wnid] = [result.duplicates, result.used]
                    summary.matched += 1
                    rows += [{"wnid": wnid, "file_a": a, "file_b": b, "score": score, "rank": rank,
                              "embedder": model.label} for rank, (a, b, score) in enumerate(result.pairs)]
                summary.duplicates += left_out[wnid][0]
                summary.used += left_out[wnid][1]
                matching.update()
        finally:
            matching.close()
            if store:
                store.close()
    finally:
        cache.close()
    summary.classes = len(report.classes)
    summary.images = sum(len(c.usable) for c in report.classes.values())
    summary.pairs = len(rows)
    summary.path = write_proposals(project, rows, {
        "embedder": str(spec), "label": model.label, "per_class": per_class, "vectors": model.cache_key,
        "context_weight": weight,
        "standardize": model.standardize, "fingerprints": fingerprints, "left_out": left_out})
    summary.seconds = time.monotonic() - started
    return summary
