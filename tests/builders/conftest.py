"""A release built once per session from the bundled sample, the way a maintainer makes one:
a CSV of pairs -> `semantic-pairs manifest import` -> `semantic-pairs build`.

The sample's classes hold 5-45 photos (2-22 pairs). To exercise more than one tier, class
n01443537 gets two extra copies of each of its 45 photos with a JPEG comment segment added
(different bytes, same picture), so it has 67 pairs; the build takes 60 per class, so that class
fills tier050 (ranks 0-49) and part of tier100 (50-59), and the other classes are short.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TAGS = ("background", "occlusion", "pattern", "illumination", "viewpoint", "other")
GROWN_CLASS = "n01443537"
PAIRS_PER_CLASS = 60


def run_cli(*args, env: dict | None = None, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """`semantic-pairs ARGS` in a subprocess (as a user runs it)."""
    run_env = dict(os.environ if env is None else env)
    run_env.setdefault("HF_UPDATE_DOWNLOAD_COUNTS", "false")
    result = subprocess.run([sys.executable, "-m", "semantic_pairs_cli", *map(str, args)], env=run_env, cwd=cwd,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"semantic-pairs {' '.join(map(str, args))} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def cli(*args) -> CliResult:
    """`semantic-pairs ARGS` in this process (the real parser and handlers, without the few
    seconds a fresh interpreter spends importing pyarrow and datasets)."""
    import contextlib
    import io

    from semantic_pairs_cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse errors
            code = exit_.code if isinstance(exit_.code, int) else 2
    return CliResult(code, out.getvalue(), err.getvalue())


def with_comment(data: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment after SOI: other bytes, identical pixels."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    payload = text.encode()
    return data[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:]


def pairs_for(images: Path) -> list[dict]:
    """Consecutive files of each class (sorted names) as pairs, tags cycling through TAGS."""
    rows, k = [], 0
    for folder in sorted(p for p in images.iterdir() if p.is_dir()):
        names = sorted(p.name for p in folder.iterdir())
        for i in range(0, len(names) - 1, 2):
            tags = [TAGS[(k + j) % len(TAGS)] for j in range(k % 3)]
            rows.append({"wnid": folder.name, "file_a": f"{folder.name}/{names[i]}",
                         "file_b": f"{folder.name}/{names[i + 1]}", "tags": "|".join(tags)})
            k += 1
    return rows


@dataclass
class ReleaseInputs:
    images: Path
    manifest: Path
    pairs: list[dict]  # CSV rows in acceptance order

    def pairs_per_class(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.pairs:
            counts[row["wnid"]] = counts.get(row["wnid"], 0) + 1
        return counts

    def expected_rows(self, target: int, limit: int | None = None) -> int:
        cap = target if limit is None else min(target, limit)
        return sum(min(n, cap) for n in self.pairs_per_class().values())


@pytest.fixture(scope="session")
def release_inputs(tmp_path_factory, sample_images) -> ReleaseInputs:
    root = tmp_path_factory.mktemp("release_inputs")
    images = root / "images"
    shutil.copytree(sample_images, images)
    originals = sorted((images / GROWN_CLASS).iterdir())
    for copy in (1, 2):
        for path in originals:
            target = path.with_name(f"{GROWN_CLASS}_copy{copy}_{path.name}")  # sorts after the originals
            target.write_bytes(with_comment(path.read_bytes(), f"semantic-pairs test copy {copy}"))
    pairs = pairs_for(images)
    csv_path = root / "pairs.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["wnid", "file_a", "file_b", "tags"])
        writer.writeheader()
        writer.writerows(pairs)
    manifest = root / "manifest"
    env = dict(os.environ, SOURCE_DATE_EPOCH="1767225600")
    run_cli("manifest", "import", csv_path, "--images", images, "--out", manifest, env=env, check=True)
    return ReleaseInputs(images, manifest, pairs)


@pytest.fixture(scope="session")
def built_release(tmp_path_factory, release_inputs) -> Path:
    """`semantic-pairs build` output (read-only for tests: copy it before changing anything)."""
    out = tmp_path_factory.mktemp("built") / "semantic_pairs"
    result = run_cli("build", "--manifest", release_inputs.manifest, "--images", release_inputs.images,
                     "--out", out, "--pairs-per-class", PAIRS_PER_CLASS, "--allow-short", check=True)
    assert "short (--allow-short)" in result.stdout
    return out


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
