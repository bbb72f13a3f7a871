"""`manifest import`: pairs curated elsewhere (a CSV) become a manifest, validated exactly like
decisions taken in the app (the rows are recorded into a real decision store, through its policy).

CSV columns: `wnid,file_a,file_b[,tags,annotator]`, files as `<wnid>/<name>` relative to the images
root, tags separated by `|`. Row order is the order of acceptance, so it defines `rank_in_class`.
Every bad row is reported with its line (and column, for a malformed row or header), and nothing
is written unless all rows are good. `decided_at` is the import time, or `SOURCE_DATE_EPOCH` when
set (reproducible builds).

At the size of a release (29,359 pairs, 58,718 photos) nearly all the work is reading and
hashing the photos (SHA-256 and the perceptual hash of a small grey decode): that runs on every
core, and the rows are then recorded in one transaction.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pair_manifest.classes import ClassSelection, imagenet_classes, is_wnid
from pair_manifest.errors import ProblemsFound, UserError
from pair_manifest.locks import refuse_a_file_in_the_way
from pair_manifest.manifest import Manifest, export_store
from pair_manifest.decisions import NewDecision, canonical_tags, utc_now
from pair_manifest.file_ids import canonical_pair, check_file_id
from pair_manifest.store import DecisionStore

REQUIRED = ("wnid", "file_a", "file_b")
OPTIONAL = ("tags", "annotator")
COLUMNS = REQUIRED + OPTIONAL
PARALLEL_FROM = 256  # photos: fewer are hashed in this process (a pool costs more than it saves)
PROGRESS_SECONDS = 5.0  # a progress line this often when stderr is not a terminal


@dataclass(frozen=True)
class CsvRow:
    line: int
    wnid: str
    file_a: str
    file_b: str
    tags: str
    annotator: str


def _decided_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            moment = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise UserError(f"SOURCE_DATE_EPOCH: '{epoch}' is not a number of seconds") from None
        return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return utc_now()


def read_pairs_csv(csv_path: Path) -> tuple[list[CsvRow], list[tuple[int, str]]]:
    """The rows, and (line, problem) for every malformed one. A header that cannot be used (a
    required column missing, a column named twice, a column this format does not have) is
    refused at once, naming line 1 and the column."""
    name = csv_path.name
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            try:
                header = [column.strip() for column in next(reader, [])]
                records = [(reader.line_num, record) for record in reader]
            except csv.Error as error:
                raise UserError(f"{csv_path} line {reader.line_num + 1}: not a readable CSV row ({error})") from None
    except FileNotFoundError:
        raise UserError(f"{csv_path}: no such CSV file") from None
    except IsADirectoryError:
        raise UserError(f"{csv_path}: is a folder, not a CSV file") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{csv_path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except OSError as error:
        raise UserError(f"{csv_path}: cannot read the CSV file ({error.strerror or error})") from None
    if not header:
        raise UserError(f"{csv_path}: empty file (expected a header {','.join(REQUIRED)}[,tags,annotator])")
    header_problems = []
    for position, column in enumerate(header, start=1):
        earlier = header.index(column) + 1
        if earlier != position:
            header_problems.append(f"{name} line 1, column {position}: '{column}' names column {earlier} again")
        elif column not in COLUMNS:
            header_problems.append(f"{name} line 1, column {position}: unknown column '{column}' "
                                   f"(allowed: {', '.join(COLUMNS)})")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        header_problems.append(f"{name} line 1: missing column(s) {', '.join(missing)} "
                               f"(header: {', '.join(header) or 'empty'})")
    if header_problems:
        raise UserError(f"{csv_path}: nothing imported, the header cannot be used: " + "; ".join(header_problems))
    where = {column: header.index(column) for column in COLUMNS if column in header}
    rows, problems = [], []
    for line, record in records:
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # a blank line
        if len(record) > len(header):
            problems.append((line, f"{name} line {line}, column {len(header) + 1}: {len(record)} fields, "
                                   f"the header names {len(header)} columns"))
            continue
        fields = {column: (record[i].strip() if i < len(record) else "") for column, i in where.items()}
        rows.append(CsvRow(line, fields["wnid"], fields["file_a"], fields["file_b"], fields.get("tags", ""),
                           fields.get("annotator", "")))
    if not rows and not problems:
        raise UserError(f"{csv_path}: no pairs in the file")
    return rows, problems


def check_output_folder(out_dir: Path) -> None:
    """Refuse an output that cannot be written before any photo is hashed: a file in the way, or a
    folder that cannot be created or written (read-only file system, permissions). The manifest
    writer checks again (and locks) when it writes."""
    refuse_a_file_in_the_way(out_dir, "manifest folder")
    probe_in = out_dir if out_dir.is_dir() else next((p for p in out_dir.parents if p.is_dir()), Path("."))
    try:
        with tempfile.TemporaryFile(dir=probe_in, prefix=".import-probe-"):
            pass
    except OSError as error:
        raise UserError(f"{out_dir}: cannot write the manifest folder here "
                        f"({probe_in}: {error.strerror or error})") from None


def import_pairs(csv_path: str | Path, images_root: str | Path, out_dir: str | Path,
                 selection: ClassSelection, *, progress: bool = False, workers: int | None = None) -> Manifest:
    csv_path, out_dir, images_root = Path(csv_path), Path(out_dir), Path(images_root)
    check_output_folder(out_dir)
    if not images_root.is_dir():
        raise UserError(f"--images {images_root}: not a folder")
    rows, problems = read_pairs_csv(csv_path)
    rows, more = _checked_rows(csv_path.name, rows, selection)
    problems += more
    files = list(dict.fromkeys(f for row in rows for f in (row.file_a, row.file_b)))
    facts, unusable = _file_facts(images_root, files, workers, progress)
    decided_at = _decided_at()
    with tempfile.TemporaryDirectory() as tmp:
        store = DecisionStore(Path(tmp) / "import.sqlite", images_root=images_root)
        try:
            store.set_meta("class_wnids", json.dumps(selection.wnids))
            problems += _record(csv_path.name, store, rows, facts, unusable, decided_at)
            if problems:
                raise ProblemsFound(f"{csv_path}: nothing imported", [p for _, p in sorted(problems, key=_line)])
            return export_store(store, out_dir, selection)
        finally:
            store.close()


def _line(problem: tuple[int, str]) -> int:
    return problem[0]


def _checked_rows(name: str, rows: list[CsvRow], selection: ClassSelection) -> tuple[list[CsvRow], list]:
    """The rows whose fields are well formed (no file is touched yet), and a problem for each
    other row."""
    known = imagenet_classes()
    seen: dict[tuple[str, str], int] = {}
    good, problems = [], []
    for row in rows:
        where = f"{name} line {row.line}"
        try:
            if not is_wnid(row.wnid) or row.wnid not in known:
                raise UserError(f"wnid '{row.wnid}' is not an ImageNet-1K class")
            if row.wnid not in selection:
                raise UserError(f"class {row.wnid} is not in the selection ({selection.origin})")
            for column, file in (("file_a", row.file_a), ("file_b", row.file_b)):
                if not file:
                    raise UserError(f"{column} is empty")
                check_file_id(row.wnid, file)
            canonical_tags(tuple(t.strip() for t in row.tags.split("|") if t.strip()))
        except UserError as error:
            problems.append((row.line, f"{where}: {error}"))
            continue
        pair = canonical_pair(row.file_a, row.file_b)
        if pair in seen:
            problems.append((row.line, f"{where}: repeats the pair of line {seen[pair]}"))
            continue
        seen[pair] = row.line
        good.append(row)
    return good, problems


def _record(name: str, store: DecisionStore, rows: list[CsvRow], facts: dict, unusable: dict[str, str],
            decided_at: str) -> list[tuple[int, str]]:
    """Every row through the store's policy, in one transaction (rolled back with the temporary
    store if any row is refused)."""
    problems = []
    store.remember_facts(facts)
    with store.bulk() as bulk:
        for row in rows:
            where = f"{name} line {row.line}"
            broken = [unusable[f] for f in dict.fromkeys((row.file_a, row.file_b)) if f in unusable]
            if broken:
                problems += [(row.line, f"{where}: {message}") for message in broken]
                continue
            pair = canonical_pair(row.file_a, row.file_b)
            key = "import:" + hashlib.sha256(f"{row.wnid}\n{pair[0]}\n{pair[1]}".encode()).hexdigest()[:32]
            tags = tuple(t.strip() for t in row.tags.split("|") if t.strip())
            new = NewDecision(key, row.wnid, row.file_a, row.file_b, "accept", row.annotator or "import", tags,
                              source="import", decided_at=decided_at)
            try:
                bulk.record(new, facts.get(row.file_a), facts.get(row.file_b))
            except UserError as error:
                problems.append((row.line, f"{where}: {error}"))
    return problems


def _file_facts(root: Path, files: list[str], workers: int | None, progress: bool) -> tuple[dict, dict[str, str]]:
    """SHA-256 and perceptual hash of every file, on every core: (facts by file, problem by file)."""
    facts, unusable = {}, {}
    workers = max(1, min(workers or os.cpu_count() or 1, len(files) // PARALLEL_FROM or 1))
    shown = _Progress(len(files), "hashing photos", progress)
    if workers == 1:
        results = (_facts_of(str(root), file) for file in files)
        for file, found, problem in results:
            _keep(file, found, problem, facts, unusable)
            shown.advance()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for file, found, problem in pool.map(_facts_of, [str(root)] * len(files), files, chunksize=64):
                _keep(file, found, problem, facts, unusable)
                shown.advance()
    shown.close()
    return facts, unusable


def _keep(file, found, problem, facts, unusable) -> None:
    if problem is None:
        facts[file] = found
    else:
        unusable[file] = problem


def _facts_of(root: str, file: str):
    """(file, ImageFacts or None, problem or None); runs in a worker process."""
    from pair_manifest.images import ImageReadError, image_facts
    from pair_manifest.file_ids import resolve_image

    try:
        return file, image_facts(resolve_image(root, file), name=file), None
    except (UserError, ImageReadError) as error:
        return file, None, str(error)


class _Progress:
    """A tqdm bar on a terminal; elsewhere (a log, a pipe) one line every few seconds."""

    def __init__(self, total: int, what: str, enabled: bool):
        self.total, self.what, self.done = total, what, 0
        self.bar = None
        self.terminal = enabled and sys.stderr.isatty()
        self.lines = enabled and not self.terminal
        self.started = self.last = time.monotonic()
        if self.terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit="photo", leave=False)

    def advance(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.lines and time.monotonic() - self.last >= PROGRESS_SECONDS:
            self.last = time.monotonic()
            print(f"{self.what}: {self.done:,} of {self.total:,} ({self.done / (self.last - self.started):,.0f}/s)",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
