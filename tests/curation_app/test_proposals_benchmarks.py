"""The precision and ceiling benchmarks run on any folders that merge real classes, with the
interface other checks rely on: `--images DIR --truth CSV [--embedder SPEC] [--decisions N]`."""
from __future__ import annotations

import csv
import re
import shutil
import sys
from pathlib import Path

import pytest

MERGES = {"n04285008": "n03417042", "n02481823": "n04285008"}  # folder -> the class merged into it


@pytest.fixture
def merged(tmp_path, sample_images, repo_root):
    """Two folders of the real sample, each holding its own photos and another class's, and the
    truth file naming each photo's real class."""
    sys.path.insert(0, str(repo_root))
    root, rows = tmp_path / "merged", []
    for folder, other in MERGES.items():
        (root / folder).mkdir(parents=True)
        for wnid in (folder, other):
            for path in sorted((sample_images / wnid).iterdir())[:20]:
                shutil.copy(path, root / folder / f"{wnid}-{path.name}")
                rows.append({"file": f"{folder}/{wnid}-{path.name}", "true_wnid": wnid})
    truth = tmp_path / "truth.csv"
    with open(truth, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["file", "true_wnid"])
        writer.writeheader()
        writer.writerows(rows)
    return root, truth


def test_precision_benchmark_prints_blocks_and_its_last_line(merged, tmp_path, capsys):
    from benchmarks import proposals_precision

    root, truth = merged
    plot = tmp_path / "precision.png"
    code = proposals_precision.main(["--images", str(root), "--truth", str(truth), "--decisions", "5",
                                     "--compare-learning", "--plot", str(plot), "--workers", "1"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert "== pixels, rank order" in out and "== pixels, learning from decisions" in out
    assert sum(line.startswith("after the first 5 decisions of each class: precision") for line in out) == 2
    assert re.fullmatch(r"precision@157 (\d\.\d\d|-), shown per accept \d+\.\d\d", out[-1])
    assert plot.stat().st_size > 0


def test_ceiling_benchmark_gives_a_pooled_figure(merged, capsys):
    from benchmarks import proposals_ceiling

    root, truth = merged
    assert proposals_ceiling.main(["--images", str(root), "--truth", str(truth), "--decisions", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith(tuple(MERGES)) for line in out) == len(MERGES)
    assert re.fullmatch(r"ceiling after 5: \d\.\d\d \(\d+ of \d+\)", out[-1])


def test_a_truth_file_without_its_columns_is_one_line(merged, tmp_path, capsys):
    from benchmarks import proposals_precision

    root, _ = merged
    bad = tmp_path / "bad.csv"
    bad.write_text("name,label\na,b\n")
    assert proposals_precision.main(["--images", str(root), "--truth", str(bad)]) != 0
    assert capsys.readouterr().err.strip() == f"error: --truth {bad}: expected the columns file,true_wnid"
