"""Fixtures for the training tests: the SP/AP release of the bundled real images, built by the
project's own `semantic-pairs manifest import` + `build` (training.reproduce.smoke.sample_release:
consecutive files of each class paired, real photos but NOT curated semantic pairs), and a repo
written directly for bytes the real builder refuses to publish (corrupt images).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

SP_COLUMNS = ("pair_id", "label", "class_name", "wnid", "file_a", "file_b", "sha256_a", "sha256_b", "tags",
              "rank_in_class", "image_a", "image_b")


def _class_names(wnids: list[str]) -> dict[str, str]:
    from pair_manifest.classes import imagenet_classes

    table = imagenet_classes()
    return {w: (table[w].name if w in table and hasattr(table[w], "name") else w) for w in wnids}


def write_repo_directly(images_root: Path, out: Path, tier: str = "tier050") -> Path:
    """SP and AP configs (`sp`, `sp_50`, `ap`, `ap_50`) in the Hub layout, written row by row with
    `datasets` and no checks: what a damaged or foreign copy of a release can hold, and what
    `semantic-pairs build` refuses to write (undecodable images), so the loader's own refusal can be
    tested. SP rows pair consecutive files of each class; AP rows are each pair's image_a."""
    import datasets

    wnids = sorted(p.name for p in images_root.iterdir() if p.is_dir())
    names = _class_names(wnids)
    sp_rows, ap_rows = [], []
    for label, wnid in enumerate(wnids):
        files = sorted(p for p in (images_root / wnid).iterdir() if p.is_file())
        for rank in range(len(files) // 2):
            a, b = files[2 * rank], files[2 * rank + 1]
            bytes_a, bytes_b = a.read_bytes(), b.read_bytes()
            common = dict(label=label, class_name=names[wnid], wnid=wnid, rank_in_class=rank)
            sp_rows.append(dict(common, pair_id=f"{wnid}-{rank:04d}", file_a=f"{wnid}/{a.name}",
                                file_b=f"{wnid}/{b.name}", sha256_a=hashlib.sha256(bytes_a).hexdigest(),
                                sha256_b=hashlib.sha256(bytes_b).hexdigest(), tags=["background"],
                                image_a={"bytes": bytes_a, "path": a.name},
                                image_b={"bytes": bytes_b, "path": b.name}))
            ap_rows.append(dict(common, image_id=f"{wnid}/{a.name}", file=f"{wnid}/{a.name}",
                                sha256=hashlib.sha256(bytes_a).hexdigest(), image={"bytes": bytes_a, "path": a.name}))
    string, label_feature = datasets.Value("string"), datasets.ClassLabel(names=wnids)
    sp_features = datasets.Features(
        pair_id=string, label=label_feature, class_name=string, wnid=string, file_a=string, file_b=string,
        sha256_a=string, sha256_b=string, tags=datasets.List(string), rank_in_class=datasets.Value("int32"),
        image_a=datasets.Image(), image_b=datasets.Image())
    ap_features = datasets.Features(
        image_id=string, label=label_feature, class_name=string, wnid=string, file=string, sha256=string,
        rank_in_class=datasets.Value("int32"), image=datasets.Image())
    for kind, rows, features in (("sp", sp_rows, sp_features), ("ap", ap_rows, ap_features)):
        folder = out / kind / tier
        folder.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_list(rows, features=features).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    configs = "".join(
        f"- config_name: {name}\n  data_files:\n  - split: train\n    path:\n    - {kind}/{tier}/*.parquet\n"
        + ("  default: true\n" if name == "sp" else "")
        for name, kind in (("sp", "sp"), ("sp_50", "sp"), ("ap", "ap"), ("ap_50", "ap")))
    (out / "README.md").write_text(f"---\nconfigs:\n{configs}license: other\n---\n# Sample semantic pairs (test fixture)\n")
    return out


@pytest.fixture(scope="session")
def sample_repo(tmp_path_factory, sample_images) -> Path:
    """A read-only release folder (SP and AP) of the bundled ImageNet sample, built by the real
    builder: 334 pairs, 18 classes."""
    from training.reproduce.smoke import sample_release

    return sample_release(tmp_path_factory.mktemp("hub"), sample_images)


@pytest.fixture(scope="session")
def hub_repo_writer():
    """`write_repo_directly`, for repos of images the builder refuses (edge cases)."""
    return write_repo_directly


@pytest.fixture(scope="session")
def training_cache(tmp_path_factory) -> Path:
    """Root of the decoded-image (`decoded/`) and `datasets` (`hf/`) caches shared by the training
    tests, so each decode happens once per session."""
    return tmp_path_factory.mktemp("training-cache")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread for every training test module, its module-scoped fixtures included: the
    test machine's 2 cores are shared, and two spinning threads per process under contention made
    steps ~10x slower. Subprocesses get OMP_NUM_THREADS=1 likewise."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def isolated_datasets_cache(training_cache, monkeypatch):
    """`datasets` writes its Arrow cache under the session's temp folder, not ~/.cache/huggingface
    (runs started through the CLI, which has no option for it, included)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(training_cache / "hf"))
