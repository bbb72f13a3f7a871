"""`--embedder timm:NAME` fetches its weights the normal way, for real: a small randomly initialised
timm model is published in timm's Hub format (`config.json` + `model.safetensors`, written by
timm's own `save_for_hf`) to the loopback Hub, and `semantic-pairs propose` downloads it through
`HF_ENDPOINT` into the Hugging Face cache; offline, the cache serves it, and an empty cache is a
clear refusal."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.curation_app.proposals_support import classes_csv, copy_classes, read_rows

MODEL = "test_vit.r160_in1k"  # timm's 371 k-parameter test ViT; its Hub id is timm/test_vit.r160_in1k
HUB_ID = f"timm/{MODEL}"
WNIDS = ("n04554684", "n04557648")

PUBLISH = """
import sys, torch, timm
from huggingface_hub import HfApi
from timm.models import save_for_hf
torch.manual_seed(0)
model = timm.create_model(sys.argv[1].split("/", 1)[1], pretrained=False)
save_for_hf(model, sys.argv[2], safe_serialization="both")  # as timm.models.push_to_hf_hub does
api = HfApi()
api.create_repo(sys.argv[1], repo_type="model")
api.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2], repo_type="model")
"""


def propose_command(root: Path, project: Path, csv: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "semantic_pairs_cli.main", "propose", "--images", str(root), "--project",
            str(project), "--classes", str(csv), "--embedder", f"timm:{MODEL}", "--workers", "1", *extra]


@pytest.fixture
def published(loopback_hub, tmp_path, repo_root):
    folder = tmp_path / "timm-format"
    env = loopback_hub.client_env(tmp_path / "publisher-home")
    subprocess.run([sys.executable, "-c", PUBLISH, HUB_ID, str(folder)], env=env, cwd=repo_root, check=True,
                   capture_output=True, text=True)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "pytorch_model.bin"]
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture
def two_classes(tmp_path, sample_images):
    return copy_classes(sample_images, tmp_path / "images", WNIDS), classes_csv(tmp_path / "classes.csv", WNIDS)


def test_timm_weights_are_downloaded_from_the_hub_then_used_offline(loopback_hub, published, two_classes, tmp_path,
                                                                   repo_root):
    root, csv = two_classes
    home = tmp_path / "user-home"
    env = loopback_hub.client_env(home, token=None)
    result = subprocess.run(propose_command(root, tmp_path / "project", csv), env=env, cwd=repo_root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert {r["embedder"] for r in read_rows(tmp_path / "project")} == {f"timm-{MODEL}"}
    fetched = [r.path for r in loopback_hub.requests if r.method == "GET" and r.path.endswith("/model.safetensors")]
    assert fetched == [f"/{HUB_ID}/resolve/main/model.safetensors"]
    cached = list((home / "hub" / f"models--{HUB_ID.replace('/', '--')}" / "snapshots").glob("*/model.safetensors"))
    assert len(cached) == 1 and hashlib.sha256(cached[0].read_bytes()).hexdigest() == published

    loopback_hub.stop()  # no Hub any more: the cache must do
    again = subprocess.run(propose_command(root, tmp_path / "project-2", csv, "--offline"), env=env, cwd=repo_root,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert read_rows(tmp_path / "project-2") == read_rows(tmp_path / "project")  # the same weights, the same pairs


@pytest.mark.parametrize("how", ["--offline", "HF_HUB_OFFLINE=1"])
def test_offline_with_an_empty_cache_is_a_clear_refusal(loopback_hub, published, two_classes, tmp_path, repo_root, how):
    root, csv = two_classes
    env = loopback_hub.client_env(tmp_path / "empty-home", token=None)
    extra = [how] if how.startswith("--") else []
    if not extra:
        env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(propose_command(root, tmp_path / "project", csv, *extra), env=env, cwd=repo_root,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: timm:{MODEL}: weights ({HUB_ID}) are not in the Hugging Face cache and "
                                     f"downloads are off (--offline or HF_HUB_OFFLINE=1): run once with a connection "
                                     f"(or `hf download {HUB_ID}`)")
    assert not any(r.path.endswith("/model.safetensors") for r in loopback_hub.requests)  # nothing was fetched
    assert not (tmp_path / "project" / "proposals.parquet").exists()


def test_an_unreachable_hub_is_one_line(loopback_hub, published, two_classes, tmp_path, repo_root):
    root, csv = two_classes
    env = loopback_hub.client_env(tmp_path / "home", token=None)
    loopback_hub.stop()
    result = subprocess.run(propose_command(root, tmp_path / "project", csv), env=env, cwd=repo_root,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: timm:{MODEL}: could not download {HUB_ID}/model.safetensors from the "
                                    f"Hugging Face Hub at {env['HF_ENDPOINT']} (") and len(result.stderr.splitlines()) == 1
