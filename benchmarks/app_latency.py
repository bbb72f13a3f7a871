"""Curation app speed, end to end on the real server: prints figures, asserts nothing.

    .venv/bin/python benchmarks/app_latency.py [--presses 200] [--annotators 8] [--decisions 5000]
    .venv/bin/python benchmarks/app_latency.py --latency-only --store-size 100000 [--source DIR] [--work DIR]
    .venv/bin/python benchmarks/app_latency.py --latency-only --flood 32

1. Keypress -> next pair fully rendered, in headless Chromium (Debian's): the time from the
   keydown event reaching the page to the next pair's images being loaded, decoded and painted
   (the first paint after the last image decodes). Goal: p95 <= 150 ms on a 2-core machine.
   With it, the server's CPU time per decision (user + system of the server process over the
   measured presses, divided by their number).
   `--store-size N` first records N decisions into the project through the real store (its
   policy and derived state, in transactions of 2,000): four annotators, the benchmark's own
   annotator a quarter of them, spread over the served classes and the rest of the paper's 187
   classes (whose files are only names, with their facts given to the store) in proportion, as a
   project that far along would be.
   `--flood N` measures the keypresses a second time while N threads post wrong passwords without
   pause, each from its own loopback address (127.0.1.x) and a made-up user name: the login
   throttle's case. Printed: attempts answered per second and how (400 checked, 429 paused, 503
   busy), and the server's peak memory.
2. N concurrent scripted annotators (each logged in as its own user, one thread each, calling the
   page's endpoints over HTTP): decisions/s, and duplicates: a pair shown to two annotators, or
   a pair decided twice.
3. Server memory (VmRSS, VmHWM of the server process) after --decisions decisions in the store.

Images: "full-resolution" ImageNet-size JPEGs. The bundled sample has too few original ILSVRC
photos for thousands of decisions, so each sample photo is resized to an ILSVRC-typical size
(500x375, 500x333 or 375x500) with sensor-like grain and saved at quality 92, which gives files of
real-photo weight (about 110 KB, the ILSVRC train mean); one file per photo. The server decodes,
resizes and serves them exactly as it would the originals. `--source DIR` takes the photos from
another `<wnid>/` tree (e.g. whole Imagenette classes of ~900 photos, the size of a class an
annotator curates); `--work DIR` keeps the prepared images for the next run.

One script of over 400 lines, because the three measures share the prepared images, the seeded
project and the running server, which take most of a run's time to set up.
"""
from __future__ import annotations

import argparse
import hashlib
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


def make_images(root: Path, classes: int, source_root: Path = SAMPLE) -> tuple[list[str], int, int]:
    rng = random.Random(0)
    np_rng = np.random.default_rng(0)
    wnids = sorted(p.name for p in source_root.iterdir() if len(list(p.iterdir())) >= 40)[:classes]
    if (root / ".complete").is_file():  # prepared by an earlier run (--work)
        files = [p for w in wnids for p in (root / w).iterdir()]
        return wnids, len(files), sum(p.stat().st_size for p in files)
    count = size = 0
    for wnid in wnids:
        (root / wnid).mkdir(parents=True, exist_ok=True)
        for source in sorted((source_root / wnid).iterdir()):
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
    (root / ".complete").write_text("")
    return wnids, count, size


