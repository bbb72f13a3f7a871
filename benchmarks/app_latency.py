"""Curation app speed, end to end on the real server: prints figures, asserts nothing.

    .venv/bin/python benchmarks/app_latency.py [--presses 200] [--annotators 8] [--decisions 5000]

1. Keypress -> next pair fully rendered, in headless Chromium (Debian's): the time from the
   keydown event reaching the page to the next pair's images being loaded, decoded and painted
   (the first paint after the last image decodes). Goal: p95 <= 150 ms on a 2-core machine.
2. N concurrent scripted annotators (each logged in as its own user, one thread each, calling the
   page's endpoints over HTTP): decisions/s, and duplicates: a pair shown to two annotators, or
   a pair decided twice.
3. Server memory (VmRSS, VmHWM of the server process) after --decisions decisions in the store.

Images: "full-resolution" ImageNet-size JPEGs. The bundled sample has too few original ILSVRC
photos for thousands of decisions, so each sample photo is resized to an ILSVRC-typical size
(500x375, 500x333 or 375x500) with sensor-like grain and saved at quality 92, which gives files of
real-photo weight (about 110 KB, the ILSVRC train mean); one file per photo. The server decodes,
resizes and serves them exactly as it would the originals.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.curation_app.app_server import (PASSWORDS, AppServer, launch_chromium, make_users,  # noqa: E402
                                           write_classes)

SAMPLE = REPO / "sample_data" / "imagenet" / "train"
SIZES = [(500, 375), (500, 333), (375, 500)]
GRAIN = 12.0  # standard deviation of the added noise, in 8-bit levels

MEASURE_JS = """
() => {
  window.__bench = {};
  window.addEventListener('keydown', (e) => {
    const el = document.querySelector('#sp-view .sp-item');
    window.__bench = {t0: performance.now(), rev: el ? el.dataset.rev : null};
  }, true);
}
"""

WAIT_JS = """
() => new Promise((resolve) => {
  const {t0, rev} = window.__bench;
  // The next paint: a frame callback, then a task queued from it runs once that frame is drawn.
  const painted = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  let dom = null;
  async function check() {
    const el = document.querySelector('#sp-view .sp-item');
    if (el && el.dataset.rev !== rev) {
      if (dom === null) dom = performance.now() - t0;
      const imgs = [...el.querySelectorAll('img.sp-main')];
      if (imgs.length && imgs.every((i) => i.complete && i.naturalWidth > 0)) {
        await Promise.all(imgs.map((i) => i.decode().catch(() => null)));
        await painted();
        const total = performance.now() - t0;
        const request = performance.getEntriesByType('resource')
          .filter((e) => e.name.includes('/gradio_api/run/') && e.startTime >= t0).pop();
        resolve({total, dom, request: request ? request.responseEnd - request.startTime : null});
        return;
      }
    }
    setTimeout(check, 1);
  }
  check();
})
"""


def make_images(root: Path, classes: int) -> tuple[list[str], int, int]:
    rng = random.Random(0)
    np_rng = np.random.default_rng(0)
    wnids = sorted(p.name for p in SAMPLE.iterdir() if len(list(p.iterdir())) >= 40)[:classes]
    count = size = 0
    for wnid in wnids:
        (root / wnid).mkdir(parents=True)
        for source in sorted((SAMPLE / wnid).iterdir()):
            with Image.open(source) as image:
                width, height = rng.choice(SIZES)
                big = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
            # Sensor-like grain, so the files carry as many bytes as real photos of this size.
            pixels = np.asarray(big, dtype=np.float32) + np_rng.normal(0, GRAIN, (height, width, 3))
            big = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            target = root / wnid / source.name
            big.save(target, "JPEG", quality=92)
            count += 1
            size += target.stat().st_size
    return wnids, count, size


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def keypress_latency(url: str, presses: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
        page.goto(url)
        page.fill("input[type=text]", "alice")
        page.fill("input[type=password]", PASSWORDS["alice"])
        page.keyboard.press("Enter")
        page.wait_for_selector("#sp-view .sp-item[data-key]:not([data-key=''])", timeout=120_000)
        page.evaluate(MEASURE_JS)
        rng = random.Random(1)
        timings = []
        for i in range(presses + 10):
            key = rng.choices(["r", "s", "a"], weights=[6, 2, 2])[0]
            page.keyboard.press(key)
            elapsed = page.evaluate(WAIT_JS)
            if i >= 10:  # the first ten warm the caches
                timings.append(elapsed)
            page.evaluate("performance.clearResourceTimings()")
        browser.close()
    return timings


class Annotator:
    """A scripted annotator: logs in, then calls the endpoints the page's buttons call (plain HTTP,
    as the page does; gradio_client would measure its own overhead more than the server's)."""

    def __init__(self, url: str, name: str):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=120)
        self.round_trips: list[float] = []
        self.http.post("/login", data={"username": name, "password": PASSWORDS[name]}).raise_for_status()

    def call(self, api: str, *data) -> dict:
        started = time.perf_counter()
        response = self.http.post(f"/gradio_api/run/{api}", json={"data": list(data), "session_hash": "bench"})
        response.raise_for_status()
        self.round_trips.append(time.perf_counter() - started)
        return response.json()["data"][3]


