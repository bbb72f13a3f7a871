"""`propose` end to end on the bundled real photos, with planted near-duplicates, a real decision
store and real Parquet: the properties the curation app and the dataset policy rely on."""
from __future__ import annotations

import os
import shutil
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from curation_app.proposals.cache import EmbeddingCache
from curation_app.proposals.duplicates import CROP_SIMILARITY, crop_similarity, hash_distances
from curation_app.proposals.embedders import Embedder
from curation_app.proposals.output import SCHEMA, decision_source
from curation_app.proposals.propose import propose
from curation_app.proposals.ranking import rank_candidates
from pair_manifest.images import NEAR_DUPLICATE_BITS, open_rgb, perceptual_hash
from pair_manifest.stats import compute_stats
from pair_manifest.store import DecisionStore, NewDecision
from semantic_pairs_cli.main import main
from tests.curation_app.proposals_support import (
    PLANT_CLASSES, SUBSET, classes_csv, copy_classes, full_resolution, jpeg, plant_duplicates, read_rows, small,
)

PIXELS_KEY = Embedder().cache_key  # the cache key of the pixels vectors


@pytest.fixture(scope="module")
def planted(tmp_path_factory, sample_images):
    """The sample's six mixed classes, with 7 near-duplicates of 5 photos each in two classes."""
    base = tmp_path_factory.mktemp("planted")
    root = copy_classes(sample_images, base / "images")
    groups = {}
    for wnid in PLANT_CLASSES:
        originals = full_resolution(root, wnid, 3) + small(root, wnid, 2)
        groups.update(plant_duplicates(root, wnid, originals))
    csv = classes_csv(base / "classes.csv", SUBSET)
    project = base / "project"
    summary = propose(root, project, classes=str(csv), workers=2)
    return {"root": root, "csv": csv, "project": project, "summary": summary, "groups": groups}


def test_planted_near_duplicates_are_never_paired(planted):
    rows = read_rows(planted["project"])
    proposed = {(r["file_a"], r["file_b"]) for r in rows}
    for original, copies in planted["groups"].items():
        group = {original, *copies}
        inside = [p for p in proposed if p[0] in group and p[1] in group]
        assert not inside, f"near-duplicates proposed as a pair: {inside}"
    # Same-photo copies (bytes, re-encode, resize, mirror) are collapsed to one file each.
    assert planted["summary"].duplicates >= 4 * len(planted["groups"])


def test_crops_are_caught_by_the_window_test_not_the_phash(planted):
    """pHash alone does not catch the planted crops: the window descriptor is what keeps them apart."""
    cache = EmbeddingCache.for_project(planted["project"])
    try:
        wnid = PLANT_CLASSES[0]
        files = cache.class_files(wnid)
        data, _ = cache.load(PIXELS_KEY, wnid, files)
    finally:
        cache.close()
    index = {f: i for i, f in enumerate(data.files)}
    beyond_phash = 0
    for original, copies in planted["groups"].items():
        if not original.startswith(wnid):
            continue
        for copy in copies:
            if "crop" not in copy and "left" not in copy:
                continue
            i, j = index[original], index[copy]
            bits = hash_distances(data.phash[[i, j]], data.phash_mirrored[[i, j]])[0, 1]
            beyond_phash += bits >= NEAR_DUPLICATE_BITS
            assert crop_similarity(data.windows, np.array([i]), np.array([j]))[0] >= CROP_SIMILARITY, copy
    assert beyond_phash >= 3


