"""Which dataset `--data REPO_OR_DIR --config CFG` means, how to open it with `datasets`, and a
fingerprint of its content for the decoded cache.

- `sp`, `sp_100`, `sp_50`: a Semantic Pairs repo (Hub id or local folder in the Hub layout with a
  README.md declaring `configs`); rows hold `image_a`, `image_b`, `label`.
- `ap`, `ap_100`, `ap_50`: the same repo's augmented-pairs configs; rows hold `image`, `label`.
- `tiny_imagenet`: one image per row, for the paper's Tiny-ImageNet comparison (§4, Table 2): a local
  folder holding `train/<wnid>/*.JPEG` (read with the `imagefolder` builder; the Tiny-ImageNet
  download's layout) or a Hub id whose default config has `image`/`img` and `label` columns.
A local folder of the given name wins over a Hub id, as `datasets.load_dataset` does.

Fingerprint. `datasets` 5.2 does not notice when the Parquet files of a local folder change (its
cache id ignores their modification times), so the decoded cache is keyed by our own fingerprint:
the config plus every data file's path, size and mtime for a local folder, or its revision-pinned
`hf://...@<commit>` URL for a Hub id. A changed local file gives a new key, and the `datasets`
Arrow cache is then rebuilt too (`force_redownload`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from training.errors import TrainingError

PAIR_CONFIG = re.compile(r"sp(_\d+)?")
IMAGE_CONFIG = re.compile(r"ap(_\d+)?")
FOLDER_CONFIG = "tiny_imagenet"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
IMAGE_COLUMNS = ("image", "img")
CONFIG_HELP = "sp, sp_100, sp_50 (pairs), ap, ap_100, ap_50 (single images) or tiny_imagenet"


@dataclass(frozen=True)
class Source:
    location: str  # absolute folder path or Hub id
    config: str
    pairs: bool  # two images per row (SP) or one (AP, Tiny-ImageNet)
    local: bool
    imagefolder: bool  # a train/<class>/ folder rather than a Parquet repo

    def describe(self) -> str:
        return f"{self.location} (config {self.config})"


def config_problem(config) -> str | None:
    """Why `config` cannot be trained on (None: it can), without looking at any data."""
    if not config or not isinstance(config, str):
        return f"missing; one of {CONFIG_HELP}"
    if config.endswith("_manifest"):
        return "a manifest config holds ids and hashes, no pixels; train on sp or ap"
    if not (PAIR_CONFIG.fullmatch(config) or IMAGE_CONFIG.fullmatch(config) or config == FOLDER_CONFIG):
        return f"not a training config; use one of {CONFIG_HELP}"
    return None


def resolve_source(repo_or_dir: str, config: str) -> Source:
    """Check the two options and say what they mean; every refusal names the option."""
    problem = config_problem(config)
    if problem:
        raise TrainingError(f"--config {config}: {problem}")
    pairs = bool(PAIR_CONFIG.fullmatch(config))
    path = Path(repo_or_dir).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TrainingError(f"--data {repo_or_dir}: is a file; expected a dataset repo folder or a Hub id")
        readme = path / "README.md"
        has_configs = readme.is_file() and "configs:" in readme.read_text(encoding="utf-8", errors="replace")
        if config == FOLDER_CONFIG and not has_configs:
            train = path / "train"
            if not train.is_dir() or not any(p.is_dir() for p in train.iterdir()):
                raise TrainingError(f"--data {repo_or_dir}: no train/<class>/ folders and no README.md with "
                                    "configs: not a Tiny-ImageNet folder")
            return Source(str(path.resolve()), config, False, True, True)
        if not has_configs:
            raise TrainingError(f"--data {repo_or_dir}: no README.md declaring `configs`; not a dataset repo "
                                "folder in the Hub layout (see `semantic-pairs build`)")
        return Source(str(path.resolve()), config, pairs, True, False)
    if not HUB_ID.fullmatch(repo_or_dir):
        raise TrainingError(f"--data {repo_or_dir}: neither an existing folder nor a Hub id (ORG/NAME)")
    return Source(repo_or_dir, config, pairs, False, False)


def _load_kwargs(source: Source, hf_cache_dir: str | None) -> tuple[tuple, dict]:
    if source.imagefolder:
        return ("imagefolder",), dict(data_dir=source.location, cache_dir=hf_cache_dir)
    if source.config == FOLDER_CONFIG:
        return (source.location,), dict(cache_dir=hf_cache_dir)
    return (source.location, source.config), dict(cache_dir=hf_cache_dir)


@contextlib.contextmanager
def datasets_progress(enabled: bool):
    """Turn the `datasets` progress bars off for a quiet run (--no-progress), then restore them."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled and not enabled:
            datasets.enable_progress_bars()