def seed_store(project: Path, images: Path, served: list[str], size: int, annotator: str) -> list[str]:
    """Record `size` decisions through the real store (see the module docstring); returns the
    class selection (served classes first, then the paper's classes that have no folder here)."""
    from pair_manifest.classes import load_selection
    from pair_manifest.images import ImageFacts, PerceptualHash
    from pair_manifest.store import DecisionStore, NewDecision, PolicyViolation

    others = [c.wnid for c in load_selection().classes if c.wnid not in served]
    selection = served + others[:max(0, 187 - len(served))]
    rng = random.Random(7)
    store = DecisionStore.for_project(project, images_root=images)
    files = {w: sorted(f"{w}/{p.name}" for p in (images / w).iterdir()) for w in served}
    for wnid in selection[len(served):]:  # names only: the store is given their facts
        files[wnid] = [f"{wnid}/{wnid}_{i}.JPEG" for i in range(1300)]
        store.remember_facts({f: ImageFacts(hashlib.sha256(f.encode()).hexdigest(),
                                            PerceptualHash(rng.getrandbits(64), rng.getrandbits(64)))
                              for f in files[wnid]})
    for wnid in served:
        for file in files[wnid]:
            store.image_facts(file)
    people = [annotator, "bob", "carol", "dave"]
    free = {w: rng.sample(fs, len(fs)) for w, fs in files.items()}
    accepted: list = []
    per_class: dict[str, int] = {}
    recorded = 0
    while recorded < size:
        with store.bulk() as bulk:
            for _ in range(min(2000, size - recorded)):
                wnid = rng.choice(selection)
                who = rng.choice(people)
                roll = rng.random()
                if roll < 0.04 and accepted:  # a review of someone else's accept
                    target = rng.choice(accepted)
                    if target.annotator == who:
                        continue
                    new = NewDecision(f"seed{recorded}", target.wnid, target.file_a, target.file_b,
                                      "accept" if rng.random() < 0.9 else "reject", who, review_of=target.seq)
                elif roll < 0.22 and len(free[wnid]) >= 2 and per_class.get(wnid, 0) < 150:
                    a, b = free[wnid].pop(), free[wnid].pop()
                    new = NewDecision(f"seed{recorded}", wnid, a, b, "accept", who)
                else:
                    a, b = rng.sample(files[wnid], 2)
                    new = NewDecision(f"seed{recorded}", wnid, a, b, "skip" if rng.random() < 0.2 else "reject", who)
                try:
                    done = bulk.record(new, store.image_facts(new.file_a), store.image_facts(new.file_b))
                except PolicyViolation:
                    continue
                recorded += 1
                if done.decision.verdict == "accept" and done.decision.review_of is None:
                    accepted.append(done.decision)
                    per_class[wnid] = per_class.get(wnid, 0) + 1
        for person in people:  # an undo now and then, as annotators do
            if rng.random() < 0.5:
                store.undo_last(person, f"seed-undo{recorded}-{person}")
                recorded += 1
    store.close()
    return selection


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood(url: str, threads: int, stop: threading.Event) -> dict:
    """Wrong passwords without pause from `threads` loopback addresses; counts the answers."""
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    counts: dict[int, int] = {}
    lock = threading.Lock()

    def attack(n: int) -> None:
        source = f"127.0.1.{n % 250 + 1}"
        rng = random.Random(n)
        while not stop.is_set():
            try:
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60,
                                                        source_address=(source, 0))
                body = urllib.parse.urlencode({"username": f"guess{rng.randrange(10**6)}", "password": "wrong"})
                connection.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
                status = connection.getresponse().status
                connection.close()
            except OSError:
                status = 0
            with lock:
                counts[status] = counts.get(status, 0) + 1

    workers = [threading.Thread(target=attack, args=(n,), daemon=True) for n in range(threads)]
    for worker in workers:
        worker.start()
    counts["threads"] = workers
    return counts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def report_latency(label: str, measured: tuple[list[dict], float]) -> None:
    measured, cpu = measured
    timings = [m["total"] for m in measured]
    requests = [m["request"] for m in measured if m["request"] is not None]
    doms = [m["dom"] for m in measured]
    print(f"\nkeypress -> next pair rendered{label} ({len(timings)} presses, one annotator): "
          f"p50 {percentile(timings, 50):.0f} ms · p95 {percentile(timings, 95):.0f} ms · "
          f"max {max(timings):.0f} ms · mean {statistics.mean(timings):.0f} ms (goal p95 <= 150 ms); "
          f"server CPU {1000 * cpu / len(timings):.1f} ms per decision")
    print(f"  of which the action's HTTP request p50 {percentile(requests, 50):.0f} ms, p95 "
          f"{percentile(requests, 95):.0f} ms; new item in the page p50 {percentile(doms, 50):.0f} ms, "
          f"p95 {percentile(doms, 95):.0f} ms; the rest is image decode and paint")


