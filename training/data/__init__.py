"""Training data: a Hugging Face dataset (Hub id or local repo folder) decoded once into a uint8
cache on disk, then held on the GPU (or in pinned host memory) and sampled per step.

`load_dataset(REPO_OR_DIR, CONFIG)` returns a `DecodedDataset`. Configs: `sp`, `sp_100`, `sp_50`
(two images per row), `ap`, `ap_100`, `ap_50` (one image per row), `tiny_imagenet` (one image per
row: a local `train/<class>/` folder read with the `imagefolder` builder, or a Hub id).

Importing this package imports neither torch nor datasets (decode workers start fast)."""
from __future__ import annotations


def load_dataset(repo_or_dir: str, config: str, **options):
    """See `training.data.cache.load_dataset`."""
    from training.data.cache import load_dataset as _load

    return _load(repo_or_dir, config, **options)