def test_a_class_of_one_photo_and_its_crop_gets_no_pair(tmp_path, sample_images, planted):
    """A crop that pHash misses: without the window test this class would get exactly that pair."""
    wnid = PLANT_CLASSES[0]
    root = tmp_path / "images"
    (root / wnid).mkdir(parents=True)

    def phash(file):
        return perceptual_hash(open_rgb(planted["root"] / file, max_side=128))

    first, crop_file = next((original, copy) for original, copies in planted["groups"].items()
                            if original.startswith(wnid) for copy in copies
                            if ("crop" in copy or "left" in copy)
                            and phash(original).distance(phash(copy)) >= NEAR_DUPLICATE_BITS)
    for file in (first, crop_file):
        shutil.copy(planted["root"] / file, root / file)
    csv = str(classes_csv(tmp_path / "c.csv", [wnid]))
    summary = propose(root, tmp_path / "project", classes=csv, workers=1)
    assert summary.images == 2 and summary.pairs == 0
    # With a third, unrelated photo there is exactly one pair, and it is not the crop pair.
    other = sorted(p.name for p in (sample_images / wnid).iterdir())[-1]
    shutil.copy(sample_images / wnid / other, root / wnid / other)
    propose(root, tmp_path / "project", classes=csv, workers=1)
    rows = read_rows(tmp_path / "project")
    assert len(rows) == 1 and {rows[0]["file_a"], rows[0]["file_b"]} != {first, crop_file}


def test_each_image_at_most_once_per_class_in_rank_order(planted):
    table = pq.read_table(planted["project"] / "proposals.parquet")
    assert table.schema.names == SCHEMA.names
    rows = table.to_pylist()
    assert {r["wnid"] for r in rows} == set(SUBSET)
    for wnid in SUBSET:
        mine = [r for r in rows if r["wnid"] == wnid]
        uses = Counter(f for r in mine for f in (r["file_a"], r["file_b"]))
        assert max(uses.values()) == 1
        assert [r["rank"] for r in mine] == list(range(len(mine)))
        scores = [r["score"] for r in mine]
        assert scores == sorted(scores, reverse=True)
        for r in mine:
            assert r["file_a"] < r["file_b"] and r["file_a"].startswith(wnid + "/") and r["embedder"] == "pixels"
    # Classes without planted copies are matched completely (5 images -> 2 pairs, 45 -> 22).
    assert Counter(r["wnid"] for r in rows)["n04554684"] == 2
    assert Counter(r["wnid"] for r in rows)["n01443537"] == 22


def test_same_inputs_give_the_same_bytes(planted, tmp_path):
    first = (planted["project"] / "proposals.parquet").read_bytes()
    again = propose(planted["root"], planted["project"], classes=str(planted["csv"]), workers=2)
    assert again.embedded == 0 and again.reused == planted["summary"].images
    assert (planted["project"] / "proposals.parquet").read_bytes() == first
    # A fresh project, embedded in a single process instead of two workers: same bytes.
    propose(planted["root"], tmp_path / "fresh", classes=str(planted["csv"]), workers=1)
    assert (tmp_path / "fresh" / "proposals.parquet").read_bytes() == first


def test_rerun_embeds_only_new_changed_files(tmp_path, sample_images):
    wnids = ("n03085013", "n04557648")
    root = copy_classes(sample_images, tmp_path / "images", wnids)
    csv = classes_csv(tmp_path / "c.csv", wnids)
    first = propose(root, tmp_path / "project", classes=str(csv), workers=1)
    assert first.embedded == first.images == 50
    # Three new photos, one changed file, one renamed file (same bytes, new name).
    for name in sorted(os.listdir(sample_images / "n01629819"))[:3]:
        shutil.copy(sample_images / "n01629819" / name, root / "n03085013" / f"new_{name}")
    changed = sorted((root / "n04557648").iterdir())[0]
    changed.write_bytes(jpeg(open_rgb(changed), 70))
    renamed = sorted((root / "n03085013").iterdir())[-1]
    renamed.rename(renamed.with_name("renamed.JPEG"))
    second = propose(root, tmp_path / "project", classes=str(csv), workers=1)
    assert second.images == 53
    assert second.embedded == 4  # the 3 new files and the changed one; the rename is found by SHA-256
    assert second.reused == 49
    cache = EmbeddingCache.for_project(tmp_path / "project")
    try:
        assert cache.count_vectors(PIXELS_KEY) == 50 + 4
        assert "n03085013/renamed.JPEG" in cache.class_files("n03085013")
        assert f"n03085013/{renamed.name}" not in cache.class_files("n03085013")  # pool follows the folder
    finally:
        cache.close()
    files = {f for r in read_rows(tmp_path / "project") for f in (r["file_a"], r["file_b"])}
    assert f"n03085013/{renamed.name}" not in files


