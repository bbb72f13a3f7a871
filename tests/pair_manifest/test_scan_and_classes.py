"""`scan` sorts every file of a real folder, and class selections refuse bad rows by number."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from pair_manifest.classes import imagenet_classes, load_selection
from pair_manifest.errors import UserError
from pair_manifest.scan import scan_root


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "semantic_pairs_cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def test_default_selection_is_187_classes_in_imagenet_order():
    selection = load_selection()
    assert len(selection) == 187
    indices = [c.imagenet_index for c in selection.classes]
    assert indices == sorted(indices)
    assert sum(c.source.startswith("fill:") for c in selection.classes) == 14
    # "crane" in the paper is the bird (index 134), not the machine (517).
    assert selection.by_wnid("n02012849").imagenet_index == 134
    assert selection.label_of(selection.wnids[0]) == 0
    assert len(imagenet_classes()) == 1000


def test_user_csv_selection_reports_each_bad_row(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("wnid,name\nn04557648,bottle\nn01443537,\n")
    selection = load_selection(good)
    assert selection.wnids == ["n01443537", "n04557648"]  # label order is ImageNet order
    assert selection.by_wnid("n04557648").name == "bottle"
    assert selection.by_wnid("n01443537").name == "goldfish"
    bad = tmp_path / "bad.csv"
    bad.write_text("wnid\nn04557648\nn99999999\nfoo\nn04557648\n")
    with pytest.raises(UserError) as caught:
        load_selection(bad)
    message = str(caught.value)
    assert "row 3: n99999999 is not one of the 1000" in message
    assert "row 4: 'foo' is not a wnid" in message
    assert "row 5: n04557648 is listed twice" in message
    nowhere = tmp_path / "none.csv"
    with pytest.raises(UserError, match="not found"):
        load_selection(nowhere)


def test_scan_sorts_edge_cases(edge_cases_root):
    report = scan_root(edge_cases_root, load_selection(), workers=1, progress=False)
    goldfish = report.classes["n01443537"]
    assert set(goldfish.usable) == {
        "n01443537_11099.JPEG", "n01443537_2625.JPEG", "n01443537_2675.JPEG", "n01443537_cmyk.JPEG",
        "n01443537_exif_rot90.JPEG", "n01443537_gray.JPEG", "n01443537_png_bytes.JPEG"}
    assert {name: reason.split(":")[0] for name, reason in goldfish.rejected} == {
        "n01443537_bomb.JPEG": "decompression_bomb", "n01443537_empty.JPEG": "empty",
        "n01443537_garbage.JPEG": "not_an_image", "n01443537_truncated.JPEG": "truncated"}
    ignored = dict(report.ignored)
    assert "n01443537/.DS_Store" in ignored and "n01443537/n01443537_boxes.txt" in ignored
    assert "not a wnid" in ignored["not_a_wnid/"]
    assert "not one of the 1000" in ignored["n99999999/"]
    assert report.classes["n01629819"].usable == ["n01629819_0.JPEG"]


def test_scan_refuses_symlinks_out_of_the_root(images_copy, tmp_path):
    outside = tmp_path / "secret.JPEG"
    outside.write_bytes(next((images_copy / "n04554684").iterdir()).read_bytes())
    os.symlink(outside, images_copy / "n04554684" / "link.JPEG")
    report = scan_root(images_copy, load_selection(), workers=1, progress=False)
    assert ("link.JPEG", "symlink pointing outside the images root") in report.classes["n04554684"].rejected


def test_scan_json_command_prints_the_fixed_shape(edge_cases_root):
    result = run_cli("scan", edge_cases_root, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"root", "classes", "rejected", "ignored"}
    assert {"wnid", "name", "usable", "rejected"} == set(data["classes"][0])
    assert {"path": "n01443537/n01443537_empty.JPEG", "reason": "empty: the file has zero bytes"} in data["rejected"]
    assert all(set(item) == {"path", "reason"} for item in data["ignored"])


def test_scan_of_the_sample_in_parallel_matches_serial(sample_images):
    serial = scan_root(sample_images, load_selection(), workers=1, progress=False)
    parallel = scan_root(sample_images, load_selection(), workers=2, progress=False)
    assert serial.to_json() == parallel.to_json()
    assert sum(len(c.usable) for c in serial.classes.values()) == 675


def test_scan_errors_are_one_line_with_nonzero_exit(tmp_path):
    result = run_cli("scan", tmp_path / "nowhere")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nowhere'}: images root is not a folder"
    bad = tmp_path / "classes.csv"
    bad.write_text("name\nx\n")
    result = run_cli("scan", tmp_path, "--classes", bad)
    assert result.returncode == 2 and "needs a header with a 'wnid' column" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_does_not_import_torch_or_gradio():
    code = ("import sys; from semantic_pairs_cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'gradio', 'datasets') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_scan_never_opens_protected_files_behind_image_names(images_copy, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    database = project / "decisions.sqlite"
    database.write_bytes(b"SQLite format 3\0")
    os.symlink(database, images_copy / "n04554684" / "db.JPEG")
    report = scan_root(images_copy, load_selection(), workers=1, progress=False, protected=(project,))
    assert ("db.JPEG", "a project or users file behind an image name (never opened)") in report.classes["n04554684"].rejected


def test_an_unreadable_class_folder_is_reported_with_the_reason_not_a_traceback(sample_images):
    """As an unprivileged user (permission bits mean nothing to root): a class folder without
    read permission is listed as unreadable, every other class is scanned as usual."""
    from tests.support.faults import require_unprivileged_python, run_as_nobody, world_writable_dir

    home = world_writable_dir()
    try:
        require_unprivileged_python(home)
        images = home / "images"
        shutil.copytree(sample_images, images)
        for path in [images, *images.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (images / "n04554684").chmod(0o000)
        result = run_as_nobody(home, "scan", str(images))
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert "unreadable n04554684/: the class folder cannot be read (Permission denied)" in result.stdout
        assert "1 class folder(s) unreadable" in result.stdout
        assert "n04557648  water_bottle" in result.stdout  # the others are scanned
        as_json = json.loads(run_as_nobody(home, "scan", str(images), "--json").stdout)
        assert as_json["unreadable"] == [{"path": "n04554684/",
                                          "reason": "the class folder cannot be read (Permission denied)"}]
        images.chmod(0o000)
        top = run_as_nobody(home, "scan", str(images))
        assert top.returncode == 2 and top.stderr == f"error: {images}: the images root cannot be read (Permission denied)\n"
    finally:
        for path in home.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(home)
