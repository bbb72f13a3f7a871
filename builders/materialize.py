"""`semantic-pairs materialize MANIFEST --imagenet ROOT --out REPO_DIR`: the manifest release plus
one's own ImageNet-1K training folder -> the full release folder.

The manifest configs record everything a build decided (pairs, AP images, ranks, class list,
settings); the build itself is a pure function of them and the image bytes. So the same writer,
fed the user's copy of the files, reproduces the maintainer's folder byte for byte (given the same
pyarrow and datasets versions, which the release records: a difference is reported, since it can
change the Parquet bytes though never the content). The manifest files are copied verbatim.
Every file of the user's copy that is missing or differs is listed, and the output folder is not
written (missing files stop it before any write; differing bytes are found as the files are read
into the private staging folder, which is then deleted: see builders.build).
"""
from __future__ import annotations

from pathlib import Path

from builders import layout
from builders.build import BuildResult, write_release
from builders.plan import built_with_versions, read_release_manifests
from builders.staging import check_output_folder
from pair_manifest.errors import UserError


def read_manifest_release(source: str) -> tuple[dict[str, bytes], str]:
    """Manifest files of a release: a release folder, its `manifest/` folder, or a Hub repo id."""
    from builders.release_source import open_release

    path = Path(source)
    names = {layout.manifest_path(k): Path(layout.manifest_path(k)).name for k in layout.KINDS}
    if path.is_dir() and not (path / layout.MANIFEST_FOLDER).is_dir() and all((path / n).is_file() for n in names.values()):
        return {relative: (path / name).read_bytes() for relative, name in names.items()}, str(path)
    release = open_release(source)
    return {relative: release.read(relative) for relative in names}, release.name


def version_warnings(recorded: dict) -> list[str]:
    current = built_with_versions()
    return [f"the release was built with {package} {recorded[package]}, this machine has {current[package]}: "
            "the Parquet bytes may differ (the content will not)"
            for package in ("pyarrow", "datasets") if recorded.get(package) not in (None, current[package])]


def materialize(source: str, imagenet_root: str | Path, out: str | Path, *, workers: int | None = None,
                progress: bool = False, log=print) -> BuildResult:
    out = Path(out)
    check_output_folder(out)
    if not Path(imagenet_root).is_dir():
        raise UserError(f"{imagenet_root}: ImageNet folder not found (expected the train folder holding <wnid>/ folders)")
    manifest_files, origin = read_manifest_release(source)
    plan = read_release_manifests(manifest_files, origin)
    for warning in version_warnings(plan.built_with):
        log(f"warning: {warning}")
    return write_release(plan, imagenet_root, out, manifest_files=manifest_files, workers=workers, progress=progress)
