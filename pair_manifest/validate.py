"""`manifest validate`: every problem of a manifest, listed, instead of the first one.

Checks the schema, the class list, pair ids, ranks, the one-pair-per-image policy and the
decision log; with an images root also that every file exists inside it, has the recorded bytes
and an intact image structure (as `scan` checks it); with `pixels` also that every image decodes
and that the two photos of a pair are not one photo.

Why pixels are a separate step: a file whose bytes match the manifest's SHA-256 is the file the
decision store decoded and compared when the pair was accepted, so the byte check answers the
usual question ("is my copy of the images the one the manifest was made from?") by reading and
hashing, which runs at disk speed. Decoding every image is bounded by JPEG entropy decoding
(about 1 ms per ILSVRC photo per core), several times slower: it is for manifests made outside
this toolkit. Both run on every core.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from pair_manifest.classes import imagenet_classes
from pair_manifest.decisions import TAGS, VERDICTS
from pair_manifest.errors import ProblemsFound, UserError
from pair_manifest.file_ids import check_file_id, pair_id, resolve_image
from pair_manifest.manifest import REVIEW_STATUSES, Manifest, read_manifest


def validate_manifest(path: str | Path, images_root: str | Path | None = None, *, pixels: bool = False,
                      progress: bool = False) -> list[str]:
    """All problems found (an empty list means the manifest is valid)."""
    try:
        manifest = read_manifest(path)
    except UserError as error:
        return [str(error)]
    return manifest_problems(manifest, images_root, pixels=pixels, progress=progress)


def read_valid_manifest(path: str | Path, consequence: str) -> Manifest:
    """The manifest at `path`, or ProblemsFound listing every problem; `consequence` says what
    the refusing command did not do ("nothing built", "no statistics")."""
    try:
        manifest = read_manifest(path)
    except UserError as error:
        raise ProblemsFound(f"{path}: invalid manifest, {consequence}", [str(error)]) from None
    problems = manifest_problems(manifest)
    if problems:
        raise ProblemsFound(f"{path}: invalid manifest, {consequence} (details: semantic-pairs manifest validate "
                            f"{path})", problems)
    return manifest


# The columns the checks read: converting `decided_at` to Python datetimes would cost more than
# all the checks together (pyarrow imports pandas for time zones).
_PAIR_COLUMNS = ["pair_id", "wnid", "label", "file_a", "file_b", "sha256_a", "sha256_b", "tags", "rank_in_class",
                 "review_status"]
_DECISION_COLUMNS = ["seq", "wnid", "verdict", "review_of", "undo_of", "file_a", "file_b", "sha256_a", "sha256_b", "tags"]


def manifest_problems(manifest: Manifest, images_root: str | Path | None = None, *, pixels: bool = False,
                      progress: bool = False) -> list[str]:
    """All problems of a manifest already read (`validate_manifest` without the read)."""
    rows = manifest.pairs.select(_PAIR_COLUMNS).to_pylist()
    problems: list[str] = []
    known = imagenet_classes()
    if not manifest.class_wnids:
        problems.append("metadata: the class list is missing, labels cannot be interpreted")
    label_of = {w: i for i, w in enumerate(manifest.class_wnids)}
    for wnid in manifest.class_wnids:
        if wnid not in known:
            problems.append(f"metadata: class {wnid} is not an ImageNet-1K class")
    ids = Counter(row["pair_id"] for row in rows)
    known_tags = set(TAGS)
    used: dict[str, list[str]] = defaultdict(list)
    ranks: dict[str, list[int]] = defaultdict(list)
    for number, row in enumerate(rows):
        found = []  # this row's problems, prefixed with where it is once there are any
        wnid, file_a, file_b = row["wnid"], row["file_a"], row["file_b"]
        if wnid not in label_of:
            found.append(f"class {wnid} is not in the manifest's class list")
        elif row["label"] != label_of[wnid]:
            found.append(f"label {row['label']} but {wnid} is label {label_of[wnid]}")
        for file in (file_a, file_b):
            try:
                check_file_id(wnid, file)
            except UserError as error:
                found.append(str(error))
        if file_a == file_b:
            found.append(f"file_a and file_b are the same file {file_a}")
        elif file_a > file_b:
            found.append("files are not in canonical order (file_a < file_b)")
        expected_id = pair_id(file_a, file_b)
        if row["pair_id"] != expected_id:
            found.append(f"pair_id does not match its files (expected {expected_id})")
        if ids[row["pair_id"]] > 1:
            found.append(f"pair listed {ids[row['pair_id']]} times")
        if row["sha256_a"] == row["sha256_b"]:
            found.append("both files have the same bytes")
        if not known_tags.issuperset(row["tags"]):
            found.append(f"unknown tag(s) {', '.join(sorted(set(row['tags']) - known_tags))}")
        if row["review_status"] not in REVIEW_STATUSES:
            found.append(f"review_status '{row['review_status']}' is not one of {', '.join(REVIEW_STATUSES)}")
        if found:
            problems += [f"row {number} ({row['pair_id']}): {problem}" for problem in found]
        used[file_a].append(row["pair_id"])
        used[file_b].append(row["pair_id"])
        ranks[wnid].append(row["rank_in_class"])
    for file, pairs in sorted(used.items()):
        if len(pairs) > 1:
            problems.append(f"{file}: used in {len(pairs)} accepted pairs ({', '.join(pairs)}); at most one allowed")
    for wnid, class_ranks in sorted(ranks.items()):
        if sorted(class_ranks) != list(range(len(class_ranks))):
            problems.append(f"class {wnid}: rank_in_class must be 0..{len(class_ranks) - 1} without gaps or repeats")
    if manifest.decisions is not None:
        problems += _check_log(rows, manifest.decisions.select(_DECISION_COLUMNS).to_pylist())
    if images_root is not None:
        problems += _check_files(rows, Path(images_root), progress, pixels=pixels)
    return problems


def _check_log(rows: list[dict], decisions: list[dict]) -> list[str]:
    """The log must be one a store could have written, and every accepted pair must have its live
    accept in it."""
    problems = []
    seqs: set[int] = set()
    known_tags = set(TAGS)
    for number, d in enumerate(decisions):
        where = f"decisions row {number} (seq {d['seq']})"
        if d["seq"] in seqs:
            problems.append(f"{where}: seq repeats an earlier row")
        if d["verdict"] not in VERDICTS:
            problems.append(f"{where}: verdict '{d['verdict']}' is not one of {', '.join(VERDICTS)}")
        elif (d["verdict"] == "undo") != (d["undo_of"] is not None):
            problems.append(f"{where}: " + ("an undo must name the decision it undoes in undo_of"
                                            if d["verdict"] == "undo" else "only an undo may set undo_of"))
        for name in ("review_of", "undo_of"):
            if d[name] is not None and d[name] not in seqs:
                problems.append(f"{where}: {name} {d[name]} is not an earlier decision of this log")
        for file in (d["file_a"], d["file_b"]):
            try:
                check_file_id(d["wnid"], file)
            except UserError as error:
                problems.append(f"{where}: {error}")
        if not known_tags.issuperset(d["tags"]):
            problems.append(f"{where}: unknown tag(s) {', '.join(sorted(set(d['tags']) - known_tags))}")
        seqs.add(d["seq"])
    undone = {d["undo_of"] for d in decisions if d["undo_of"] is not None}
    accepts = {(d["file_a"], d["file_b"], d["sha256_a"], d["sha256_b"])
               for d in decisions if d["verdict"] == "accept" and d["review_of"] is None and d["seq"] not in undone}
    return problems + [f"row {n} ({row['pair_id']}): no live accept decision for this pair in decisions.parquet"
                       for n, row in enumerate(rows)
                       if (row["file_a"], row["file_b"], row["sha256_a"], row["sha256_b"]) not in accepts]


def _check_files(rows: list[dict], root: Path, progress: bool, workers: int | None = None,
                 pixels: bool = False) -> list[str]:
    """Every file against the manifest's SHA-256 and its image structure (header and end marker,
    as `scan` checks it); with `pixels`, also that it decodes and that the two photos of a pair
    are not one photo. Pairs are checked on every core."""
    if not root.is_dir():
        return [f"{root}: images root is not a folder"]
    pairs = [(row["pair_id"], row["file_a"], row["file_b"], row["sha256_a"], row["sha256_b"]) for row in rows]
    workers = max(1, min(workers or os.cpu_count() or 1, len(pairs)))
    chunks = [pairs[i::workers * 8] for i in range(workers * 8)] if workers > 1 else [pairs]
    problems: list[tuple[str, str]] = []
    with tqdm(total=len(pairs), desc="checking images", unit="pair", disable=not progress, leave=False) as bar:
        if workers == 1:
            for chunk in chunks:
                problems += _pair_problems(str(root), chunk, pixels)
                bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for chunk, found in zip(chunks, pool.map(_pair_problems, [str(root)] * len(chunks), chunks,
                                                         [pixels] * len(chunks))):
                    problems += found
                    bar.update(len(chunk))
    order = {pair[0]: n for n, pair in enumerate(pairs)}
    return [problem for _, problem in sorted(problems, key=lambda item: order[item[0]])]


def _pair_problems(root: str, pairs: list[tuple[str, str, str, str, str]], pixels: bool) -> list[tuple[str, str]]:
    """(pair_id, problem) for each problem of these pairs' files (run in a worker process)."""
    from pair_manifest.images import ImageReadError, image_facts, probe, sha256_file
    from pair_manifest.near_duplicates import same_photo_files

    found = []
    for pair, file_a, file_b, sha_a, sha_b in pairs:
        facts, paths = [], []
        for side, file, expected in (("a", file_a, sha_a), ("b", file_b, sha_b)):
            try:
                path = resolve_image(root, file)
                if pixels:
                    facts.append(image_facts(path, name=file))
                    digest = facts[-1].sha256
                else:
                    digest = sha256_file(path)
                    probe(path)
            except UserError as error:
                found.append((pair, str(error) if not isinstance(error, ImageReadError)
                              else f"{file}: {error.reason}: {error.detail}"))
                continue
            except OSError as error:
                found.append((pair, f"{file}: cannot be read ({error.strerror or error})"))
                continue
            if digest != expected:
                found.append((pair, f"{file}: bytes differ from the manifest's sha256_{side}"))
            paths.append(path)
        if pixels and len(facts) == 2 and sha_a != sha_b:
            try:
                if same_photo_files(facts[0], facts[1], paths[0], paths[1], names=(file_a, file_b)):
                    found.append((pair, f"pair {pair}: {file_a} and {file_b} are near-duplicates (one photo)"))
            except ImageReadError as error:
                found.append((pair, f"{error.path}: {error.reason}: {error.detail}"))
    return found