def test_decisions_exclude_used_images_and_decided_pairs(tmp_path, sample_images):
    wnids = ("n01443537", "n03085013")
    root = copy_classes(sample_images, tmp_path / "images", wnids)
    csv = classes_csv(tmp_path / "c.csv", wnids)
    project = tmp_path / "project"
    propose(root, project, classes=str(csv), workers=1)
    rows = [r for r in read_rows(project) if r["wnid"] == "n03085013"]
    store = DecisionStore.for_project(project, images_root=root)

    def decide(key, row, verdict, who="alice", review_of=None):
        return store.record(NewDecision(key, row["wnid"], row["file_a"], row["file_b"], verdict, who,
                                        source=decision_source(row["embedder"], row["rank"]), review_of=review_of))

    accepted, rejected, refuted = rows[0], rows[1], rows[2]
    decide("k1", accepted, "accept")
    decide("k2", rejected, "reject")
    first_accept = decide("k3", refuted, "accept")
    decide("k4", refuted, "reject", who="bob", review_of=first_accept.decision.seq)  # a review refutes it
    assert store.decided_pairs("n03085013", "refuted") == {(refuted["file_a"], refuted["file_b"])}
    # `manifest stats` reads the source the proposals gave: acceptance per embedder and rank bucket.
    stats = compute_stats(store.decisions())
    assert stats.per_embedder["pixels"] == {"decided": 3, "accepted": 2, "acceptance_rate": 2 / 3}
    assert stats.per_rank_bucket["0-9"]["decided"] == 3
    store.close()

    summary = propose(root, project, classes=str(csv), workers=1)
    assert summary.used == 2 and summary.embedded == 0
    again = [r for r in read_rows(project) if r["wnid"] == "n03085013"]
    pairs = {(r["file_a"], r["file_b"]) for r in again}
    files = {f for p in pairs for f in p}
    assert not {accepted["file_a"], accepted["file_b"]} & files
    assert (rejected["file_a"], rejected["file_b"]) not in pairs
    assert (refuted["file_a"], refuted["file_b"]) not in pairs
    # The images of rejected and refuted pairs are free again and get other partners.
    assert {rejected["file_a"], rejected["file_b"], refuted["file_a"], refuted["file_b"]} <= files
    assert len(again) == (45 - 2) // 2


def test_pick_mode_ranking_uses_the_proposal_scores(planted):
    rows = read_rows(planted["project"])
    row = next(r for r in rows if r["wnid"] == PLANT_CLASSES[0] and r["rank"] == 3)
    wnid = row["wnid"]
    everything = sorted(f"{wnid}/{name}" for name in os.listdir(planted["root"] / wnid))
    ranked = rank_candidates(planted["project"], wnid, row["file_a"], everything)
    scores = dict(ranked)
    assert scores[row["file_b"]] == pytest.approx(row["score"], abs=1e-9)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert row["file_a"] not in scores
    # An original's near-duplicates are never offered as its partner.
    original, copies = next((o, c) for o, c in planted["groups"].items() if o.startswith(wnid))
    offered = dict(rank_candidates(planted["project"], wnid, original, everything))
    assert not set(copies) & set(offered)
    assert len(offered) >= len(everything) - 1 - len(copies) - 5


