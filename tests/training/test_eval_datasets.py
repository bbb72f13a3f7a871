"""Evaluation datasets: local class folders, the Hub layout through the real `load_dataset`, and
clear messages for bad input."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from training.eval.datasets import KNOWN_DATASETS, dataset_slug, open_dataset
from training.eval.errors import EvalError

from .eval_support import hub_parquet, small_cifar


def test_local_folder_gives_sorted_classes_labels_and_decodable_images(cifar10_root, tmp_path):
    root = small_cifar(cifar10_root, tmp_path / "c10", train_per_class=3, test_per_class=2)
    data = open_dataset(str(root))
    assert data.classes[:3] == ("airplane", "automobile", "bird") and len(data.classes) == 10
    assert (len(data.train), len(data.test)) == (30, 20)
    assert np.bincount(data.train.labels).tolist() == [3] * 10
    image = data.test.image(5)
    assert image.mode == "RGB" and image.size == (32, 32)
    assert data.slug == "c10"


def test_hub_layout_parquet_is_read_by_load_dataset_with_cifar10_columns(cifar10_root, tmp_path):
    root = hub_parquet(cifar10_root, tmp_path / "cifar10_hub", "img", "label", per_class=2)
    data = open_dataset(str(root))
    assert (len(data.train), len(data.test)) == (20, 20)
    assert data.classes[0] == "airplane"
    assert data.train.labels.tolist() == sorted(data.train.labels.tolist())
    # The bytes are the original JPEG files: decoded image equals the file decoded directly.
    first = sorted((cifar10_root / "train" / "airplane").iterdir())[0]
    from PIL import Image
    assert np.array_equal(np.asarray(data.train.image(0)), np.asarray(Image.open(first).convert("RGB")))


def test_hub_layout_with_cifar100_and_stl10_column_names(cifar10_root, tmp_path):
    fine = open_dataset(str(hub_parquet(cifar10_root, tmp_path / "c100", "img", "fine_label", per_class=1)))
    stl = open_dataset(str(hub_parquet(cifar10_root, tmp_path / "stl", "image", "label", per_class=1, subfolder="data")))
    assert len(fine.train) == len(stl.train) == 10
    assert stl.test.image(3).mode == "RGB"
    assert KNOWN_DATASETS["cifar100"].label_column == "fine_label"
    assert KNOWN_DATASETS["stl10"].repo_id == "tanganke/stl10"


def test_unknown_column_names_need_explicit_columns(cifar10_root, tmp_path):
    root = hub_parquet(cifar10_root, tmp_path / "odd", "picture", "label", per_class=1)
    with pytest.raises(EvalError, match="no image column .* \\(pass --image-column\\)"):
        open_dataset(str(root))
    assert len(open_dataset(str(root), image_column="picture").train) == 10


def test_corrupt_image_is_named_when_decoded(cifar10_root, tmp_path):
    root = small_cifar(cifar10_root, tmp_path / "bad", train_per_class=2, test_per_class=1)
    broken = sorted((root / "test" / "cat").iterdir())[0]
    broken.write_bytes(b"not a jpeg at all")
    data = open_dataset(str(root))
    index = [str(p) for p in data.test.files].index(str(broken))
    with pytest.raises(EvalError, match=f"{broken.name}: cannot be decoded as an image"):
        data.test.image(index)


def test_missing_test_split_and_unknown_test_class_are_refused(cifar10_root, tmp_path):
    root = small_cifar(cifar10_root, tmp_path / "no_test", train_per_class=2, test_per_class=1)
    (root / "test" / "zebra").mkdir()
    with pytest.raises(EvalError, match="class 'zebra' is not among the train classes"):
        open_dataset(str(root))
    shutil.rmtree(root / "test")
    with pytest.raises(EvalError, match="has train/ but no test/ folder"):
        open_dataset(str(root))


def test_slugs_are_file_name_safe():
    assert dataset_slug("cifar10") == "cifar10"
    assert dataset_slug("uoft-cs/cifar100") == "uoft-cs__cifar100"
