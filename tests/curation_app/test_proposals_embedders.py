"""Embedder SPECs, the torch loading paths (a locally saved state dict, the caches, a training run
folder), the errors that say what is missing, and offline mode. The download itself is tested
through the loopback Hub (test_proposals_download.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from curation_app.proposals.embedders import CropPreparer, EmbedderSpec, load_embedder, parse_spec
from curation_app.proposals.propose import propose
from pair_manifest.errors import UserError
from pair_manifest.images import open_rgb
from tests.curation_app.proposals_support import classes_csv, copy_classes, read_rows

WNIDS = ("n04554684", "n04557648")  # 2 x 5 full-resolution photos: a quick class pair for networks


@pytest.mark.parametrize("text, spec", [
    ("pixels", EmbedderSpec("pixels")),
    ("torchvision:resnet50", EmbedderSpec("torchvision", "resnet50")),
    ("torchvision:resnet18@/w/r18.pt", EmbedderSpec("torchvision", "resnet18", "/w/r18.pt")),
    ("timm:vit_small_patch16_224.dino", EmbedderSpec("timm", "vit_small_patch16_224.dino")),
    ("checkpoint:/runs/a:b@c", EmbedderSpec("checkpoint", "/runs/a:b@c")),  # a path may hold ':' and '@'
])
def test_specs_parse_and_print_back(text, spec):
    assert parse_spec(text) == spec
    assert str(spec) == text


@pytest.mark.parametrize("text, message", [
    ("pixel", "unknown kind 'pixel'"),
    ("pixels:x", "pixels takes no argument"),
    ("timm:", "timm needs an argument"),
    ("timm:vit@file.pt", "timm takes a model name only"),
    ("torchvision:resnet18@", "'@' must be followed by a weights file"),
    ("torchvision:../x", "'../x' is not a model name"),
])
def test_bad_specs_say_what_was_expected(text, message):
    with pytest.raises(UserError, match=message):
        parse_spec(text)


def test_importing_proposals_does_not_import_torch(repo_root):
    code = ("import sys, curation_app.proposals.propose, curation_app.proposals.ranking, "
            "curation_app.proposals.commands, curation_app.proposals.embedders as e; e.load_embedder('pixels'); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_crop_preparer_gives_the_centre_crop(sample_images):
    path = sorted((sample_images / WNIDS[0]).iterdir())[0]
    data = path.read_bytes()
    crop = CropPreparer(resize=64, crop=56)(data, open_rgb(data, max_side=128))
    assert crop.shape == (56, 56, 3) and crop.dtype == np.uint8 and crop.std() > 5


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory, sample_images):
    base = tmp_path_factory.mktemp("nets")
    return copy_classes(sample_images, base / "images", WNIDS), classes_csv(base / "c.csv", WNIDS)


def test_torchvision_with_a_local_state_dict(tmp_path, two_classes):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    weights = tmp_path / "r18 random.pt"
    torch.save(resnet18(weights=None).state_dict(), weights)  # a real state dict, head included
    root, csv = two_classes
    summary = propose(root, tmp_path / "project", classes=str(csv), embedder=f"torchvision:resnet18@{weights}",
                      workers=2)
    assert summary.embedder == "torchvision-resnet18@r18_random"  # no ':' or spaces: the decision source format
    rows = read_rows(tmp_path / "project")
    assert len(rows) == 4 and {r["embedder"] for r in rows} == {"torchvision-resnet18@r18_random"}
    embedder = load_embedder(f"torchvision:resnet18@{weights}")
    assert embedder.cache_key.startswith("torchvision/resnet18/") and embedder.standardize == "center"
    # The same photos under the pixels embedder are cached separately: switching re-embeds.
    assert propose(root, tmp_path / "project", classes=str(csv), workers=1).embedded == 10
    assert propose(root, tmp_path / "project", classes=str(csv), embedder=f"torchvision:resnet18@{weights}",
                   workers=1).embedded == 0


def test_torchvision_refuses_weights_of_another_model(tmp_path):
    from torchvision.models import resnet34

    weights = tmp_path / "r34.pt"
    torch.save(resnet34(weights=None).state_dict(), weights)
    with pytest.raises(UserError, match=r"r34.pt: weights do not fit this model \(missing none; unexpected layer1.2"):
        load_embedder(f"torchvision:resnet18@{weights}")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pt: cannot be read as a PyTorch state dict"):
        load_embedder(f"torchvision:resnet18@{tmp_path / 'junk.pt'}")
    with pytest.raises(UserError, match="weights file .*absent.pt not found"):
        load_embedder(f"torchvision:resnet18@{tmp_path / 'absent.pt'}")


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_torchvision_offline_names_the_missing_file(tmp_path, monkeypatch, how):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty cache
    if how == "environment":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as caught:
        load_embedder("torchvision:resnet50", offline=True if how == "flag" else None)
    message = str(caught.value)
    assert "ResNet50_Weights.IMAGENET1K_V2 are not in torch's cache" in message
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth") in message
    assert "downloads are off (--offline or HF_HUB_OFFLINE=1)" in message and "torchvision:resnet50@FILE" in message
    assert not (tmp_path / "torch-home" / "hub" / "checkpoints").exists()


def test_torchvision_uses_weights_already_in_torchs_cache(tmp_path, monkeypatch):
    """A file at the path torchvision's weights API downloads to is used as it is, offline."""
    from torchvision.models import ResNet18_Weights, resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    checkpoints = tmp_path / "torch-home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    reference = resnet18(weights=None).eval()
    torch.save(reference.state_dict(), checkpoints / ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1])
    embedder = load_embedder("torchvision:resnet18", offline=True)
    assert embedder.label == "torchvision-resnet18" and (embedder.resize, embedder.crop) == (256, 224)
    batch = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        pixels = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
        expected = reference((pixels - embedder.mean) / embedder.std).numpy()
    np.testing.assert_allclose(embedder.embed(batch), expected, rtol=1e-4, atol=1e-4)