def test_pick_mode_embeds_files_propose_never_saw(planted, tmp_path, sample_images):
    wnid = PLANT_CLASSES[1]
    new = planted["root"] / wnid / "pick_new.JPEG"
    new.write_bytes((sample_images / "n01629819" / sorted(os.listdir(sample_images / "n01629819"))[0]).read_bytes())
    try:
        anchor = f"{wnid}/{sorted(os.listdir(sample_images / wnid))[0]}"
        ranked = dict(rank_candidates(planted["project"], wnid, anchor, [f"{wnid}/pick_new.JPEG"]))
        assert set(ranked) == {f"{wnid}/pick_new.JPEG"} and -1.0 <= ranked[f"{wnid}/pick_new.JPEG"] <= 1.0
    finally:
        new.unlink()


def test_unreadable_images_are_reported_and_left_out(tmp_path, sample_images):
    wnid = "n04554684"
    root = copy_classes(sample_images, tmp_path / "images", (wnid,))
    good = sorted((root / wnid).iterdir())[1].read_bytes()  # its Huffman table is what breaks below
    dht = good.find(b"\xff\xc4")
    (root / wnid / "broken.JPEG").write_bytes(good[:dht + 5] + bytes(200) + good[dht + 205:])  # passes the scan
    summary = propose(root, tmp_path / "project", classes=str(classes_csv(tmp_path / "c.csv", [wnid])), workers=1)
    assert summary.failed == [f"{wnid}/broken.JPEG: corrupt: broken data stream when reading image file"]
    files = {f for r in read_rows(tmp_path / "project") for f in (r["file_a"], r["file_b"])}
    assert len(files) == 4 and f"{wnid}/broken.JPEG" not in files
    # Pick mode: the broken file is left out of an anchor's ranking, the others are ranked.
    everything = sorted(f"{wnid}/{p.name}" for p in (root / wnid).iterdir())
    anchor = sorted(files)[0]
    ranked = rank_candidates(tmp_path / "project", wnid, anchor, everything)
    assert {f for f, _ in ranked} == set(everything) - {anchor, f"{wnid}/broken.JPEG"}


def test_per_class_limit(planted, tmp_path):
    propose(planted["root"], tmp_path / "project", classes=str(planted["csv"]), per_class=3, workers=1)
    counts = Counter(r["wnid"] for r in read_rows(tmp_path / "project"))
    assert set(counts.values()) == {2, 3} and counts["n04554684"] == 2


@pytest.mark.parametrize("arguments, message", [
    (["--embedder", "resnet50"], "--embedder 'resnet50': unknown kind 'resnet50'"),
    (["--embedder", "torchvision:"], "torchvision needs an argument"),
    (["--embedder", "torchvision:not_a_model"], "torchvision:not_a_model: not a torchvision classification model"),
    (["--per-class", "0"], "--per-class: must be at least 1, got 0"),
    (["--context-weight", "-1"], "--context-weight: must be between 0 and 10, got -1.0"),
    (["--classes", "missing.csv"], "missing.csv: class selection file not found"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, sample_images, capsys, arguments, message):
    code = main(["propose", "--images", str(sample_images), "--project", str(tmp_path / "p"), *arguments])
    error = capsys.readouterr().err
    assert code == 2 and message in error and error.count("\n") == 1 and "Traceback" not in error


def test_missing_images_root_is_refused(tmp_path, capsys):
    assert main(["propose", "--images", str(tmp_path / "nowhere"), "--project", str(tmp_path / "p")]) == 2
    assert "nowhere: not a folder" in capsys.readouterr().err


def test_the_project_class_list_is_the_default_selection(tmp_path, sample_images):
    project = tmp_path / "project"
    store = DecisionStore.for_project(project, images_root=sample_images)
    store.set_meta("class_wnids", '["n04554684", "n04557648"]')  # what the app records for a project
    store.close()
    summary = propose(sample_images, project, workers=1)
    assert summary.classes == 2 and summary.images == 10
    assert {r["wnid"] for r in read_rows(project)} == {"n04554684", "n04557648"}
