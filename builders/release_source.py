"""Read a release where it lives: a local repo folder or a Hub dataset repo.

`verify` and `materialize` take either, the way `load_dataset` does: a local folder of that name
first, otherwise a Hub repo id (`ORG/NAME`, read through `HF_ENDPOINT` with the usual token
sources). A Hub release is pinned to the commit it had when first asked, so every file and every
`load_dataset` call reads the same revision even if someone pushes meanwhile.
"""
from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

from pair_manifest.errors import UserError

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class LocalRelease:
    def __init__(self, folder: Path):
        self.folder = folder
        self.name = str(folder)

    def files(self) -> dict[str, int]:
        return {p.relative_to(self.folder).as_posix(): p.stat().st_size
                for p in sorted(self.folder.rglob("*")) if p.is_file() and not p.name.startswith(".")
                and not any(part.startswith(".") for part in p.relative_to(self.folder).parts)}

    def read(self, path: str) -> bytes:
        try:
            return (self.folder / path).read_bytes()
        except FileNotFoundError:
            raise UserError(f"{self.folder}: no {path} in this release folder") from None

    def open(self, path: str):
        return open(self.folder / path, "rb")

    def load(self, config: str, **kwargs):
        from datasets import load_dataset

        return load_dataset(str(self.folder), config, split="train", **kwargs)


class HubRelease:
    def __init__(self, repo_id: str):
        self.repo_id = repo_id
        self.name = repo_id

    @cached_property
    def _api(self):
        from huggingface_hub import HfApi

        return HfApi()

    @cached_property
    def revision(self) -> str:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return self._api.repo_info(self.repo_id, repo_type="dataset").sha
        except HfHubHTTPError as error:
            raise UserError(f"{self.repo_id}: cannot read this dataset repo on the Hub ({_short(error)})") from None

    @cached_property
    def _fs(self):
        from huggingface_hub import HfFileSystem

        return HfFileSystem()

    def files(self) -> dict[str, int]:
        from huggingface_hub.hf_api import RepoFile

        entries = self._api.list_repo_tree(self.repo_id, repo_type="dataset", revision=self.revision, recursive=True)
        return {e.path: e.size for e in entries if isinstance(e, RepoFile) and not e.path.startswith(".")}

    def read(self, path: str) -> bytes:
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

        try:
            with self.open(path) as handle:
                return handle.read()
        except (EntryNotFoundError, FileNotFoundError):
            raise UserError(f"{self.repo_id}: no {path} in this dataset repo") from None
        except HfHubHTTPError as error:
            raise UserError(f"{self.repo_id}/{path}: cannot be read ({_short(error)})") from None

    def open(self, path: str):
        return self._fs.open(f"datasets/{self.repo_id}@{self.revision}/{path}", "rb")

    def load(self, config: str, **kwargs):
        import datasets

        # The datasets-server parquet export is a copy made by the Hub: read the release's own files.
        datasets.config.USE_PARQUET_EXPORT = False
        if not datasets.config.HF_ENDPOINT.startswith("https://huggingface.co"):
            # The download counter is a request to huggingface.co's S3 bucket: pointless elsewhere.
            datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False
        return datasets.load_dataset(self.repo_id, config, split="train", revision=self.revision, **kwargs)


def _short(error: Exception) -> str:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if isinstance(error, GatedRepoError):
        return ("the repo is gated: request access on its Hub page, then log in with `hf auth login` "
                "or set HF_TOKEN")
    if isinstance(error, RepositoryNotFoundError):
        return "no such dataset repo, or a private one: log in with `hf auth login` or set HF_TOKEN"
    return str(error).strip().splitlines()[0][:300]


def open_release(target: str):
    """A local release folder if one exists at `target`, else a Hub repo id."""
    path = Path(target)
    if path.is_dir():
        return LocalRelease(path)
    if path.exists():
        raise UserError(f"{target}: not a folder (expected a release folder or a Hub repo id ORG/NAME)")
    if not REPO_ID.match(target):
        raise UserError(f"{target}: no such folder, and not a Hub repo id of the form ORG/NAME")
    return HubRelease(target)