def keypress_latency(url: str, presses: int, server_pid: int, signed_in=None) -> tuple[list[dict], float]:
    """(timings of the measured presses, server CPU seconds spent over them). `signed_in()` runs
    once the annotator is signed in and the page shows a pair (the flood starts there: annotators
    at work are what it must not slow down)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
        page.goto(url)
        page.fill("input[type=text]", "alice")
        page.fill("input[type=password]", PASSWORDS["alice"])
        page.keyboard.press("Enter")
        page.wait_for_selector("#sp-view .sp-item[data-key]:not([data-key=''])", timeout=120_000)
        if signed_in is not None:
            signed_in()
        page.evaluate(MEASURE_JS)
        rng = random.Random(1)
        timings = []
        cpu = 0.0
        for i in range(presses + 10):
            key = rng.choices(["r", "s", "a"], weights=[6, 2, 2])[0]
            if i == 10:  # the first ten warm the caches
                cpu = cpu_seconds(server_pid)
            page.keyboard.press(key)
            elapsed = page.evaluate(WAIT_JS)
            if i >= 10:
                timings.append(elapsed)
            page.evaluate("performance.clearResourceTimings()")
        cpu = cpu_seconds(server_pid) - cpu
        browser.close()
    return timings, cpu


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
    parser.add_argument("--classes", type=int, default=15, help="source classes with at least 40 photos (15)")
    parser.add_argument("--source", type=Path, default=SAMPLE, help="<wnid>/ tree of photos (default: the sample)")
    parser.add_argument("--work", type=Path, help="keep the prepared images here (reused by the next run)")
    parser.add_argument("--store-size", type=int, default=0, help="decisions recorded before the server starts")
    parser.add_argument("--flood", type=int, default=0, help="threads posting wrong passwords (second latency run)")
    parser.add_argument("--propose", action="store_true",
                        help="run `propose` first: verify mode shows proposals, re-ranked from each decision")
    args = parser.parse_args()

    import gradio

    with tempfile.TemporaryDirectory(prefix="app-bench-") as tmp:
        base = Path(tmp)
        images = (args.work or base) / "images"
        wnids, count, size = make_images(images, args.classes, args.source)
        names = [f"annotator{i}" for i in range(args.annotators)]
        PASSWORDS.update({n: f"{n}-password" for n in names})
        users = make_users(base / "users.txt", ["alice", *names])
        selection = wnids
        if args.store_size:
            started = time.perf_counter()
            selection = seed_store(base / "project", images, wnids, args.store_size, "alice")
            print(f"store seeded with {args.store_size:,} decisions in {time.perf_counter() - started:.0f} s")
        if args.propose:
            from curation_app.proposals.propose import propose

            summary = propose(images, base / "project", classes=str(write_classes(base / "classes.csv", selection)))
            print(f"proposals: {summary.pairs} pairs for {summary.classes} classes (learning from decisions on)")
        server = AppServer(images, base / "project", users=users,
                           classes=write_classes(base / "classes.csv", selection)).start()
        try:
            print(f"machine: {platform.node()} · {os.cpu_count()} cores · load average "
                  f"{os.getloadavg()[0]:.1f} (a shared machine: figures are provisional)")
            print(f"python {platform.python_version()} · gradio {gradio.__version__} · Chromium headless")
            print(f"images: {count} JPEGs at ILSVRC size in {len(wnids)} classes, "
                  f"mean {size / count / 1024:.0f} KB")

            print(f"project: {args.store_size:,} decisions before the run, {len(selection)} classes in the "
                  f"selection, {len(wnids)} with folders here")
            report_latency("", keypress_latency(server.url, args.presses, server.proc.pid))
            if args.flood:
                stop = threading.Event()
                counts: dict = {}
                started = [0.0]

                def start_flood() -> None:
                    counts["answers"] = flood(server.url, args.flood, stop)
                    started[0] = time.perf_counter()
                    time.sleep(5)  # the flood's first burst (5 free attempts per address) is under way

                measured = keypress_latency(server.url, args.presses, server.proc.pid, signed_in=start_flood)
                stop.set()
                seconds = time.perf_counter() - started[0]
                counts = counts["answers"]
                for worker in counts.pop("threads"):
                    worker.join(70)
                report_latency(f" during a login flood ({args.flood} threads, wrong passwords)", measured)
                answered = sum(counts.values())
                print(f"  flood: {answered / seconds:,.0f} attempts/s answered: "
                      + ", ".join(f"{n} x {status}" for status, n in sorted(counts.items()))
                      + f" (400 checked with scrypt, 429 paused unchecked, 503 busy unchecked); server memory "
                        f"{rss(server.proc.pid)}")
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
