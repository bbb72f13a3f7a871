"""`semantic-pairs build`: pair manifest + images folder -> the repo folder of a Hub release.

Order of work, so that bad input never leaves anything behind:
1. plan (builders.plan): select the pairs, draw AP, refuse short classes unless allowed;
2. locate (builders.sources): every referenced file exists under the images root; its size is
   all the shard plan needs. Missing files are refused here, before any write, together with
   every file whose bytes differ (found by hashing the others, writing nothing);
3. write (builders.shards) into a private staging folder beside the output, jobs in parallel,
   each file with a completion marker (builders.staging), so a killed build resumes. Each image
   is hashed as it is read for writing. If one differs from the release, the writers stop,
   every file is hashed again (writing nothing) so that the refusal names every offender, and
   the staging folder is deleted: the output folder is never written, nothing is left behind;
4. write the manifest configs and the card, then swap the staging folder into place.
One build at a time writes an output (a lock beside it); a second one is refused at once, so the
output is always the old complete release or the new complete one.

Each photo is read and hashed once (no separate check pass; AP shards are written from the
bytes read for SP), and shards go to disk with O_DIRECT (builders.direct_file says what it buys).
The output is a function of the plan and the image bytes only (no clocks, no local paths, fixed
Parquet options), so two builds of the same input are byte-identical, whatever the number of
workers, and `materialize` can rebuild the same folder from the manifest release.
"""
from __future__ import annotations

import errno
import hashlib
import json
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from builders import layout
from builders.plan import BuildSettings, ReleasePlan, plan_from_manifest
from builders.shards import Readers, SourceCheck, plan_shards, write_shard
from builders.sources import hash_problems, locate_sources, referenced_files, refusal
from builders.staging import Staging, check_output_folder, looks_like_release
from pair_manifest.errors import UserError
from pair_manifest.locks import writable_output


@dataclass
class BuildResult:
    out: Path
    plan: ReleasePlan
    shards: int
    resumed: int          # shards found complete from an interrupted build
    image_bytes: int      # image bytes embedded in the shards
    written_bytes: int    # image bytes written by this run


def default_workers() -> int:
    import os

    return max(1, min(8, os.cpu_count() or 1))


def build_release(manifest_dir: str | Path, images_root: str | Path, out: str | Path,
                  settings: BuildSettings, *, allow_short: bool = False, workers: int | None = None,
                  progress: bool = False) -> BuildResult:
    out = Path(out)
    check_output_folder(out)
    plan = plan_from_manifest(manifest_dir, images_root, settings, allow_short=allow_short)
    return write_release(plan, images_root, out, workers=workers, progress=progress)


def write_release(plan: ReleasePlan, images_root: str | Path, out: str | Path, *,
                  manifest_files: dict[str, bytes] | None = None, workers: int | None = None,
                  progress: bool = False) -> BuildResult:
    """Checked sources + plan -> the repo folder at `out` (all or nothing, resumable), written by
    one process at a time: a second build of the same output is refused, naming the first."""
    out = Path(out)
    with writable_output(out, "release folder"):
        check_output_folder(out)
        try:
            return _write_release(plan, Path(images_root), out, manifest_files, workers or default_workers(),
                                  progress)
        except OSError as error:
            raise _write_failure(out, error) from error


def _write_failure(out: Path, error: OSError) -> UserError:
    """A build the machine stopped (a full disk, a read-only or vanished folder): one line that
    says where, why, and that the previous release is still whole."""
    where = f" ({error.filename})" if error.filename else ""
    hint = {errno.ENOSPC: "; free space and run again: the finished shards are kept and the rerun resumes",
            errno.EDQUOT: "; free space and run again: the finished shards are kept and the rerun resumes"}
    kept = "the previous release there is unchanged" if looks_like_release(out) else "nothing was put there"
    return UserError(f"{out}: the build could not be written: {error.strerror or error}{where}; {kept}"
                     f"{hint.get(error.errno, '')}")


def _write_release(plan: ReleasePlan, root: Path, out: Path, manifest_files: dict[str, bytes] | None, workers: int,
                   progress: bool) -> BuildResult:
    from builders.card import parquet_stats, render_card

    sources, problems = locate_sources(plan, root)
    if problems:
        problems += hash_problems(sources, workers=workers, progress=progress).values()
        raise refusal(root, problems, len(referenced_files(plan)[0]))
    if manifest_files is None:
        manifest_files = {layout.manifest_path(kind): plan.manifest_bytes(kind) for kind in layout.KINDS}
    jobs = plan_shards(plan, {file: source.size for file, source in sources.items()})
    staging = Staging(out, _fingerprint(manifest_files, jobs))
    check = SourceCheck()
    staging.open()
    todo = [job for job in jobs if any(staging.done_size(path) is None for path in job.paths)]
    resumed = sum(len(job.paths) for job in jobs if job not in todo)
    total = sum(job.image_bytes for job in todo)
    _write_shards(todo, plan, sources, staging, check, workers, total, progress)
    if check.failed.is_set():
        # Name every offender, not only those the writers met before they stopped.
        final = {**check.problems, **hash_problems(sources, workers=workers, progress=progress)}
        staging.discard()
        raise refusal(root, list(final.values()), len(referenced_files(plan)[0]))
    for relative, data in sorted(manifest_files.items()):
        staging.write_file(relative, data)
    file_stats = {relative: parquet_stats(staging.folder / relative)
                  for relative in [path for job in jobs for path in job.paths] + sorted(manifest_files)}
    staging.write_file(layout.CARD_FILE, render_card(plan, file_stats).encode("utf-8"))
    staging.finish()
    return BuildResult(out, plan, sum(len(j.paths) for j in jobs), resumed, sum(j.image_bytes for j in jobs), total)


def _write_shards(jobs, plan: ReleasePlan, sources, staging: Staging, check: SourceCheck, workers: int,
                  total: int, progress: bool) -> None:
    """Write `workers` jobs at a time, their images read and hashed by `workers` reader threads
    (pyarrow, read() and hashlib release the GIL, so threads use every core); each finished
    file gets its completion marker. Stops early once `check` has failed."""
    lock = threading.Lock()
    with tqdm(total=total, desc="writing shards", unit="B", unit_scale=True, disable=not progress) as bar:
        def advance(n: int) -> None:
            with lock:
                bar.update(n)

        def run(job) -> None:
            if check.failed.is_set():
                return
            sizes = write_shard(job, plan, sources, staging.folder, check, advance, readers)
            for path, size in (sizes or {}).items():
                staging.mark_done(path, size)

        # Largest shards first keeps the workers busy until the end.
        order = sorted(jobs, key=lambda j: (-j.image_bytes, j.paths))
        with Readers(workers) as readers, ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(run, job) for job in order]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in futures:
                if future.done() and not future.cancelled() and future.exception() is not None:
                    raise future.exception()


def _fingerprint(manifest_files: dict[str, bytes], jobs) -> str:
    digest = hashlib.sha256()
    for relative, data in sorted(manifest_files.items()):
        digest.update(relative.encode() + b"\0" + hashlib.sha256(data).digest())
    digest.update(json.dumps([(j.paths, j.rows) for j in jobs]).encode())
    return digest.hexdigest()
