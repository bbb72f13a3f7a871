"""`manifest merge`: several curation stores (or annotators working apart) into one manifest.

The decision logs are replayed in time order into a fresh store, so the merged result obeys the
same policy as live curation. A decision the policy refuses (an image both sides paired
differently, a pair one side accepted and the other rejected) is a *conflict*: reported, written
to `conflicts.csv` beside the manifest, never silently dropped.
"""
from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pair_manifest.classes import selection_from_wnids
from pair_manifest.errors import UserError
from pair_manifest.manifest import decisions_table, manifest_decisions, pairs_table, write_manifest
from pair_manifest.store import DecisionStore
from pair_manifest.validate import read_valid_manifest

CONFLICTS_FILE = "conflicts.csv"


@dataclass(frozen=True)
class Conflict:
    origin: str
    seq: int
    wnid: str
    file_a: str
    file_b: str
    verdict: str
    annotator: str
    reason: str


def merge_manifests(inputs: list[str | Path], out_dir: str | Path) -> list[Conflict]:
    """Write the merged manifest (and `conflicts.csv` when there are any); return the conflicts."""
    if len(inputs) < 2:
        raise UserError("merge needs at least two manifests")
    logs, wnids = [], set()
    for index, path in enumerate(inputs):
        manifest = read_valid_manifest(path, "nothing merged")
        decisions, class_wnids = manifest_decisions(manifest), manifest.class_wnids
        wnids.update(class_wnids or [d.wnid for d in decisions])
        logs.extend((d.decided_at, index, d.seq, str(path), d) for d in decisions)
    logs.sort(key=lambda item: item[:3])
    selection = selection_from_wnids(sorted(wnids), "merged class list")
    conflicts: list[Conflict] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = DecisionStore(Path(tmp) / "merge.sqlite")
        new_seq: dict[tuple[str, int], int] = {}
        for _, _, _, origin, d in logs:
            mapped = {name: new_seq.get((origin, getattr(d, name))) for name in ("review_of", "undo_of")}
            try:
                recorded = store.replay(d, **mapped)
            except UserError as error:
                conflicts.append(Conflict(origin, d.seq, d.wnid, d.file_a, d.file_b, d.verdict, d.annotator,
                                          str(error)))
                continue
            new_seq[(origin, d.seq)] = recorded.decision.seq
        pairs = pairs_table(store.accepted_pairs(), selection)
        decisions = decisions_table(store.decisions(), selection.wnids)
        store.close()
    write_manifest(out_dir, pairs, decisions)
    conflicts_path = Path(out_dir) / CONFLICTS_FILE
    if conflicts:
        with conflicts_path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(Conflict.__dataclass_fields__)
            writer.writerows([c.__dict__[f] for f in Conflict.__dataclass_fields__] for c in conflicts)
    elif conflicts_path.exists():
        conflicts_path.unlink()
    return conflicts