def hf_cache_with(cache, repo_id: str, files: dict[str, bytes]) -> None:
    """Files laid out as huggingface_hub's cache keeps a downloaded snapshot (refs/main -> commit)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        (repo / "snapshots" / commit / name).write_bytes(data)


def test_timm_loads_weights_from_the_hugging_face_cache(tmp_path, monkeypatch, two_classes):
    """The real timm path: a model name, weights found in the Hub cache (placed there by the test),
    the classifier dropped, timm's own preprocessing settings used."""
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError, match=r"timm:resnet18: weights \(timm/resnet18.a1_in1k\) are not in the Hugging Face "
                                        r"cache and downloads are off \(--offline or HF_HUB_OFFLINE=1\)"):
        load_embedder("timm:resnet18", offline=True)

    torch.manual_seed(0)
    reference = timm.create_model("resnet18", pretrained=False).eval()
    hf_cache_with(tmp_path / "hub", "timm/resnet18.a1_in1k", {"model.safetensors": save(reference.state_dict())})
    embedder = load_embedder("timm:resnet18", offline=True)
    assert embedder.label == "timm-resnet18" and embedder.cache_key.startswith("timm/resnet18/")
    assert (embedder.resize, embedder.crop) == (round(224 / 0.95), 224)  # resnet18.a1_in1k: crop_pct 0.95
    batch = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    reference.reset_classifier(0)
    with torch.no_grad():
        pixels = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
        expected = reference((pixels - embedder.mean) / embedder.std).numpy()
    assert expected.shape == (2, 512)  # pooled features, not the 1000 logits
    np.testing.assert_allclose(embedder.embed(batch), expected, rtol=1e-4, atol=1e-4)

    root, csv = two_classes
    propose(root, tmp_path / "project", classes=str(csv), embedder="timm:resnet18", workers=1, offline=True)
    assert {r["embedder"] for r in read_rows(tmp_path / "project")} == {"timm-resnet18"}


def test_timm_weights_of_another_model_are_refused(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hf_cache_with(tmp_path / "hub", "timm/resnet18.a1_in1k",
                  {"model.safetensors": save(timm.create_model("resnet34", pretrained=False).state_dict())})
    with pytest.raises(UserError, match=r"model.safetensors: weights do not fit this model"):
        load_embedder("timm:resnet18", offline=True)


def test_timm_unknown_model_is_named():
    with pytest.raises(UserError, match="timm:no_such_net"):
        load_embedder("timm:no_such_net", offline=True)


def test_timm_names_the_missing_package(monkeypatch):
    """Without timm installed (simulated: find_spec reports it absent) the message says what to install."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real_find_spec(name, *a))
    with pytest.raises(UserError, match=r"timm:vit_small_patch16_224: the 'timm' package is not installed \(pip install timm\)"):
        load_embedder("timm:vit_small_patch16_224")


def write_run(run_dir, *, stem="small", resolution=32):
    """A run folder in the training package's format: config.json + checkpoints/last.pt."""
    from training.backbones import BackboneSpec, build_backbone

    torch.manual_seed(0)
    spec = {"name": "resnet18", "stem": stem, "image_size": resolution}
    backbone, _ = build_backbone(BackboneSpec(**spec))
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"backbone": spec, "resolution": resolution, "method": "simclr"}))
    torch.save({"eval_backbone": backbone.state_dict(), "step": 10}, run_dir / "checkpoints" / "last.pt")
    return backbone


def test_checkpoint_of_a_training_run(tmp_path, two_classes):
    backbone = write_run(tmp_path / "run-simclr")
    embedder = load_embedder(f"checkpoint:{tmp_path / 'run-simclr'}")
    assert embedder.label == "checkpoint-run-simclr" and (embedder.resize, embedder.crop) == (32, 32)
    # The loaded network is the saved one: same features as the backbone we wrote.
    batch = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    backbone.eval()
    with torch.no_grad():
        pixels = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
        expected = backbone((pixels - embedder.mean) / embedder.std).numpy()
    np.testing.assert_allclose(embedder.embed(batch), expected, rtol=1e-4, atol=1e-5)
    root, csv = two_classes
    propose(root, tmp_path / "project", classes=str(csv), embedder=f"checkpoint:{tmp_path / 'run-simclr'}", workers=1)
    assert {r["embedder"] for r in read_rows(tmp_path / "project")} == {"checkpoint-run-simclr"}


def test_bad_run_folders_are_named(tmp_path):
    with pytest.raises(UserError, match="no such run folder"):
        load_embedder(f"checkpoint:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no checkpoints/last.pt"):
        load_embedder(f"checkpoint:{tmp_path / 'empty'}")
    write_run(tmp_path / "broken")
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(Exception) as caught:
        load_embedder(f"checkpoint:{tmp_path / 'broken'}")
    assert getattr(caught.value, "exit_code", None) == 2 and "config.json" in str(caught.value)
