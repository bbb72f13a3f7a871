"""publish -> load_dataset("ORG/NAME") -> verify ORG/NAME -> materialize, over real HTTP against
the loopback Hub (tests/support/loopback_hub.py). Clients are subprocesses whose environment
points huggingface_hub at the server before it is imported."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from tests.builders.conftest import PAIRS_PER_CLASS, run_cli, tree_bytes
from tests.support.loopback_hub import MAINTAINER_TOKEN

LOAD_SCRIPT = """
import hashlib, json, sys
import datasets
datasets.config.USE_PARQUET_EXPORT = False
from datasets import Image, load_dataset
repo, config, cache = sys.argv[1:4]
ds = load_dataset(repo, config, split="train", cache_dir=cache)
raw = ds.cast_column("image_a", Image(decode=False)).cast_column("image_b", Image(decode=False))
print(json.dumps({"rows": ds.num_rows, "size": list(ds[0]["image_a"].size),
                  "bytes": {r["file_a"]: hashlib.sha256(r["image_a"]["bytes"]).hexdigest() for r in raw}}))
"""


def test_publish_then_load_and_verify_over_http(loopback_hub, built_release, release_inputs, tmp_path):
    env = loopback_hub.client_env(tmp_path / "hf_home", base=dict(os.environ, HF_HUB_VERBOSITY="debug"))
    first = run_cli("publish", built_release, "--repo-id", "sp-org/semantic-pairs", "--gated", "manual", env=env)
    assert first.returncode == 0, first.stderr
    repo = loopback_hub.repo("sp-org/semantic-pairs")
    assert len(repo.commits) == 2  # the repo's initial commit + the release, in one commit
    assert repo.gated == "manual"
    assert sorted(repo.head.files) == sorted([".gitattributes"] + list(tree_bytes(built_release)))
    for path, data in tree_bytes(built_release).items():
        assert loopback_hub.object_bytes(repo.head.files[path].sha256) == data, path

    load = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, "sp-org/semantic-pairs", "sp", str(tmp_path / "cache")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert load.returncode == 0, load.stderr[-3000:]
    loaded = json.loads(load.stdout.strip().splitlines()[-1])
    assert loaded["rows"] == release_inputs.expected_rows(PAIRS_PER_CLASS)
    for file, digest in loaded["bytes"].items():
        assert digest == hashlib.sha256((release_inputs.images / file).read_bytes()).hexdigest()
    # The gated repo's files were read with the maintainer's token: it reached the server...
    assert any(r.authorization == f"Bearer {MAINTAINER_TOKEN}" and "/resolve/" in r.path for r in loopback_hub.requests)

    verify = run_cli("verify", "sp-org/semantic-pairs", env=env)
    assert verify.returncode == 0, verify.stderr[-3000:]
    assert "sp-org/semantic-pairs: verified" in verify.stdout

    anonymous = run_cli("verify", "sp-org/semantic-pairs", env=loopback_hub.client_env(tmp_path / "anon", token=None))
    assert anonymous.returncode == 2 and "the repo is gated: request access" in anonymous.stderr

    again = run_cli("publish", built_release, "--repo-id", "sp-org/semantic-pairs", env=env)
    assert again.returncode == 0, again.stderr
    assert "no commit" in again.stdout
    assert len(repo.commits) == 2
    # ...but never into any output or log, even at debug verbosity.
    for result in (first, load, verify, again):
        assert MAINTAINER_TOKEN not in result.stdout + result.stderr


def test_manifest_only_release_has_no_pixels_and_materializes_the_build(loopback_hub, built_release,
                                                                         release_inputs, tmp_path):
    env = loopback_hub.client_env(tmp_path / "hf_home")
    published = run_cli("publish", built_release, "--repo-id", "sp-org/semantic-pairs-manifest", "--manifest-only",
                        env=env)
    assert published.returncode == 0, published.stderr
    repo = loopback_hub.repo("sp-org/semantic-pairs-manifest")
    assert sorted(repo.head.files) == [".gitattributes", "README.md", "manifest/ap-00000-of-00001.parquet",
                                       "manifest/sp-00000-of-00001.parquet"]
    manifests = {hashlib.sha256((built_release / p).read_bytes()).hexdigest()
                 for p in ("manifest/sp-00000-of-00001.parquet", "manifest/ap-00000-of-00001.parquet")}
    assert {oid for oid, _ in loopback_hub.lfs_uploads} == manifests
    image_bytes = sum(p.stat().st_size for p in built_release.rglob("*.parquet") if "manifest" not in p.parts)
    assert not [p for p in repo.head.files if p.startswith(("sp/", "ap/"))]
    received = loopback_hub.bytes_received()  # every request body the server got, card included
    assert received < image_bytes / 5, (received, image_bytes)
    card = loopback_hub.object_bytes(repo.head.files["README.md"].sha256).decode()
    assert "config_name: sp_manifest" in card and "config_name: sp\n" not in card
    assert "extra_gated_fields" not in card and "semantic-pairs materialize" in card

    verify = run_cli("verify", "sp-org/semantic-pairs-manifest", env=env)
    assert verify.returncode == 0, verify.stderr[-3000:]
    assert "manifest release" in verify.stdout

    out = tmp_path / "materialized"
    result = run_cli("materialize", "sp-org/semantic-pairs-manifest", "--imagenet", release_inputs.images,
                     "--out", out, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert tree_bytes(out) == tree_bytes(built_release)



def test_private_repo_and_rejected_token(loopback_hub, built_release, tmp_path):
    env = loopback_hub.client_env(tmp_path / "hf_home")
    published = run_cli("publish", built_release, "--repo-id", "sp-org/private", "--manifest-only", "--private",
                        env=env)
    assert published.returncode == 0, published.stderr
    assert loopback_hub.repo("sp-org/private").private

    anonymous = run_cli("verify", "sp-org/private", env=loopback_hub.client_env(tmp_path / "anon", token=None))
    assert anonymous.returncode == 2
    assert "sp-org/private: cannot read this dataset repo" in anonymous.stderr and "log in" in anonymous.stderr
    assert "Traceback" not in anonymous.stderr

    bad_token = "hf_not_a_valid_token_for_this_hub_42"
    rejected = run_cli("publish", built_release, "--repo-id", "sp-org/other",
                       env=loopback_hub.client_env(tmp_path / "bad", token=bad_token))
    assert rejected.returncode == 2
    assert "the Hub refused the request" in rejected.stderr and "Traceback" not in rejected.stderr
    assert bad_token not in rejected.stdout + rejected.stderr
