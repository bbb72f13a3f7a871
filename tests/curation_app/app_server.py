"""Run the real curation app for tests and benchmarks: `semantic-pairs curate` in a subprocess on
a free loopback port (`--port 0`; the URL is read from its banner), so a test can SIGKILL it.

Also: small images roots built from the bundled sample, users files, a gradio_client helper and
the Chromium launch settings every browser test uses.
"""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "sample_data" / "imagenet" / "train"
EDGE_CASES = REPO_ROOT / "sample_data" / "edge_cases" / "train"
CLI = Path(sys.executable).parent / "semantic-pairs"
CHROMIUM = "/usr/bin/chromium"  # the path tests/conftest.py checks before a browser test
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "carol": "carol-password",
             "dora": "dora-password"}  # dora: the login-throttle tests' own account
# Cheaper scrypt than the CLI's 2^17 (0.6 s a login) so a dozen logins stay fast; same code path.
TEST_LOG2_N = 14


def make_users(path: Path, names=("alice", "bob", "carol")) -> Path:
    from curation_app.users import add_user

    for name in names:
        add_user(path, name, PASSWORDS[name], log2_n=TEST_LOG2_N)
    return path


def make_images(root: Path, wnids: list[str], *, edge_cases_into: str | None = None) -> Path:
    """A writable images root with some sample classes; optionally the edge-case files (corrupt,
    truncated, empty, bomb, CMYK, PNG-as-JPEG, ...) mixed into one class."""
    for wnid in wnids:
        shutil.copytree(SAMPLE / wnid, root / wnid)
    if edge_cases_into:
        for path in (EDGE_CASES / "n01443537").iterdir():
            if path.is_file():
                shutil.copy(path, root / edge_cases_into / f"edge_{path.name}")
    return root


def write_classes(path: Path, wnids: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["wnid"])
        writer.writerows([w] for w in wnids)
    return path


class AppServer:
    """One `semantic-pairs curate` process."""

    def __init__(self, images: Path, project: Path, *, users: Path | None = None, host: str = "127.0.0.1",
                 classes: Path | None = None, target: int | None = None, command: list[str] | None = None,
                 cwd: Path | None = None):
        self.images, self.project, self.users, self.host = images, project, users, host
        self.classes, self.target = classes, target
        self.command, self.cwd = command, cwd
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.output: list[str] = []

    def argv(self) -> list[str]:
        if self.command is not None:
            return self.command
        argv = [str(CLI), "curate", "--images", str(self.images), "--project", str(self.project),
                "--host", self.host, "--port", "0"]
        if self.users:
            argv += ["--users", str(self.users)]
        if self.classes:
            argv += ["--classes", str(self.classes)]
        if self.target:
            argv += ["--target", str(self.target)]
        return argv

    def start(self, timeout: float = 120.0) -> "AppServer":
        self.output = []
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env, cwd=self.cwd, start_new_session=True)
        ready = threading.Event()

        def drain():
            for line in self.proc.stdout:
                self.output.append(line)
                if "curation app: http" in line and not self.url:
                    self.url = line.split("curation app: ", 1)[1].split()[0]
                    ready.set()
            ready.set()

        self.url = ""
        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(timeout) or not self.url:
            self.kill()
            raise RuntimeError("the app did not start:\n" + "".join(self.output))
        deadline = time.time() + timeout
        while True:  # the socket is bound before the banner; wait until the app answers
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.kill()
                    raise RuntimeError("the app does not answer:\n" + "".join(self.output)) from None
                time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc else 0


def client(url: str, user: str):
    from gradio_client import Client

    return Client(url, auth=(user, PASSWORDS[user]), verbose=False, download_files=False, analytics_enabled=False)


def act(gradio_client, api_name: str, *args) -> dict:
    """Call one endpoint; return the page state (the JSON output)."""
    return gradio_client.predict(*args, api_name=api_name)[3]


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
