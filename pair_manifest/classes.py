"""Class tables: all 1000 ImageNet-1K classes and the class selection a dataset is built over.

The wnid is the key everywhere: ImageNet names are not unique ("crane" is a bird and a machine).
Labels are positions in the selection sorted by ImageNet-1K index, so they do not depend on the
order of rows in a user's CSV.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pair_manifest.errors import UserError

WNID_PATTERN = re.compile(r"^n\d{8}$")
DEFAULT_SELECTION = "classes_187.csv"


@dataclass(frozen=True)
class ImageNetClass:
    wnid: str
    imagenet_index: int
    name: str
    group: str = ""
    source: str = ""


@dataclass(frozen=True)
class ClassSelection:
    """The classes of one dataset, in label order (ImageNet-1K index order)."""

    classes: tuple[ImageNetClass, ...]
    origin: str

    @property
    def wnids(self) -> list[str]:
        return [c.wnid for c in self.classes]

    def label_of(self, wnid: str) -> int:
        return self._label_index()[wnid]

    def by_wnid(self, wnid: str) -> ImageNetClass:
        return self.classes[self.label_of(wnid)]

    def __contains__(self, wnid: object) -> bool:
        return wnid in self._label_index()

    def __len__(self) -> int:
        return len(self.classes)

    def _label_index(self) -> dict[str, int]:
        index = self.__dict__.get("_index")
        if index is None:
            index = {c.wnid: i for i, c in enumerate(self.classes)}
            object.__setattr__(self, "_index", index)
        return index


def is_wnid(text: str) -> bool:
    return bool(WNID_PATTERN.match(text))


@lru_cache(maxsize=1)
def imagenet_classes() -> dict[str, ImageNetClass]:
    """All 1000 ImageNet-1K classes keyed by wnid; the short name is the first WordNet lemma."""
    table = resources.files("pair_manifest.class_tables").joinpath("imagenet1k_classes.csv")
    with table.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    classes = {}
    for row in rows:
        name = row["names"].split(",")[0].strip().replace(" ", "_")
        classes[row["wnid"]] = ImageNetClass(row["wnid"], int(row["imagenet_index"]), name)
    return classes


def load_selection(csv_path: str | Path | None = None) -> ClassSelection:
    """The default 187-class selection, or a user CSV with at least a `wnid` column.

    Unknown wnids, malformed rows and duplicates are refused with the row number, so a typo never
    silently drops a class from a dataset.
    """
    if csv_path is None:
        table = resources.files("pair_manifest.class_tables").joinpath(DEFAULT_SELECTION)
        origin = f"default selection ({DEFAULT_SELECTION})"
        with table.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    else:
        path = Path(csv_path)
        origin = str(path)
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.DictReader(handle))
        except FileNotFoundError:
            raise UserError(f"{path}: class selection file not found") from None
        except (UnicodeDecodeError, csv.Error) as error:
            raise UserError(f"{path}: not a readable CSV file ({error})") from None
        if not rows or "wnid" not in rows[0]:
            raise UserError(f"{path}: a class selection CSV needs a header with a 'wnid' column")
    return selection_from_rows(rows, origin)


def selection_from_wnids(wnids: list[str], origin: str = "recorded class list") -> ClassSelection:
    """A selection from a bare wnid list, e.g. the one recorded in a manifest or a project."""
    default = {c.wnid: c for c in load_selection().classes}
    rows = [{"wnid": w, "group": default[w].group, "source": default[w].source} if w in default else {"wnid": w}
            for w in wnids]
    return selection_from_rows(rows, origin)


def selection_from_rows(rows: list[dict], origin: str) -> ClassSelection:
    """Check and order selection rows (`wnid` and optional `name`, `group`, `source`)."""
    known = imagenet_classes()
    chosen: dict[str, ImageNetClass] = {}
    problems = []
    for line_number, row in enumerate(rows, start=2):
        wnid = (row.get("wnid") or "").strip()
        if not is_wnid(wnid):
            problems.append(f"row {line_number}: '{wnid}' is not a wnid (expected n + 8 digits)")
        elif wnid not in known:
            problems.append(f"row {line_number}: {wnid} is not one of the 1000 ImageNet-1K classes")
        elif wnid in chosen:
            problems.append(f"row {line_number}: {wnid} is listed twice")
        else:
            base = known[wnid]
            chosen[wnid] = ImageNetClass(
                wnid=wnid,
                imagenet_index=base.imagenet_index,
                name=(row.get("name") or base.name).strip(),
                group=(row.get("group") or "").strip(),
                source=(row.get("source") or "").strip(),
            )
    if problems:
        raise UserError(f"{origin}: " + "; ".join(problems))
    if not chosen:
        raise UserError(f"{origin}: the class selection is empty")
    ordered = tuple(sorted(chosen.values(), key=lambda c: c.imagenet_index))
    return ClassSelection(ordered, origin)
