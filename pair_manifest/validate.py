"""`manifest validate`: every problem of a manifest, listed, instead of the first one.

Checks the schema, the class list, pair ids, ranks, the one-pair-per-image policy and the
decision log; with an images root also that every file exists inside it, has the recorded bytes,
decodes, and that the two photos of a pair are not near-duplicates.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from tqdm import tqdm

from pair_manifest.classes import imagenet_classes
from pair_manifest.errors import ProblemsFound, UserError
from pair_manifest.manifest import REVIEW_STATUSES, Manifest, read_manifest
from pair_manifest.store import TAGS, VERDICTS, check_file_id, pair_id, resolve_image


def validate_manifest(path: str | Path, images_root: str | Path | None = None, *,
                      progress: bool = False) -> list[str]:
    """All problems found (an empty list means the manifest is valid)."""
    try:
        manifest = read_manifest(path)
    except UserError as error:
        return [str(error)]
    return manifest_problems(manifest, images_root, progress=progress)


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


def manifest_problems(manifest: Manifest, images_root: str | Path | None = None, *,
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
        problems += _check_files(rows, Path(images_root), progress)
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


def _check_files(rows: list[dict], root: Path, progress: bool) -> list[str]:
    from pair_manifest.images import NEAR_DUPLICATE_BITS, ImageReadError, open_rgb, perceptual_hash, sha256_file

    problems = []
    if not root.is_dir():
        return [f"{root}: images root is not a folder"]
    for row in tqdm(rows, desc="checking images", unit="pair", disable=not progress, leave=False):
        hashes = []
        for side in ("a", "b"):
            file = row[f"file_{side}"]
            try:
                path = resolve_image(root, file)
                if sha256_file(path) != row[f"sha256_{side}"]:
                    problems.append(f"{file}: bytes differ from the manifest's sha256_{side}")
                hashes.append(perceptual_hash(open_rgb(path, name=file, max_side=128)))
            except (UserError, ImageReadError) as error:
                problems.append(str(error))
        if len(hashes) == 2 and row["sha256_a"] != row["sha256_b"]:
            distance = hashes[0].distance(hashes[1])
            if distance < NEAR_DUPLICATE_BITS:
                problems.append(f"pair {row['pair_id']}: {row['file_a']} and {row['file_b']} are near-duplicates "
                                f"({distance} bits apart)")
    return problems