def annotators(url: str, names: list[str], seconds: float, accept_share: float) -> tuple[int, float, dict]:
    shown: dict[str, list[tuple[str, ...]]] = {n: [] for n in names}
    done = {n: 0 for n in names}
    errors: list[str] = []
    clients = {n: Annotator(url, n) for n in names}  # logins are not timed
    ready = threading.Barrier(len(names) + 1)
    window = {"stop": float("inf")}

    def work(name: str) -> None:
        rng = random.Random(name)
        try:
            c = clients[name]
            state = c.call("current")
            ready.wait()
            while time.monotonic() < window["stop"] and state["files"]:
                shown[name].append(tuple(sorted(state["files"])))
                verdict = "accept" if rng.random() < accept_share else rng.choice(["reject"] * 5 + ["skip"])
                state = c.call(verdict, state["key"], [])
                done[name] += 1
        except Exception as error:  # noqa: BLE001 - reported, not raised
            errors.append(f"{name}: {error!r}")

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    ready.wait()
    started = time.monotonic()
    window["stop"] = started + seconds
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    seen: dict[tuple[str, ...], set[str]] = {}
    for name, pairs in shown.items():
        for pair in pairs:
            seen.setdefault(pair, set()).add(name)
    trips = [t * 1000 for c in clients.values() for t in c.round_trips]
    return sum(done.values()), wall, {"seen": seen, "errors": errors, "round_trips": trips}


def collisions(seen: dict[tuple[str, ...], set[str]], store) -> int:
    """Pairs shown to two annotators, except hand-overs: a pair one annotator skipped may go to
    the next holder of its class once the first has left it (skip means "someone else decide")."""
    decided: dict[tuple[str, str], list] = {}
    for d in store.decisions():
        if d.review_of is None and d.verdict != "undo":
            decided.setdefault((d.file_a, d.file_b), []).append(d)
    count = 0
    for pair, who in seen.items():
        if len(who) < 2:
            continue
        decisions = decided.get(tuple(pair), [])
        skipped_by = {d.annotator for d in decisions if d.verdict == "skip"}
        if len(who - skipped_by) > 1 or sum(d.verdict != "skip" for d in decisions) > 1:
            count += 1
    return count


def rss(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = value.strip()
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presses", type=int, default=200, help="measured keypresses (after 10 warm-up ones)")
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of the concurrent phase")
    parser.add_argument("--decisions", type=int, default=5000, help="store size for the memory figure")
    parser.add_argument("--latency-only", action="store_true", help="stop after the keypress measurement")
    parser.add_argument("--classes", type=int, default=15, help="sample classes with at least 40 photos (15)")
    args = parser.parse_args()

    import gradio

    with tempfile.TemporaryDirectory(prefix="app-bench-") as tmp:
        base = Path(tmp)
        wnids, count, size = make_images(base / "images", args.classes)
        names = [f"annotator{i}" for i in range(args.annotators)]
        PASSWORDS.update({n: f"{n}-password" for n in names})
        users = make_users(base / "users.txt", ["alice", *names])
        server = AppServer(base / "images", base / "project", users=users,
                           classes=write_classes(base / "classes.csv", wnids)).start()
        try:
            print(f"machine: {platform.node()} · {os.cpu_count()} cores · load average "
                  f"{os.getloadavg()[0]:.1f} (a shared machine: figures are provisional)")
            print(f"python {platform.python_version()} · gradio {gradio.__version__} · Chromium headless")
            print(f"images: {count} JPEGs at ILSVRC size in {len(wnids)} classes, "
                  f"mean {size / count / 1024:.0f} KB")

            measured = keypress_latency(server.url, args.presses)
            timings = [m["total"] for m in measured]
            requests = [m["request"] for m in measured if m["request"] is not None]
            doms = [m["dom"] for m in measured]
            print(f"\nkeypress -> next pair rendered ({len(timings)} presses, one annotator): "
                  f"p50 {percentile(timings, 50):.0f} ms · p95 {percentile(timings, 95):.0f} ms · "
                  f"max {max(timings):.0f} ms · mean {statistics.mean(timings):.0f} ms (goal p95 <= 150 ms)")
            print(f"  of which the action's HTTP request p50 {percentile(requests, 50):.0f} ms, p95 "
                  f"{percentile(requests, 95):.0f} ms; new item in the page p50 {percentile(doms, 50):.0f} ms, "
                  f"p95 {percentile(doms, 95):.0f} ms; the rest is image decode and paint")
            if args.latency_only:
                return

            from pair_manifest.store import DecisionStore

            store = DecisionStore.for_project(base / "project")
            baseline = rss(server.proc.pid)
            total, wall, check = annotators(server.url, names, args.seconds, accept_share=0.05)
            print(f"\n{len(names)} concurrent annotators for {wall:.0f} s: {total} decisions, "
                  f"{total / wall:.1f} decisions/s · request round trip p50 {percentile(check['round_trips'], 50):.0f} ms, "
                  f"p95 {percentile(check['round_trips'], 95):.0f} ms · pairs given to two annotators at once: "
                  f"{collisions(check['seen'], store)}" + (f" · errors: {check['errors']}" if check["errors"] else ""))

            all_seen = check["seen"]
            while store.count() < args.decisions:
                more, _, extra = annotators(server.url, names, 20, accept_share=0.01)
                for pair, who in extra["seen"].items():
                    all_seen.setdefault(pair, set()).update(who)
                if more == 0:
                    print("  (no work left before reaching the decision count)")
                    break
            per_pair: dict[tuple[str, str], int] = {}
            for d in store.decisions():
                if d.review_of is None and d.verdict in ("accept", "reject"):
                    per_pair[(d.file_a, d.file_b)] = per_pair.get((d.file_a, d.file_b), 0) + 1
            twice = sum(1 for n in per_pair.values() if n > 1)
            memory = rss(server.proc.pid)
            print(f"\nserver memory: VmRSS {baseline['VmRSS']} after the latency run, {memory['VmRSS']} after "
                  f"{store.count()} decisions (peak VmHWM {memory['VmHWM']}; previews cached in memory up to 128 MB)")
            print(f"pairs decided twice: {twice} · pairs given to two annotators at once (all phases): "
                  f"{collisions(all_seen, store)}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
