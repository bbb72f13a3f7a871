"""Fixtures shared by every test folder: paths of the bundled real sample (never ../shared)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = REPO_ROOT / "sample_data"
CHROMIUM = Path("/usr/bin/chromium")
NO_BROWSER = f"Debian's chromium is not installed ({CHROMIUM})"
INSTALL_BROWSER = "`sudo apt-get install chromium` (`make test` does it when run as root)"


def pytest_runtest_setup(item):
    """Browser tests need Debian's chromium: skipped with the reason where it is missing (before
    any fixture starts a browser), and a failure under CI=true, where a missing browser means a
    broken install step."""
    if item.get_closest_marker("browser") is None or os.access(CHROMIUM, os.X_OK):
        return
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true and {NO_BROWSER}: the install step is missing ({INSTALL_BROWSER})", pytrace=False)
    pytest.skip(f"{NO_BROWSER}: browser tests skipped; {INSTALL_BROWSER} runs them")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_images() -> Path:
    """ImageNet-style train/<wnid>/ folder of real photos (read-only: copy before changing)."""
    return SAMPLE / "imagenet" / "train"


@pytest.fixture(scope="session")
def edge_cases_root() -> Path:
    return SAMPLE / "edge_cases" / "train"


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    return SAMPLE / "cifar10"


@pytest.fixture(scope="session")
def tiny_imagenet_root() -> Path:
    return SAMPLE / "tiny_imagenet" / "train"


@pytest.fixture
def images_copy(tmp_path, sample_images) -> Path:
    """A writable copy of the sample images, for tests that add, change or break files."""
    target = tmp_path / "images"
    shutil.copytree(sample_images, target)
    return target


@pytest.fixture
def loopback_hub(tmp_path):
    """A real HTTP server on 127.0.0.1 speaking the Hub API that huggingface_hub and datasets use
    (tests/support/loopback_hub.py). Clients run in a subprocess with `hub.client_env(home)`:
    HF_ENDPOINT must be set before huggingface_hub is imported, and HF_HUB_DISABLE_XET=1."""
    from tests.support.loopback_hub import LoopbackHub

    with LoopbackHub(tmp_path / "loopback_hub") as hub:
        yield hub