def _dataset_error(source: Source, error: Exception) -> TrainingError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return TrainingError(f"--data {source.describe()}: {type(error).__name__}: {first_line}")


_FINGERPRINTS: dict[tuple, str] = {}


def _folder_state(folder: str) -> tuple:
    """Every file under a local folder with its size and mtime: a cheap test that nothing changed."""
    state = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            state.append((os.path.relpath(os.path.join(root, name), folder), stat.st_size, stat.st_mtime_ns))
    return tuple(state)


def fingerprint(source: Source, hf_cache_dir: str | None = None) -> str:
    """A hex key that changes whenever the data files of the config change (see module docstring).

    Remembered per process while a local folder's files stay as they were: asking `datasets` means
    parsing the release card's YAML (about a second for the full 187-class card), and `reproduce`
    asks once per run it trains."""
    key = (source, hf_cache_dir, _folder_state(source.location) if source.local else None)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = _fingerprint(source, hf_cache_dir)
    return _FINGERPRINTS[key]


def _fingerprint(source: Source, hf_cache_dir: str | None) -> str:
    import datasets

    args, kwargs = _load_kwargs(source, hf_cache_dir)
    try:
        builder = datasets.load_dataset_builder(*args, **kwargs)
    except ValueError as error:  # e.g. "BuilderConfig 'sp_7' not found. Available: [...]"
        raise TrainingError(f"--config {source.config}: {str(error).splitlines()[0]}") from error
    except Exception as error:  # noqa: BLE001 - missing repo, offline, malformed README: one line
        raise _dataset_error(source, error) from error
    entries = []
    for split, files in sorted((builder.config.data_files or {}).items()):
        for name in files:
            local = Path(str(name))
            if source.local and local.is_file():
                stat = local.stat()
                entries.append([str(split), str(local.relative_to(source.location)) if local.is_relative_to(source.location)
                                else str(local), stat.st_size, stat.st_mtime_ns])
            else:
                entries.append([str(split), str(name)])
    if not entries:
        raise TrainingError(f"--data {source.describe()}: the config lists no data files")
    blob = json.dumps({"format": 1, "config": source.config, "pairs": source.pairs, "files": entries},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Rows:
    """The train split opened with `datasets`, images left as bytes (decode=False)."""

    dataset: object  # datasets.Dataset
    image_columns: tuple[str, ...]  # ("image_a", "image_b") or ("image",)
    name_columns: tuple[str, ...]  # file names for messages, parallel to image_columns (may be empty)
    class_names: list[str]


def open_rows(source: Source, hf_cache_dir: str | None = None, refresh: bool = False) -> Rows:
    """`datasets.load_dataset(...)` of the train split, checked for the columns training needs."""
    import datasets

    args, kwargs = _load_kwargs(source, hf_cache_dir)
    if refresh and source.local:
        # rebuild the Arrow cache from the files as they are now; the split sizes `datasets` recorded
        # for the old files would fail its own check, so that check is off (we decode every row anyway)
        kwargs.update(download_mode="force_redownload", verification_mode="no_checks")
    try:
        dataset = datasets.load_dataset(*args, split="train", **kwargs)
    except ValueError as error:
        raise TrainingError(f"--config {source.config}: {str(error).splitlines()[0]}") from error
    except Exception as error:  # noqa: BLE001
        raise _dataset_error(source, error) from error
    columns = set(dataset.column_names)
    if source.pairs:
        image_columns = ("image_a", "image_b")
        name_columns = ("file_a", "file_b") if {"file_a", "file_b"} <= columns else ()
    else:
        found = [c for c in ("image", "img") if c in columns]
        image_columns = tuple(found[:1])
        name_columns = ("file",) if "file" in columns else ()
    missing = [c for c in (*image_columns, "label") if c not in columns] or ([] if image_columns else ["image"])
    if missing:
        raise TrainingError(f"--data {source.describe()}: the train split has no column {', '.join(missing)} "
                            f"(it has {', '.join(sorted(columns))})")
    for column in image_columns:
        feature = dataset.features[column]
        if not isinstance(feature, datasets.Image):
            raise TrainingError(f"--data {source.describe()}: column {column} is {type(feature).__name__}, "
                                "not an Image feature")
        dataset = dataset.cast_column(column, datasets.Image(decode=False))
    label = dataset.features["label"]
    if isinstance(label, datasets.ClassLabel):
        class_names = list(label.names)
    else:
        class_names = [str(v) for v in sorted(set(dataset["label"]))]
    return Rows(dataset, image_columns, name_columns, class_names)
