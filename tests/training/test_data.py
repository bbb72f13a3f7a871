"""Training data: real `load_dataset` over a Hub-layout folder of real photos, the decoded cache,
SP/AP batches, sharding, and clear refusals of bad input."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from training.data import load_dataset
from training.data.batches import PairBatches
from training.data.decode import canvas_side, decode_photo
from training.errors import TrainingError

R = 32
S = canvas_side(R)  # whole photos on S x S canvases


@pytest.fixture(scope="module")
def sp(sample_repo, training_cache):
    return load_dataset(str(sample_repo), "sp", resolution=R, cache_dir=training_cache / "decoded",
                        hf_cache_dir=str(training_cache / "hf"), workers=2, progress=False)


def test_sp_decodes_once_into_a_uint8_cache_that_later_loads_reuse(sp, sample_repo, training_cache):
    assert sp.pairs and sp.images.shape == (334, 2, S, S, 3) and sp.images.dtype == np.uint8
    assert sp.sizes.shape == (334, 2, 2) and (sp.sizes.min(axis=-1) <= 3 * R).all()
    # The release's label space is its class selection (the default 187); the sample fills 18.
    assert len(sp.class_names) == 187 and sp.labels.shape == (334,) and len(set(sp.labels.tolist())) == 18
    written = (sp.path / "images.npy").stat().st_mtime_ns
    again = load_dataset(str(sample_repo), "sp", resolution=R, cache_dir=training_cache / "decoded",
                         hf_cache_dir=str(training_cache / "hf"), progress=False)
    assert again.path == sp.path and (sp.path / "images.npy").stat().st_mtime_ns == written
    assert np.array_equal(np.asarray(again.images[:5]), np.asarray(sp.images[:5]))
    other = load_dataset(str(sample_repo), "sp", resolution=24, cache_dir=training_cache / "decoded",
                         hf_cache_dir=str(training_cache / "hf"), progress=False)
    assert other.path != sp.path and other.images.shape[-2] == canvas_side(24)  # keyed by resolution too


def test_sp_batches_pair_two_different_images_of_one_class(sp, sample_images):
    batches = PairBatches(sp, batch_size=32, seed=0, device=torch.device("cpu"))
    batch = batches.batch(0)
    assert batch.first.shape == batch.second.shape == (32, S, S, 3)
    for i, row in enumerate(batch.rows.tolist()):
        file_a, file_b = sp.files[row]
        assert file_a != file_b and file_a.split("/")[0] == file_b.split("/")[0]  # one class, two files
        assert sp.class_names[sp.labels[row]] == file_a.split("/")[0]
        # the pixels really are those two photographs, decoded from their original bytes
        for view, size, file in ((batch.first, batch.size_a, file_a), (batch.second, batch.size_b, file_b)):
            canvas, (w, h) = decode_photo((sample_images / file).read_bytes(), None, R)
            assert torch.equal(view[i], torch.from_numpy(canvas)) and size[i].tolist() == [w, h]
        assert not torch.equal(batch.first[i], batch.second[i])


def test_ap_rows_are_single_images_and_both_views_come_from_one(sample_repo, training_cache, sp):
    ap = load_dataset(str(sample_repo), "ap", resolution=R, cache_dir=training_cache / "decoded",
                      hf_cache_dir=str(training_cache / "hf"), progress=False)
    assert not ap.pairs and ap.images.shape == (334, S, S, 3)
    assert np.array_equal(np.asarray(ap.images), np.asarray(sp.images[:, 0]))  # AP = image_a of each pair
    batch = PairBatches(ap, batch_size=16, seed=0, device=torch.device("cpu")).batch(3)
    assert torch.equal(batch.first, batch.second)


def test_an_epoch_visits_each_row_once_and_shards_partition_the_rows(sp):
    one = PairBatches(sp, batch_size=32, seed=7, device=torch.device("cpu"), shards=2)
    ranks = [PairBatches(sp, batch_size=32, seed=7, device=torch.device("cpu"), shards=2, rank=r, world_size=2)
             for r in range(2)]
    held = [set(b.rows.tolist()) for b in ranks]
    assert not held[0] & held[1] and held[0] | held[1] == set(range(len(sp)))
    assert ranks[0].images.shape[0] + ranks[1].images.shape[0] == len(sp)  # each rank stores only its shard
    assert one.steps_per_epoch == ranks[0].steps_per_epoch == (len(sp) // 2) // 16
    seen = []
    for step in range(one.steps_per_epoch):
        full = one.batch(step).rows
        parts = torch.cat([r.batch(step).rows for r in ranks])
        assert torch.equal(full, parts)  # the 1-process global batch is the union of the ranks' batches
        seen += full.tolist()
    assert len(seen) == len(set(seen))
    assert not torch.equal(one.batch(0).rows, one.batch(one.steps_per_epoch).rows)  # a new order each epoch


def test_a_changed_local_repo_is_decoded_again(sample_repo, tmp_path):
    import datasets

    repo = tmp_path / "repo"
    shutil.copytree(sample_repo, repo)
    options = dict(resolution=16, cache_dir=tmp_path / "decoded", hf_cache_dir=str(tmp_path / "hf"), progress=False)
    first = load_dataset(str(repo), "sp", **options)
    parquet = next((repo / "sp" / "tier050").glob("*.parquet"))
    datasets.Dataset.from_parquet(str(parquet), cache_dir=str(tmp_path / "hf2")).select(range(40)).to_parquet(str(parquet))
    second = load_dataset(str(repo), "sp", **options)
    assert len(first) == 334 and len(second) == 40 and second.key != first.key


def test_tiny_imagenet_folder_is_read_with_imagefolder(tiny_imagenet_root, training_cache):
    data = load_dataset(str(tiny_imagenet_root.parent), "tiny_imagenet", resolution=R,
                        cache_dir=training_cache / "decoded", hf_cache_dir=str(training_cache / "hf"), progress=False)
    assert not data.pairs and data.images.shape == (300, S, S, 3) and len(data.class_names) == 30
    assert data.files[0][0].endswith(".JPEG")


def test_corrupt_images_are_refused_with_their_file_names(edge_cases_root, hub_repo_writer, tmp_path):
    repo = hub_repo_writer(edge_cases_root, tmp_path / "edge_repo")
    with pytest.raises(TrainingError) as caught:
        load_dataset(str(repo), "sp", resolution=16, cache_dir=tmp_path / "decoded", hf_cache_dir=str(tmp_path / "hf"),
                     progress=False)
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "cannot be decoded" in message
    assert "file_a=" in message or "file_b=" in message
    assert not list((tmp_path / "decoded").glob("*r16"))  # nothing half-written is left to be trusted


@pytest.mark.parametrize("data, config, expected", [
    ("{repo}", "sp_manifest", "manifest config holds ids"),
    ("{repo}", "spx", "not a training config"),
    ("{partial}", "sp_100", "sp_100"),  # a repo that declares sp and sp_50 only
    ("/no/such/folder", "sp", "neither an existing folder nor a Hub id"),
    ("{images}", "sp", "no README.md declaring `configs`"),
])
def test_bad_data_options_get_one_line_messages(data, config, expected, sample_repo, sample_images, hub_repo_writer,
                                                 tmp_path):
    partial = hub_repo_writer(sample_images, tmp_path / "partial") if "{partial}" in data else None
    with pytest.raises(TrainingError, match=expected) as caught:
        load_dataset(data.format(repo=sample_repo, images=sample_images, partial=partial), config, resolution=16,
                     cache_dir=tmp_path / "decoded", hf_cache_dir=str(tmp_path / "hf"), progress=False)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)


def test_batch_size_problems_are_refused(sp):
    with pytest.raises(TrainingError, match="fewer than one batch"):
        PairBatches(sp, batch_size=512, seed=0, device=torch.device("cpu"))
    with pytest.raises(TrainingError, match="multiple of the number of shards"):
        PairBatches(sp, batch_size=31, seed=0, device=torch.device("cpu"), shards=2)


def test_reads_the_release_that_semantic_pairs_build_writes(sample_images, tmp_path):
    """The real chain: `manifest import` -> `build` -> this loader (the fixture repo above stands in
    for `build` in the other tests, to keep them independent of the builder)."""
    from semantic_pairs_cli.main import main

    lines = ["wnid,file_a,file_b"]
    for wnid in sorted(p.name for p in sample_images.iterdir())[:4]:
        files = sorted(f.name for f in (sample_images / wnid).iterdir())
        lines += [f"{wnid},{wnid}/{a},{wnid}/{b}" for a, b in zip(files[0::2], files[1::2])]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    assert main(["manifest", "import", str(tmp_path / "pairs.csv"), "--images", str(sample_images),
                 "--out", str(tmp_path / "manifest")]) == 0
    assert main(["build", "--manifest", str(tmp_path / "manifest"), "--images", str(sample_images),
                 "--out", str(tmp_path / "semantic_pairs"), "--allow-short"]) == 0
    options = dict(resolution=16, cache_dir=tmp_path / "decoded", hf_cache_dir=str(tmp_path / "hf"), progress=False)
    sp = load_dataset(str(tmp_path / "semantic_pairs"), "sp", **options)
    ap = load_dataset(str(tmp_path / "semantic_pairs"), "ap", **options)
    assert sp.pairs and len(sp) == len(lines) - 1 and not ap.pairs and len(ap) == len(sp)
    by_files = {tuple(files): i for i, files in enumerate(sp.files)}
    wnid, file_a, file_b = lines[1].split(",")
    row = by_files[(file_a, file_b)]
    assert sp.class_names[sp.labels[row]] == wnid
    assert np.array_equal(sp.images[row, 0], decode_photo((sample_images / file_a).read_bytes(), None, 16)[0])
    assert np.array_equal(sp.images[row, 1], decode_photo((sample_images / file_b).read_bytes(), None, 16)[0])
