"""`manifest import`: pairs curated elsewhere (a CSV) become a manifest, validated exactly like
decisions taken in the app (the rows are recorded into a real decision store).

CSV columns: `wnid,file_a,file_b[,tags,annotator]`, files as `<wnid>/<name>` relative to the images
root, tags separated by `|`. Row order is the order of acceptance, so it defines `rank_in_class`.
Every bad row is reported with its line number and nothing is written unless all rows are good.
`decided_at` is the import time, or `SOURCE_DATE_EPOCH` when set (reproducible builds).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from pair_manifest.classes import ClassSelection, imagenet_classes, is_wnid
from pair_manifest.errors import ProblemsFound, UserError
from pair_manifest.manifest import Manifest, export_store
from pair_manifest.store import DecisionStore, NewDecision, canonical_pair, utc_now

REQUIRED = ("wnid", "file_a", "file_b")
OPTIONAL = ("tags", "annotator")


def _decided_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            moment = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
        except ValueError:
            raise UserError(f"SOURCE_DATE_EPOCH: '{epoch}' is not a number of seconds") from None
        return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    return utc_now()


def read_pairs_csv(csv_path: Path) -> list[tuple[int, dict]]:
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            rows = [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise UserError(f"{csv_path}: no such CSV file") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{csv_path}: not a readable CSV file ({error})") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise UserError(f"{csv_path}: missing column(s) {', '.join(missing)} (header: {', '.join(header) or 'empty'})")
    extra = [c for c in header if c not in REQUIRED + OPTIONAL]
    if extra:
        raise UserError(f"{csv_path}: unknown column(s) {', '.join(extra)} (allowed: {', '.join(REQUIRED + OPTIONAL)})")
    if not rows:
        raise UserError(f"{csv_path}: no pairs in the file")
    return rows


def import_pairs(csv_path: str | Path, images_root: str | Path, out_dir: str | Path,
                 selection: ClassSelection, *, progress: bool = False) -> Manifest:
    csv_path = Path(csv_path)
    rows = read_pairs_csv(csv_path)
    known = imagenet_classes()
    decided_at = _decided_at()
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = DecisionStore(Path(tmp) / "import.sqlite", images_root=images_root)
        store.set_meta("class_wnids", json.dumps(selection.wnids))
        for line, row in tqdm(rows, desc="importing pairs", unit="pair", disable=not progress, leave=False):
            where = f"{csv_path.name} line {line}"
            wnid = (row["wnid"] or "").strip()
            if not is_wnid(wnid) or wnid not in known:
                problems.append(f"{where}: wnid '{wnid}' is not an ImageNet-1K class")
                continue
            if wnid not in selection:
                problems.append(f"{where}: class {wnid} is not in the selection ({selection.origin})")
                continue
            file_a, file_b = (row["file_a"] or "").strip(), (row["file_b"] or "").strip()
            pair = canonical_pair(file_a, file_b)
            if pair in seen:
                problems.append(f"{where}: repeats the pair of line {seen[pair]}")
                continue
            seen[pair] = line
            tags = tuple(t.strip() for t in (row.get("tags") or "").split("|") if t.strip())
            key = "import:" + hashlib.sha256(f"{wnid}\n{pair[0]}\n{pair[1]}".encode()).hexdigest()[:32]
            try:
                store.record(NewDecision(key, wnid, file_a, file_b, "accept",
                                         (row.get("annotator") or "").strip() or "import", tags,
                                         source="import", decided_at=decided_at))
            except UserError as error:
                problems.append(f"{where}: {error}")
        if problems:
            store.close()
            raise ProblemsFound(f"{csv_path}: nothing imported", problems)
        manifest = export_store(store, out_dir, selection)
        store.close()
    return manifest
