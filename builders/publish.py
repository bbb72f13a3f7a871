"""`semantic-pairs publish REPO_DIR --repo-id ORG/NAME`: a built release -> a Hub dataset repo.

`create_repo`, then one `create_commit` holding every changed file and the deletion of stale ones,
then the gating settings. One commit, not `upload_folder`: with hf_xet installed `upload_folder`
commits a large folder in several batches, and a reader between two batches would see a
half-uploaded release (a card listing shards not yet there). The commit is resumable all the
same: LFS/Xet content already uploaded by a killed run is not sent again. Files whose content the
repo already has are left out, so publishing an unchanged build makes no commit at all.

`--manifest-only` publishes the pixel-free release: the manifest configs and a card that lists
only them (no gating needed: no ImageNet pixels leave the maintainer).

The token comes from the usual huggingface_hub sources (HF_TOKEN, the token file of
`hf auth login`); it is never printed, and error messages are scrubbed of it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from builders import layout
from pair_manifest.errors import ProblemsFound, UserError

OWNED_PREFIXES = ("sp/", "ap/", f"{layout.MANIFEST_FOLDER}/")  # remote files a publish keeps in sync


@dataclass
class PublishResult:
    repo_id: str
    commit: str | None                # head commit after publishing
    committed: bool                   # False: the repo already held this release
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    upload_bytes: int = 0


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _unchanged(local: Path | bytes, remote) -> bool:
    """Same content as the remote entry (LFS files by SHA-256, regular files by git blob id)."""
    if remote is None:
        return False
    size = len(local) if isinstance(local, bytes) else local.stat().st_size
    if remote.size != size:
        return False
    if remote.lfs is not None:
        digest = hashlib.sha256(local).hexdigest() if isinstance(local, bytes) else _sha256_file(local)
        return remote.lfs.sha256 == digest
    data = local if isinstance(local, bytes) else local.read_bytes()
    return remote.blob_id == _git_blob_sha1(data)


def _scrub(message: str, token: str | None) -> str:
    return message.replace(token, "***") if token else message


def local_release_files(folder: Path, *, manifest_only: bool) -> dict[str, Path | bytes]:
    """What to publish: path in the repo -> local file (or bytes, for the manifest-only card)."""
    from builders.plan import read_release_manifests
    from builders.staging import looks_like_release
    from builders.verify import check_card, check_layout

    if not looks_like_release(folder):
        raise UserError(f"{folder}: not a release folder (no README.md and manifest/); run `semantic-pairs build` first")
    from builders.release_source import LocalRelease

    release = LocalRelease(folder)
    files = release.files()
    plan = read_release_manifests({p: release.read(p) for p in (layout.manifest_path(k) for k in layout.KINDS)},
                                  str(folder))
    full = any(p.startswith(("sp/", "ap/")) for p in files)
    # A cheap consistency check before anything leaves the machine (footers only, no pixels):
    problems = check_layout(plan, files, not full) + check_card(release, plan, files, not full)
    if problems:
        raise ProblemsFound(f"{folder}: not publishable (run `semantic-pairs verify {folder}` for details)", problems)
    if not manifest_only:
        if not full:
            raise UserError(f"{folder}: holds no image shards (a manifest release); publish it with --manifest-only")
        return {p: folder / p for p in files}
    from builders.card import parquet_stats, render_card

    manifests = [layout.manifest_path(k) for k in layout.KINDS]
    stats = {p: parquet_stats(folder / p) for p in manifests}
    chosen: dict[str, Path | bytes] = {p: folder / p for p in manifests}
    chosen[layout.CARD_FILE] = render_card(plan, stats, manifest_only=True).encode("utf-8")
    return chosen


def publish_release(repo_dir: str | Path, repo_id: str, *, private: bool = False, gated: str | None = None,
                    manifest_only: bool = False, progress: bool = False, log=print) -> PublishResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.hf_api import RepoFile

    from builders.release_source import REPO_ID

    if not REPO_ID.match(repo_id):
        raise UserError(f"--repo-id: '{repo_id}' is not of the form ORG/NAME")
    if gated not in (None, "manual", "auto"):
        raise UserError(f"--gated: '{gated}' is not one of manual, auto")
    token = get_token()
    if not token:
        raise UserError("no Hugging Face token found: run `hf auth login` or set HF_TOKEN (it is never printed)")
    folder = Path(repo_dir)
    local = local_release_files(folder, manifest_only=manifest_only)
    api = HfApi(token=token)
    if not progress:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "HF_HUB_VERBOSITY" not in os.environ:  # its retry warnings would bury the one line that matters
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()
    stage = Stage()
    try:
        stage.now = "connect"
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if private:
            api.update_repo_settings(repo_id, repo_type="dataset", private=True)
        before = api.repo_info(repo_id, repo_type="dataset").sha
        stage.before = before
        remote = {e.path: e for e in api.list_repo_tree(repo_id, repo_type="dataset", recursive=True)
                  if isinstance(e, RepoFile)}
        if manifest_only and any(p.startswith(("sp/", "ap/")) for p in remote):
            raise UserError(f"{repo_id}: holds image shards; a manifest-only release goes to a repo of its own")
        changed = [p for p in sorted(local) if not _unchanged(local[p], remote.get(p))]
        stale = sorted(p for p in remote if p.startswith(OWNED_PREFIXES) and p not in local)
        result = PublishResult(repo_id, before, False)
        if changed or stale:
            operations = [CommitOperationDelete(path_in_repo=p) for p in stale]
            operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=local[p] if isinstance(local[p], bytes)
                                              else str(local[p])) for p in changed]
            result.upload_bytes = sum(len(local[p]) if isinstance(local[p], bytes) else local[p].stat().st_size
                                      for p in changed)
            kind = "manifest release" if manifest_only else "release"
            log(f"uploading {len(changed)} file(s) ({result.upload_bytes / 1e6:.1f} MB), "
                f"deleting {len(stale)} stale file(s) in one commit")
            stage.now = "commit"  # uploads, then the commit request
            info = api.create_commit(repo_id, operations, repo_type="dataset",
                                     commit_message=f"Publish semantic-pairs {kind}",
                                     commit_description=f"{len(changed)} file(s) added or changed, {len(stale)} deleted.")
            result.commit, result.committed = info.oid, info.oid != before
            result.uploaded, result.deleted = changed, stale
        stage.committed = result.commit
        if gated is not None:
            stage.now = "gating"
            api.update_repo_settings(repo_id, repo_type="dataset", gated=gated)
    except HfHubHTTPError as error:
        message = str(error).strip().splitlines()[0][:300]
        raise UserError(_scrub(f"{repo_id}: the Hub refused the request ({message}); {stage.remote_state(repo_id)}",
                               token)) from None
    except Exception as error:  # noqa: BLE001 - only network failures become messages; see below
        cause = network_failure(error)
        if cause is None:
            if isinstance(error, ValueError):  # metadata the Hub client rejects before sending
                raise UserError(_scrub(f"{repo_id}: publishing failed ({_first_line(error)})", token)) from None
            raise
        raise UserError(_scrub(f"{repo_id}: {stage.what_failed()} ({cause}); {stage.remote_state(repo_id)}; "
                               f"run the same publish again to finish it", token)) from None
    return result


class Stage:
    """Where a publish is, so that a failure can say what state it left the remote in."""

    def __init__(self) -> None:
        self.now = "connect"
        self.before: str | None = None     # the repo's head before this publish
        self.committed: str | None = None  # the head once the release is committed

    def what_failed(self) -> str:
        return {"connect": "the Hub could not be reached",
                "commit": "the connection dropped while uploading and committing the release",
                "gating": "the connection dropped while setting the gating"}[self.now]

    def remote_state(self, repo_id: str) -> str:
        if self.now == "connect":
            return f"no file of {repo_id} was changed"
        if self.now == "commit":
            return (f"the Hub applies a commit whole or not at all, so {repo_id} holds either its previous state "
                    f"(commit {_short(self.before)}) or this release, never a part of it; files already uploaded "
                    "are not sent again")
        return f"{repo_id} holds the release (commit {_short(self.committed)}) but its gating is not set yet"


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "none"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def network_failure(error: BaseException) -> str | None:
    """What went wrong on the network, if `error` (or what caused it: huggingface_hub wraps a
    failed LFS upload in a RuntimeError) is a transport failure; None for anything else. httpx
    and httpx2 (which huggingface_hub 2.x uses) are both recognised by their TransportError."""
    transport: list[type] = [ConnectionError, TimeoutError]
    for module in ("httpx", "httpx2"):
        try:
            transport.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            pass
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, tuple(transport)):
            return f"{type(error).__name__}: {_first_line(error)}" if str(error).strip() else type(error).__name__
        error = error.__cause__ or error.__context__
    return None
