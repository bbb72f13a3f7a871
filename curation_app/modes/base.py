"""The interface every mode implements, and what all of them share: the project's stores, the
images (previews made before anything is shown, so an undecodable file is found first) and the
rule that two files of one photo are never asked about."""
from __future__ import annotations

import hashlib
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from pair_manifest.errors import UserError
from pair_manifest.images import ImageReadError
from pair_manifest.near_duplicates import same_photo_files
from pair_manifest.store import DecisionStore

from curation_app.catalog import Catalog
from curation_app.class_state import ClassState
from curation_app.previews import Previews
from curation_app.proposal_book import ProposalBook
from curation_app.workstate import Item, WorkState


def new_key() -> str:
    return uuid.uuid4().hex


def fixed_order(*parts: str) -> bytes:
    """A fixed pseudo-random order: the same state always gives the same items."""
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()


@dataclass
class Workspace:
    """What the strategies read: one project's stores, its images and their previews."""

    store: DecisionStore
    work: WorkState
    catalog: Catalog
    classes: ClassState
    previews: Previews
    proposals: ProposalBook
    images_root: Path
    project_dir: Path


class Strategy(ABC):
    """One kind of work (doccano's assignment strategies are the model: one class each).

    `assign` finds the first open item of one class for an annotator; `still_open` says whether an
    item found earlier can still be decided. Both run only while the caller holds the class's
    lease (`curation_app.assignment`), so they never need to know about other annotators' work.
    `check=False` (a prefetch guess) skips decoding and hashing; the real allocation checks every
    image before it is shown."""

    mode: str = ""

    def __init__(self, workspace: Workspace):
        self.ws = workspace

    @abstractmethod
    def assign(self, annotator: str, wnid: str, *, exclude: set[str], notes: list[str],
               check: bool = True) -> Item | None:
        """The first open item of class `wnid` for `annotator`, or None when the class has none."""

    @abstractmethod
    def still_open(self, annotator: str, item: Item) -> bool:
        """Can `item`, found earlier, still be decided (nobody decided it meanwhile)?"""

    # -- shared by the modes ---------------------------------------------------------------------

    def free_files(self, wnid: str, exclude: set[str]) -> list[str]:
        """The class's usable images not yet in an accepted pair."""
        used = self.ws.classes.of(wnid).used
        return [f for f in self.ws.catalog.files(wnid) if f not in used and f not in exclude]

    def usable(self, wnid: str, files, size: str, notes: list[str]) -> bool:
        """Make the previews now (cached): an image that cannot be decoded is found here, before
        anyone is shown it."""
        for file in files:
            try:
                self.ws.previews.get(self.ws.store.resolve(file), file, size)
            except ImageReadError as error:
                notes.append(self.ws.catalog.mark_bad(wnid, file, f"{error.reason}: {error.detail}"))
                return False
            except (UserError, OSError) as error:
                notes.append(self.ws.catalog.mark_bad(wnid, file, f"unreadable: {error}"))
                return False
        return True

    def distinct_photos(self, wnid: str, a: str, b: str, notes: list[str]) -> bool:
        """Same bytes or one photo twice can never be accepted: do not ask about them."""
        store = self.ws.store
        try:
            facts_a, facts_b = store.image_facts(a), store.image_facts(b)
            return not same_photo_files(facts_a, facts_b, store.resolve(a), store.resolve(b), names=(a, b))
        except ImageReadError as error:
            notes.append(self.ws.catalog.mark_bad(wnid, error.path, f"{error.reason}: {error.detail}"))
            return False
